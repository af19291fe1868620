#!/bin/sh
# dev.sh - one-command set-up on a fresh Debian 12 machine.
#
#   sh scripts/dev.sh run  [buffdb run arguments]   install, build, serve
#   sh scripts/dev.sh test [configure arguments]    install, build, test
#
# Both install the Debian packages (scripts/install-deps.sh, as root or
# through sudo), bootstrap autotools and build out of tree: `run` in
# build/, `test` in build-test/.  `test` ends with "N passed, M failed"
# and exits non-zero unless everything passed.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
[ $# -gt 0 ] && shift

build() {
    dir=$1; shift
    sh "$top/scripts/install-deps.sh"
    if [ ! -x "$top/configure" ] || [ "$top/configure.ac" -nt "$top/configure" ]; then
        (cd "$top" && ./autogen.sh >/dev/null)
    fi
    mkdir -p "$dir"
    cd "$dir"
    "$top/configure" -q "$@"
    make -j"$(nproc)" >/dev/null
}

case "$cmd" in
run)
    build "$top/build"
    exec "$top/build/buffdb" run "$@"
    ;;
test)
    build "$top/build-test" "$@"
    status=0
    make -j"$(nproc)" check >/dev/null 2>&1 || status=$?
    log="$top/build-test/test-suite.log"
    if [ ! -f "$log" ]; then
        echo "make check did not produce test-suite.log (status $status)" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    # show what failed, then the summary line
    grep -E '^(FAIL|ERROR|XPASS):' "$top/build-test"/tests/*/*.log 2>/dev/null | sed 's/^[^:]*://' || true
    if [ "$status" -ne 0 ]; then cat "$log" | tail -n 200 >&2; fi
    pass=$(sed -n 's/^# PASS: *//p' "$log")
    skip=$(sed -n 's/^# SKIP: *//p' "$log")
    fail=$(sed -n 's/^# FAIL: *//p' "$log")
    err=$(sed -n 's/^# ERROR: *//p' "$log")
    xpass=$(sed -n 's/^# XPASS: *//p' "$log")
    failed=$((fail + err + xpass))
    if [ "$failed" -eq 0 ] && [ "$status" -ne 0 ]; then failed=1; fi
    echo "${pass:-0} passed, ${failed} failed, ${skip:-0} skipped"
    [ "$failed" -eq 0 ]
    ;;
*)
    echo "usage: sh scripts/dev.sh run [ARGS] | test [CONFIGURE-ARGS]" >&2
    exit 2
    ;;
esac
