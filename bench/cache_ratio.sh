#!/bin/sh
#
# cache_ratio.sh - Kv.Get throughput of buffdb with its shared key cache
# and without it, same run, as a ratio (target: the cache at least
# doubles Get throughput on a hot key set)
#
# usage: bench/cache_ratio.sh [BUILDDIR]
#
#   BUILDDIR      holds buffdb and buffdb-bench (default: the current
#                 directory); $BUFFDB_BIN and $BENCH_BIN override each
#   KEYS          hot keys (default 100000)
#   VALUE_SIZE    bytes per value (default 100)
#   CACHE_SIZE    cache_size of the cached server (default 64M)
#   WORKERS       workers per server (default 2)
#   CONNECTIONS   buffdb-bench --connections (default 8)
#   PIPELINE      buffdb-bench --pipeline (default 16)
#   COALESCE      1: buffdb-bench --coalesce, the client writes the
#                 requests waiting to go out together (default); 0: one
#                 write per request
#   DURATION      measured seconds per run (default 10)
#   WARMUP        unmeasured seconds before each run (default 2)
#   TMPDIR        where the scratch directories go (default /tmp)
#
# Why these defaults.  The hot set must fit the key cache but not
# SQLite's page cache, or the comparison says nothing: with 1,000 keys the
# whole kv table sits in SQLite's page cache and a Get costs ~6.5 us in
# process; with 100,000 keys of 100 bytes (about 12 MB of table) each Get
# does several pread()s and costs ~16 us, while an LMDB hit costs 0.2 to
# 1.3 us.  100,000 entries take ~21 MB of the 64 MiB cache.
#
# What it does.  Two servers run side by side on loopback ports, each in a
# directory of its own, identical but for cache_size (CACHE_SIZE for one,
# 0 for the other).  Each is preloaded once through gRPC (buffdb-bench
# --preload): on the cached server the Sets also fill the cache, so every
# Get of the runs is a hit, which the script checks with `buffdb stats`.
# Then kv-get runs uniform over the hot set alternate on, off, on, off, so
# that drift of a shared machine hits both alike.  For each run it prints:
#
#   - ops/s as the client sees it;
#   - the server's CPU per Get: user + system time of the master's worker
#     children (bench/server_cpu.sh, /proc/<pid>/stat) sampled inside the
#     measured window (0.5 s after the warmup ends, 0.5 s before the run
#     ends), divided by wall time, divided by the client's ops/s;
#   - the server's capacity, Gets per server CPU-second (1 / CPU per Get).
#
# and then both ratios on/off.  Client and server share the machine's
# CPUs: the client spends ~12 us per request and gRPC's framing ~9 us of
# server CPU per message whatever the cache does, so the client-observed
# ratio understates what the cache saves; the capacity ratio is what the
# server would do given CPUs of its own.  The script says which of the
# two meets the 2x target.  Exit status: 0 if every run answered without
# errors (whether or not the target is met), 1 otherwise, 2 for bad
# settings.  Both servers are stopped on exit, whatever happens.  With
# the defaults it takes about a minute and a half.
#
# This is a benchmark, not a test: `make check` does not run it.

set -eu

KEYS=${KEYS:-100000}
VALUE_SIZE=${VALUE_SIZE:-100}
CACHE_SIZE=${CACHE_SIZE:-64M}
WORKERS=${WORKERS:-2}
CONNECTIONS=${CONNECTIONS:-8}
PIPELINE=${PIPELINE:-16}
COALESCE=${COALESCE:-1}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
BUILD=${1:-.}
BUFFDB=${BUFFDB_BIN:-$BUILD/buffdb}
BENCH=${BENCH_BIN:-$BUILD/buffdb-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
CPU=$HERE/server_cpu.sh

prog=cache_ratio.sh
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

whole KEYS "$KEYS"
whole VALUE_SIZE "$VALUE_SIZE"
whole WORKERS "$WORKERS"
whole CONNECTIONS "$CONNECTIONS"
whole PIPELINE "$PIPELINE"
whole DURATION "$DURATION"
case $COALESCE in
0) coalesce= ;;
1) coalesce=--coalesce ;;
*) die "COALESCE must be 0 or 1, not '$COALESCE'" ;;
esac
whole WARMUP "$WARMUP"
if [ "$DURATION" -lt 2 ] || [ "$DURATION" -gt 20 ]; then
	die "DURATION must be 2 to 20 seconds (the script stays under two minutes)"
