#!/bin/sh
#
# cache_ratio.sh - kv-get throughput of buffdb with its shared key cache
# and without it, and the ratio of the two
#
# usage: bench/cache_ratio.sh [BUILDDIR]
#
#   BUILDDIR      holds buffdb and buffdb-bench (default: the current
#                 directory); $BUFFDB_BIN and $BENCH_BIN override each
#   DURATION      measured seconds per run (default 10)
#   CONNECTIONS   buffdb-bench --connections (default 8)
#   PIPELINE      buffdb-bench --pipeline (default 16)
#   KEYS          hot keys (default 1000)
#   VALUE_SIZE    bytes per value (default 100)
#   WORKERS       workers per server (default 2)
#   TMPDIR        where the scratch directories go (default /tmp)
#
# Two servers run side by side on loopback ports, each in a directory of
# its own, with the same settings but cache_size (64M for one, 0 for the
# other, through a -c file).  Each run of buffdb-bench sets the KEYS hot
# keys (--preload) and then reads them for DURATION seconds after a one
# second warmup; the runs alternate on, off, on, off so that drift of the
# machine hits both alike.  The script prints ops/s per run, the mean per
# server and the ratio on/off, and exits 0 if every run answered requests
# without errors.  Both servers are stopped on exit, whatever happens.
# With the defaults it takes about a minute.
#
# This is a benchmark, not a test: `make check` does not run it.

set -eu

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-8}
PIPELINE=${PIPELINE:-16}
KEYS=${KEYS:-1000}
VALUE_SIZE=${VALUE_SIZE:-100}
WORKERS=${WORKERS:-2}
BUILD=${1:-.}
BUFFDB=${BUFFDB_BIN:-$BUILD/buffdb}
BENCH=${BENCH_BIN:-$BUILD/buffdb-bench}

die() {
	echo "cache_ratio.sh: $*" >&2
	exit 2
}

# whole NAME VALUE - die unless VALUE is a whole number
whole() {
	case $2 in
	'' | *[!0-9]*) die "$1 must be a whole number, not '$2'" ;;
	esac
}
whole DURATION "$DURATION"
whole CONNECTIONS "$CONNECTIONS"
whole PIPELINE "$PIPELINE"
whole KEYS "$KEYS"
whole VALUE_SIZE "$VALUE_SIZE"
whole WORKERS "$WORKERS"
if [ "$DURATION" -lt 1 ] || [ "$DURATION" -gt 20 ]; then
	die "DURATION must be 1 to 20 seconds (the script stays under two minutes)"
fi
[ -x "$BUFFDB" ] || die "$BUFFDB is not an executable (give the build directory as the first argument)"
[ -x "$BENCH" ] || die "$BENCH is not an executable (give the build directory as the first argument)"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to find free ports"

base=${TMPDIR:-/tmp}
dir=$(mktemp -d "$base/buffdb-cache-ratio.XXXXXX") || die "could not create a directory in $base"
pids=""

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	# SIGTERM each master (it stops its workers), wait up to 15 s, then
	# SIGKILL what is left; workers die with their master (PDEATHSIG)
	for p in $pids; do
		kill -TERM "$p" 2>/dev/null || true
	done
	n=0
	while [ "$n" -lt 150 ]; do
		alive=""
		for p in $pids; do
			if kill -0 "$p" 2>/dev/null; then
				alive="$alive $p"
			fi
		done
		[ -n "$alive" ] || break
		sleep 0.1
		n=$((n + 1))
	done
	for p in $pids; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_port - a TCP port on 127.0.0.1 free at the moment of asking
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# start NAME CACHE_SIZE - start a server in $dir/NAME; sets $port and
# appends its pid to $pids.  The port may be taken between free_port and
# the bind: then try another, five times at most.
start() {
	name=$1
	d=$dir/$name
	mkdir -p "$d"
	printf 'cache_size = %s\nworkers = %s\n' "$2" "$WORKERS" >"$d/buffdb.conf"
	tries=0
	while [ "$tries" -lt 5 ]; do
		tries=$((tries + 1))
		port=$(free_port)
		"$BUFFDB" run "127.0.0.1:$port" -c "$d/buffdb.conf" \
			--kv-store "$d/kv.db" --blob-store "$d/blob.db" \
			>"$d/log" 2>&1 &
		pid=$!
		pids="$pids $pid"
		# the master logs "ready:" once every worker listens (10 s at most)
		n=0
		while [ "$n" -lt 100 ] && kill -0 "$pid" 2>/dev/null; do
			if grep -q 'ready:' "$d/log"; then
				return 0
			fi
			sleep 0.1
			n=$((n + 1))
		done
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	echo "cache_ratio.sh: the $name server did not start; its log:" >&2
	cat "$d/log" >&2
	exit 1
}

start on 64M
port_on=$port
start off 0
port_off=$port

# json_num KEY FILE - the first number after "KEY": in FILE
json_num() {
	sed -n "s/.*\"$1\":\([0-9.][0-9.]*\).*/\1/p" "$2" | head -n 1
}

echo "buffdb-bench kv-get: $KEYS keys of $VALUE_SIZE bytes, --connections $CONNECTIONS --pipeline $PIPELINE --duration $DURATION, $WORKERS workers per server"
printf '%-4s %-10s %12s %10s %10s %12s\n' run cache ops/s "p50 us" "p99 us" "errors"
status=0
sum_on=0
sum_off=0
i=0
for which in on off on off; do
	i=$((i + 1))
	if [ "$which" = on ]; then p=$port_on; else p=$port_off; fi
	out=$dir/run$i.json
	if ! timeout 90 "$BENCH" --addr "127.0.0.1:$p" --connections "$CONNECTIONS" \
		--pipeline "$PIPELINE" --duration "$DURATION" --warmup 1 \
		--keyspace "$KEYS" --value-size "$VALUE_SIZE" --preload --json \
		kv-get >"$out" 2>"$dir/run$i.err"; then
		echo "cache_ratio.sh: run $i (cache $which) failed:" >&2
		cat "$dir/run$i.err" "$out" >&2
		exit 1
	fi
	ops=$(json_num ops_per_sec "$out")
	p50=$(json_num p50 "$out")
	p99=$(json_num p99 "$out")
	errs=$(json_num errors_total "$out")
	[ -n "$ops" ] || die "run $i printed no ops_per_sec"
	[ "$errs" = 0 ] || status=1
	printf '%-4s %-10s %12s %10s %10s %12s\n' "$i" "$which" "$ops" "$p50" "$p99" "$errs"
	if [ "$which" = on ]; then
		sum_on=$(awk -v a="$sum_on" -v b="$ops" 'BEGIN { print a + b }')
	else
		sum_off=$(awk -v a="$sum_off" -v b="$ops" 'BEGIN { print a + b }')
	fi
done
awk -v on="$sum_on" -v off="$sum_off" 'BEGIN {
	printf "cache on   %12.1f ops/s (mean of 2)\n", on / 2
	printf "cache off  %12.1f ops/s (mean of 2)\n", off / 2
	if (off > 0)
		printf "ratio on/off %.2f\n", on / off
}'
exit "$status"
