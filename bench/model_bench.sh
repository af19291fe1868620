#!/bin/sh
# model_bench.sh - push and pull a model of random bytes through a real
# server with `buffdb model push|pull`, against dd copying the same file,
# with the peak RSS of the server's worker and of the client.
#
#   sh bench/model_bench.sh [BUILD_DIR] [SIZE_MIB]    (defaults: build, 1024)
#
# Targets (issue #8): push and pull each at least half of dd's throughput;
# worker and client peak RSS under 128 MiB.  One worker, so the worker's
# VmHWM is the push's and the pull's (read after each; a fresh server for
# each so the pull's peak is its own).  Loopback only; every process it
# starts is stopped; the scratch directory is removed.
set -eu

BUILD=${1:-build}
SIZE_MIB=${2:-1024}
BIN=$(cd "$BUILD" && pwd)/buffdb
[ -x "$BIN" ] || { echo "model_bench: no $BIN (build first)" >&2; exit 2; }
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "model_bench: needs GNU time (apt-get install time)" >&2; exit 2; }

DIR=$(mktemp -d /tmp/buffdb-model-bench.XXXXXX)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

PORT=$(( 20000 + $$ % 20000 ))
ADDR=127.0.0.1:$PORT

now() { date +%s.%N; }
mibs() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.1f", b / 1048576 / t }'; }

start_server() {
    "$BIN" run "$ADDR" --kv-store "$DIR/kv.db" --blob-store "$DIR/blob.db" \
        --workers 1 >"$DIR/server.log" 2>&1 &
    PID=$!
    i=0
    until grep -q "ready" "$DIR/server.log" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le 100 ] || { echo "model_bench: server did not start" >&2; cat "$DIR/server.log" >&2; exit 1; }
        sleep 0.1
    done
}
stop_server() {
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
}
worker_hwm_kib() {
    w=$(pgrep -P "$PID" | head -1)
    awk '/^VmHWM/ { print $2 }' "/proc/$w/status"
}

echo "generating $SIZE_MIB MiB of random bytes..."
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$DIR/model.bin"
sync
BYTES=$((SIZE_MIB * 1048576))

# dd: copy the file, flushed to disk at the end (as the store's WAL
# checkpoint does); then read it back
t0=$(now)
dd if="$DIR/model.bin" of="$DIR/copy.bin" bs=4M conv=fsync status=none
t1=$(now)
DD_W=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
rm -f "$DIR/copy.bin"

start_server
t0=$(now)
$TIME -f "%M" -o "$DIR/push.rss" "$BIN" model push bench 1 "$DIR/model.bin" \
    --addr "$ADDR" >"$DIR/push.out" 2>&1 || { cat "$DIR/push.out" >&2; exit 1; }
t1=$(now)
PUSH_T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
PUSH_SRV=$(worker_hwm_kib)
stop_server

start_server
mkdir "$DIR/out"
t0=$(now)
$TIME -f "%M" -o "$DIR/pull.rss" "$BIN" model pull bench:1 -o "$DIR/out" \
    --addr "$ADDR" >"$DIR/pull.out" 2>&1 || { cat "$DIR/pull.out" >&2; exit 1; }
t1=$(now)
PULL_T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
PULL_SRV=$(worker_hwm_kib)
stop_server
cmp -s "$DIR/model.bin" "$DIR/out/model.bin" || { echo "model_bench: pulled file differs" >&2; exit 1; }

t0=$(now)
dd if="$DIR/out/model.bin" of=/dev/null bs=4M status=none
t1=$(now)
DD_R=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')

printf '\n%s MiB model, %s cores, %s\n' "$SIZE_MIB" "$(nproc)" "$(uname -r)"
printf '%-26s %10s %10s %14s %14s\n' what seconds MiB/s "worker peak" "client peak"
printf '%-26s %10.2f %10s %14s %14s\n' "dd copy (conv=fsync)" "$DD_W" "$(mibs $BYTES $DD_W)" - -
printf '%-26s %10.2f %10s %14s %14s\n' "dd read (page cache)" "$DD_R" "$(mibs $BYTES $DD_R)" - -
printf '%-26s %10.2f %10s %11s MiB %11s MiB\n' "buffdb model push" "$PUSH_T" "$(mibs $BYTES $PUSH_T)" \
    $((PUSH_SRV / 1024)) $(($(cat "$DIR/push.rss") / 1024))
printf '%-26s %10.2f %10s %11s MiB %11s MiB\n' "buffdb model pull" "$PULL_T" "$(mibs $BYTES $PULL_T)" \
    $((PULL_SRV / 1024)) $(($(cat "$DIR/pull.rss") / 1024))
awk -v p="$PUSH_T" -v q="$PULL_T" -v d="$DD_W" 'BEGIN {
    printf "push / dd copy: %.2fx   pull / dd copy: %.2fx   (target >= 0.5x)\n", d / p, d / q }'