fi
[ "$WARMUP" -ge 1 ] || die "WARMUP must be at least 1 second"
[ "$PIPELINE" -ge 2 ] || die "PIPELINE must be at least 2 (the Gets go on streams)"
[ "$KEYS" -ge 1 ] || die "KEYS must be at least 1"
[ -x "$BUFFDB" ] || die "$BUFFDB is not an executable (give the build directory as the first argument)"
[ -x "$BENCH" ] || die "$BENCH is not an executable (give the build directory as the first argument)"
[ -r "$CPU" ] || die "$CPU is missing"
[ -r /proc/self/stat ] || die "/proc is needed to read the server's CPU time"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to find free ports"

base=${TMPDIR:-/tmp}
dir=$(mktemp -d "$base/buffdb-cache-ratio.XXXXXX") || die "could not create a directory in $base"
pids=""
bench_pid=""

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	# a buffdb-bench still running (interrupted mid-run) goes first
	if [ -n "$bench_pid" ]; then
		kill -TERM "$bench_pid" 2>/dev/null || true
		wait "$bench_pid" 2>/dev/null || true
	fi
	# workers die with their master (PDEATHSIG)
	# shellcheck disable=SC2086 # one argument per pid
	[ -z "$pids" ] || server_stop $pids
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CACHE_SIZE - start a server in $dir/NAME (lib.sh's
# server_start); sets $port and $pid and appends the pid to $pids
start() {
	name=$1
	d=$dir/$name
	mkdir -p "$d"
	printf 'cache_size = %s\nworkers = %s\n' "$2" "$WORKERS" >"$d/buffdb.conf"
	server_start "$d" || exit 1
	pids="$pids $pid"
}

# preload NAME PORT - set every hot key once (one Get follows, unmeasured
# in effect: --requests 1)
preload() {
	if ! timeout 120 "$BENCH" --addr "127.0.0.1:$2" --connections "$CONNECTIONS" \
		--keyspace "$KEYS" --value-size "$VALUE_SIZE" --preload \
		--requests 1 --warmup 0 --json kv-get >"$dir/preload-$1.json" 2>&1; then
		echo "cache_ratio.sh: the preload of the $1 server failed:" >&2
		cat "$dir/preload-$1.json" >&2
		exit 1
	fi
	printf '  preload %-3s %s keys in %s s\n' "$1" "$KEYS" \
		"$(json_num preload_s "$dir/preload-$1.json")"
}

start on "$CACHE_SIZE"
port_on=$port
pid_on=$pid
start off 0
port_off=$port
pid_off=$pid

echo "cache_ratio.sh: kv-get, $KEYS hot keys of $VALUE_SIZE bytes (uniform), cache_size $CACHE_SIZE vs 0,"
echo "  $WORKERS workers per server, --connections $CONNECTIONS --pipeline $PIPELINE ${coalesce:+$coalesce }(COALESCE=$COALESCE), warmup $WARMUP s + $DURATION s per run"
preload on "$port_on"
preload off "$port_off"
entries=$("$BUFFDB" stats -s "$dir/on/kv.db" 2>/dev/null |
	sed -n 's/^cache: \([0-9]*\) entries.*/\1/p')
echo "  cached server holds ${entries:-?} cache entries after the preload"
echo

printf '%-3s %-5s %11s %9s %9s %10s %12s %14s %9s\n' run cache "ops/s" "p50 us" "p99 us" "client" "server CPU" "server Gets" "cache"
printf '%-3s %-5s %11s %9s %9s %10s %12s %14s %9s\n' "" "" "" "" "" "us/op" "us per Get" "per CPU-s" "hit %"
status=0
runs=$dir/runs
: >"$runs"
i=0
for which in on off on off; do
	i=$((i + 1))
	if [ "$which" = on ]; then
		p=$port_on
		m=$pid_on
	else
		p=$port_off
		m=$pid_off
	fi
	out=$dir/run$i.json
	c0=$(cache_counts "$dir/$which/kv.db")
	"$BENCH" --addr "127.0.0.1:$p" --connections "$CONNECTIONS" \
		--pipeline "$PIPELINE" $coalesce --duration "$DURATION" --warmup "$WARMUP" \
		--keyspace "$KEYS" --value-size "$VALUE_SIZE" --json \
		kv-get >"$out" 2>"$dir/run$i.err" &
	bench_pid=$!
	# the server's CPU over [end of warmup + 0.5 s, end of run - 0.5 s]
	sleep "$WARMUP.5"
	w0=$(date +%s.%N)
	s0=$(sh "$CPU" -c "$m")
	sleep "$((DURATION - 1))"
	w1=$(date +%s.%N)
	s1=$(sh "$CPU" -c "$m")
	rc=0
	wait "$bench_pid" || rc=$?
	bench_pid=""
	c1=$(cache_counts "$dir/$which/kv.db")
	if [ "$rc" -ne 0 ]; then
		echo "cache_ratio.sh: run $i (cache $which) failed:" >&2
		cat "$dir/run$i.err" "$out" >&2
		exit 1
	fi
	ops=$(json_num ops_per_sec "$out")
	[ -n "$ops" ] || die "run $i printed no ops_per_sec"
	p50=$(json_num p50 "$out")
	p99=$(json_num p99 "$out")
	errs=$(json_num errors_total "$out")
	cli=$(json_num us_per_op "$out")
	[ "$errs" = 0 ] || status=1
	awk -v i="$i" -v w="$which" -v ops="$ops" -v p50="$p50" -v p99="$p99" \
		-v cli="$cli" -v s0="$s0" -v s1="$s1" -v w0="$w0" -v w1="$w1" \
		-v c0="$c0" -v c1="$c1" 'BEGIN {
		util = (w1 > w0) ? (s1 - s0) / (w1 - w0) : 0   # server CPUs busy
		us = ops > 0 ? util / ops * 1e6 : 0            # server us per Get
		cap = us > 0 ? 1e6 / us : 0
		split(c0, a, " "); split(c1, b, " ")
		h = b[1] - a[1]; m = b[2] - a[2]
		hit = (h + m) > 0 ? sprintf("%.1f", 100 * h / (h + m)) : "-"
		printf "%-3s %-5s %11.0f %9.0f %9.0f %10.1f %12.1f %14.0f %9s\n",
			i, w, ops, p50, p99, cli, us, cap, hit
		printf "%s %f %f %f\n", w, ops, us, util > "/dev/stderr"
	}' 2>>"$runs"
