#!/bin/sh
#
# blob_rss.sh - time and measure the peak memory of `buffdb blob store` and
# `buffdb blob get` on one large blob (1 GiB by default)
#
# usage: bench/blob_rss.sh [BUFFDB]
#
#   BUFFDB        the buffdb binary (default: $BUFFDB_BIN, else ./buffdb)
#   BENCH_SIZE    bytes in the blob (default 1073741824, 1 GiB)
#   TMPDIR        where the scratch directory goes (default /tmp)
#
# The CLI moves blob data through a 1 MiB buffer, so its peak resident set
# size should stay under 64 MiB whatever the blob's size.  The script
# writes a file of pseudo-random bytes, stores it, gets it back, checks
# the round trip with cmp(1), prints one line per operation and exits 0
# only if the round trip matched and both operations stayed under the
# target.  It needs GNU time (/usr/bin/time -v) and about four times
# BENCH_SIZE of free disk space (the input, the store and its WAL, the
# output); the scratch directory is removed on exit.
#
# This is a benchmark, not a test: `make check` does not run it.

set -eu

TARGET_MIB=64
SIZE=${BENCH_SIZE:-1073741824}
BIN=${1:-${BUFFDB_BIN:-./buffdb}}
TIME=/usr/bin/time

die() {
	echo "blob_rss.sh: $*" >&2
	exit 2
}

case $SIZE in
'' | *[!0-9]*) die "BENCH_SIZE must be a number of bytes, not '$SIZE'" ;;
esac
[ -x "$BIN" ] || die "$BIN is not an executable (give the buffdb binary as the first argument or in \$BUFFDB_BIN)"
"$TIME" -v true >/dev/null 2>&1 || die "$TIME -v does not work (install GNU time)"

base=${TMPDIR:-/tmp}
[ -d "$base" ] || die "temporary directory $base does not exist"

# free space first: input + store + WAL + output
need_kib=$((SIZE * 4 / 1024))
[ "$need_kib" -ge 4194304 ] || need_kib=4194304
free_kib=$(df -Pk "$base" | awk 'NR == 2 { print $4 }')
case $free_kib in
'' | *[!0-9]*) die "could not read the free space of $base from df" ;;
esac
if [ "$free_kib" -lt "$need_kib" ]; then
	die "$base has $((free_kib / 1024)) MiB free; this benchmark needs $((need_kib / 1024)) MiB (set TMPDIR to a roomier file system or BENCH_SIZE lower)"
fi

dir=$(mktemp -d "$base/buffdb-bench.XXXXXX") || die "could not create a directory in $base"
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# pseudo-random input: AES-CTR of zeros is fast and does not compress;
# /dev/urandom otherwise
input=$dir/input
printf 'writing %s bytes of pseudo-random data... ' "$SIZE"
if command -v openssl >/dev/null 2>&1; then
	openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f \
		-iv 00000000000000000000000000000000 -in /dev/zero 2>/dev/null |
		head -c "$SIZE" >"$input" || true
else
	head -c "$SIZE" /dev/urandom >"$input"
fi
got=$(wc -c <"$input" | tr -d ' ')
[ "$got" -eq "$SIZE" ] || die "wrote $got bytes to $input, not $SIZE"
echo "done"

# measure NAME CMD... - run CMD under GNU time, stdout to $dir/NAME.out;
# leaves $dir/NAME.time
measure() {
	name=$1
	shift
	if ! "$TIME" -v -o "$dir/$name.time" "$@" >"$dir/$name.out" 2>"$dir/$name.err"; then
		echo "blob_rss.sh: $name failed:" >&2
		cat "$dir/$name.err" >&2
		exit 1
	fi
}

# seconds of a GNU time report ("Elapsed (wall clock) time (h:mm:ss or
# m:ss): 1:02.34")
seconds() {
	awk -F': ' '/Elapsed \(wall clock\)/ {
		n = split($2, t, ":"); s = 0
		for (i = 1; i <= n; i++) s = s * 60 + t[i]
		printf "%.2f", s
	}' "$1"
}

rss_kib() {
	awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"
}

store=$dir/blob.db
measure store "$BIN" blob -s "$store" store "$input"
id=$(cat "$dir/store.out")
case $id in
'' | *[!0-9]*) die "store printed '$id', not an id" ;;
esac
store_bytes=$(wc -c <"$store" | tr -d ' ')
measure get "$BIN" blob -s "$store" get "$id"
mv "$dir/get.out" "$dir/output"

if cmp -s "$input" "$dir/output"; then
	roundtrip=PASS
else
	roundtrip=FAIL
fi

status=0
printf '\n%-10s %10s %10s %14s  %s\n' operation seconds MB/s "peak RSS MiB" "target <= $TARGET_MIB MiB"
for op in store get; do
	s=$(seconds "$dir/$op.time")
	k=$(rss_kib "$dir/$op.time")
	line=$(awk -v s="$s" -v k="$k" -v size="$SIZE" -v target="$TARGET_MIB" 'BEGIN {
		mbs = s > 0 ? sprintf("%.1f", size / 1e6 / s) : "-"
		mib = k / 1024
		printf "%10.2f %10s %14.1f  %s", s, mbs, mib, mib <= target ? "PASS" : "FAIL"
	}')
	printf '%-10s %s\n' "$op" "$line"
	case $line in
	*FAIL) status=1 ;;
	esac
done
printf '\nblob %s: %s bytes, store file %s bytes; round trip (cmp): %s\n' \
	"$id" "$SIZE" "$store_bytes" "$roundtrip"
[ "$roundtrip" = PASS ] || status=1
exit "$status"
