#!/bin/sh
# tap.sh - run one test program so that it reports TAP on stdout.
# Criterion binaries get --tap; shell and python tests print TAP themselves.
#
# tests/unit/test_index runs one test at a time: with -j2, Criterion
# 2.4.1's runner (not the tests: every test passes, and each suite alone
# is clean) leaks 48 bytes of its own bookkeeping, which LeakSanitizer
# reports as a failure of the whole binary under --enable-asan.
t="$1"; shift
case "$t" in
    *.sh) exec "${SHELL:-/bin/sh}" "$t" "$@" ;;
    *.py) exec python3 "$t" "$@" ;;
    */unit/test_index) exec "$t" --tap=/dev/stdout -j1 "$@" ;;
    *) exec "$t" --tap=/dev/stdout -j2 "$@" ;;
esac