done

echo
awk -v keys="$KEYS" '
	{ n[$1]++; ops[$1] += $2; us[$1] += $3; util[$1] += $4 }
	END {
		for (w in n) { ops[w] /= n[w]; us[w] /= n[w]; util[w] /= n[w] }
		printf "mean      %-5s %11.0f ops/s  %6.1f us server CPU per Get  %9.0f Gets per server CPU-s  (%.2f CPUs busy)\n",
			"on", ops["on"], us["on"], 1e6 / us["on"], util["on"]
		printf "mean      %-5s %11.0f ops/s  %6.1f us server CPU per Get  %9.0f Gets per server CPU-s  (%.2f CPUs busy)\n",
			"off", ops["off"], us["off"], 1e6 / us["off"], util["off"]
		r1 = ops["off"] > 0 ? ops["on"] / ops["off"] : 0
		r2 = us["on"] > 0 ? us["off"] / us["on"] : 0
		printf "\nratio on/off, client-observed ops/s:               %.2fx  %s\n",
			r1, (r1 >= 2 ? "meets the 2x target" : "misses the 2x target")
		printf "ratio on/off, server capacity (Gets per CPU-s):    %.2fx  %s\n",
			r2, (r2 >= 2 ? "meets the 2x target" : "misses the 2x target")
		printf "server CPU saved per Get by the cache: %.1f us (%.1f -> %.1f)\n",
			us["off"] - us["on"], us["off"], us["on"]
	}' "$runs"
exit "$status"
