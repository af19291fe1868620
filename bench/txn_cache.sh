#!/bin/sh
#
# txn_cache.sh - Kv.Get on a hot key set while transactions commit: the
# key cache's hit rate and the Gets per second
#
# usage: bench/txn_cache.sh [BUILDDIR]
#
#   BUILDDIR      holds buffdb and buffdb-bench (default: the current
#                 directory); $BUFFDB_BIN and $BENCH_BIN override each
#   KEYS          hot keys, preloaded; Gets and the transactions' Sets
#                 both draw from them, uniformly (default 100000)
#   DURATION      measured seconds (default 8)
#   WORKERS       workers (default 2)
#   TMPDIR        where the scratch directory goes (default /tmp)
#
# One server (cache_size 64M) on a free loopback port in a scratch
# directory; KEYS keys of 100 bytes preloaded through gRPC (which also
# fills the cache).  Then, at the same time for DURATION seconds:
#   - buffdb-bench txn, 2 connections: Begin, 4 Sets, Commit, in a loop;
#   - buffdb-bench kv-get, 4 connections, --pipeline 16 --coalesce.
# Printed: Gets/s, commits/s, and the cache's hits and misses over the
# run (from `buffdb stats`).  A commit drops the cache entries of the
# keys it wrote, so with 100,000 keys nearly every Get should still hit;
# before that change every commit emptied the cache.
#
# Exit status 0 if both runs answered without errors, 1 otherwise, 2 for
# bad settings.  The server is stopped on exit.  About 30 seconds.
#
# This is a benchmark, not a test: `make check` does not run it.

set -eu

KEYS=${KEYS:-100000}
DURATION=${DURATION:-8}
WORKERS=${WORKERS:-2}
BUILD=${1:-.}
BUFFDB=${BUFFDB_BIN:-$BUILD/buffdb}
BENCH=${BENCH_BIN:-$BUILD/buffdb-bench}
prog=txn_cache.sh
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

whole KEYS "$KEYS"
whole DURATION "$DURATION"
whole WORKERS "$WORKERS"
if [ "$DURATION" -lt 2 ] || [ "$DURATION" -gt 25 ]; then
	die "DURATION must be 2 to 25 seconds"
fi
[ "$KEYS" -ge 1 ] || die "KEYS must be at least 1"
[ -x "$BUFFDB" ] || die "$BUFFDB is not an executable (give the build directory as the first argument)"
[ -x "$BENCH" ] || die "$BENCH is not an executable (give the build directory as the first argument)"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to find a free port"

base=${TMPDIR:-/tmp}
dir=$(mktemp -d "$base/buffdb-txn-cache.XXXXXX") || die "could not create a directory in $base"
pid=""
tpid=""

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$tpid" ]; then
		kill -TERM "$tpid" 2>/dev/null || true
		wait "$tpid" 2>/dev/null || true
	fi
	[ -z "$pid" ] || server_stop "$pid"
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

printf 'cache_size = 64M\nworkers = %s\n' "$WORKERS" >"$dir/buffdb.conf"
server_start "$dir" || exit 1

if ! timeout 120 "$BENCH" --addr "127.0.0.1:$port" --connections 8 \
	--keyspace "$KEYS" --preload --requests 1 --warmup 0 --json kv-get \
	>"$dir/preload.json" 2>&1; then
	echo "txn_cache.sh: the preload failed:" >&2
	cat "$dir/preload.json" >&2
	exit 1
fi

echo "txn_cache.sh: $KEYS hot keys, $WORKERS workers, cache_size 64M, $DURATION s:"
echo "  kv-get (4 connections, --pipeline 16 --coalesce) while txn (2 connections, 4 Sets each) commits"
c0=$(cache_counts "$dir/kv.db")
timeout 60 "$BENCH" --addr "127.0.0.1:$port" --connections 2 \
	--keyspace "$KEYS" --duration "$DURATION" --warmup 0 --json txn \
	>"$dir/txn.json" 2>"$dir/txn.err" &
tpid=$!
grc=0
timeout 60 "$BENCH" --addr "127.0.0.1:$port" --connections 4 --pipeline 16 \
	--coalesce --keyspace "$KEYS" --duration "$DURATION" --warmup 0 --json \
	kv-get >"$dir/get.json" 2>"$dir/get.err" || grc=$?
trc=0
wait "$tpid" || trc=$?
tpid=""
c1=$(cache_counts "$dir/kv.db")

gets=$(json_num ops_per_sec "$dir/get.json")
txns=$(json_num ops_per_sec "$dir/txn.json")
if [ -z "$gets" ] || [ -z "$txns" ]; then
	echo "txn_cache.sh: a run failed:" >&2
	cat "$dir/get.err" "$dir/txn.err" >&2
	exit 1
fi
gerr=$(json_num errors_total "$dir/get.json")
terr=$(json_num errors_total "$dir/txn.json")
status=0
[ "$grc" -eq 0 ] && [ "$trc" -eq 0 ] && [ "$gerr" = 0 ] && [ "$terr" = 0 ] || status=1
printf '  Gets/s %.0f (%s errors), committed transactions/s %.1f (%s errors)\n' \
	"$gets" "$gerr" "$txns" "$terr"
echo "$c0 $c1" | awk '{
	h = $3 - $1; m = $4 - $2
	rate = (h + m) > 0 ? 100 * h / (h + m) : 0
	printf "  cache over the run: %d hits, %d misses, hit rate %.1f%%\n",
		h, m, rate }'
exit "$status"
