#!/bin/sh
#
# txn_bench.sh - committed transactions per second of buffdb, with one
# client and with eight
#
# usage: bench/txn_bench.sh [BUILDDIR]
#
#   BUILDDIR      holds buffdb and buffdb-bench (default: the current
#                 directory); $BUFFDB_BIN and $BENCH_BIN override each
#   SETS          Sets per transaction (default 4)
#   KEYS          key space the Sets draw from, uniformly (default 100000)
#   VALUE_SIZE    bytes per value (default 100)
#   DURATION      measured seconds per run (default 8)
#   ROUNDS        rounds of the two runs, interleaved (default 2)
#   WORKERS       workers (default 0: one per CPU)
#   TMPDIR        where the scratch directory goes (default /tmp)
#
# One server (synchronous=NORMAL) runs on a free loopback port in a
# scratch directory.  Each run is buffdb-bench txn: every client (a
# connection of its own, one transaction at a time) loops
# BeginTransaction, SETS unary Kv.Set calls with its transaction_id,
# CommitTransaction, and counts the commits that answered success.  Runs
# with 1 and with 8 clients alternate ROUNDS times.  Keys are drawn from
# a large key space so that concurrent transactions seldom want the same
# key (a transaction holds its keys' locks until it ends; two that lock
# in opposite orders both wait lock_wait, 5 s, and fail ABORTED).
#
# Prints a line per run and the mean per client count; exit status 0 if
# every run committed transactions without errors, 1 otherwise, 2 for bad
# settings.  The server is stopped on exit.  With the defaults it takes
# about 45 seconds.
#
# This is a benchmark, not a test: `make check` does not run it.

set -eu

SETS=${SETS:-4}
KEYS=${KEYS:-100000}
VALUE_SIZE=${VALUE_SIZE:-100}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-2}
WORKERS=${WORKERS:-0}
BUILD=${1:-.}
BUFFDB=${BUFFDB_BIN:-$BUILD/buffdb}
BENCH=${BENCH_BIN:-$BUILD/buffdb-bench}
prog=txn_bench.sh
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

whole SETS "$SETS"
whole KEYS "$KEYS"
whole VALUE_SIZE "$VALUE_SIZE"
whole DURATION "$DURATION"
whole ROUNDS "$ROUNDS"
whole WORKERS "$WORKERS"
if [ "$DURATION" -lt 1 ] || [ "$DURATION" -gt 25 ]; then
	die "DURATION must be 1 to 25 seconds"
fi
if [ "$ROUNDS" -lt 1 ] || [ "$ROUNDS" -gt 5 ]; then
	die "ROUNDS must be 1 to 5"
fi
[ "$KEYS" -ge 1 ] || die "KEYS must be at least 1"
[ -x "$BUFFDB" ] || die "$BUFFDB is not an executable (give the build directory as the first argument)"
[ -x "$BENCH" ] || die "$BENCH is not an executable (give the build directory as the first argument)"
"$BENCH" --help | grep -q txn || die "$BENCH has no txn workload (rebuild it)"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to find a free port"

base=${TMPDIR:-/tmp}
dir=$(mktemp -d "$base/buffdb-txn.XXXXXX") || die "could not create a directory in $base"
pid=""

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	[ -z "$pid" ] || server_stop "$pid"
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

printf 'synchronous = normal\nworkers = %s\n' "$WORKERS" >"$dir/buffdb.conf"
server_start "$dir" || exit 1

echo "txn_bench.sh: BeginTransaction + $SETS x Kv.Set + CommitTransaction, unary calls,"
echo "  keys uniform over $KEYS, values of $VALUE_SIZE bytes, $DURATION s per run (+1 s warmup), $(sed -n 's/.*ready: \([0-9]*\) workers.*/\1/p' "$dir/log") workers, synchronous=NORMAL"
printf '%-6s %-8s %14s %10s %10s %8s  %s\n' round clients "commits/s" "p50 ms" "p99 ms" errors "first error"
status=0
: >"$dir/runs"
r=0
while [ "$r" -lt "$ROUNDS" ]; do
	r=$((r + 1))
	for c in 1 8; do
		out=$dir/run-$r-$c.json
		rc=0
		timeout 60 "$BENCH" --addr "127.0.0.1:$port" --connections "$c" \
			--keyspace "$KEYS" --value-size "$VALUE_SIZE" --txn-sets "$SETS" \
			--duration "$DURATION" --warmup 1 --json txn >"$out" 2>"$out.err" || rc=$?
		tps=$(json_num ops_per_sec "$out")
		if [ -z "$tps" ]; then
			echo "txn_bench.sh: the run with $c clients failed (status $rc):" >&2
			cat "$out.err" >&2
			exit 1
		fi
		errs=$(json_num errors_total "$out")
		bad=$(json_num bad_responses "$out")
		first=$(sed -n 's/.*"first_error":"\([^"]*\)".*/\1/p' "$out")
		[ "$rc" -eq 0 ] && [ "$errs" = 0 ] && [ "$bad" = 0 ] || status=1
		p50=$(json_num p50 "$out")
		p99=$(json_num p99 "$out")
		awk -v r="$r" -v c="$c" -v t="$tps" -v a="$p50" -v b="$p99" -v e="$((errs + bad))" -v f="$first" 'BEGIN {
			printf "%-6s %-8s %14.1f %10.2f %10.2f %8s  %s\n", r, c, t, a / 1e3, b / 1e3, e, f }'
		echo "$c $tps" >>"$dir/runs"
	done
done
echo
awk '{ n[$1]++; s[$1] += $2; if (!($1 in lo) || $2 < lo[$1]) lo[$1] = $2; if ($2 > hi[$1]) hi[$1] = $2 }
	END {
		for (c = 1; c <= 8; c += 7)
			printf "%d client%s: %8.1f committed transactions/s (mean of %d, range %.1f..%.1f)\n",
				c, c == 1 ? " " : "s", s[c] / n[c], n[c], lo[c], hi[c]
		if (s[1] > 0)
			printf "scaling 8 clients / 1 client: %.2fx\n", s[8] / n[8] / (s[1] / n[1])
	}' "$dir/runs"
exit "$status"
