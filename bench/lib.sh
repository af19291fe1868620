# shellcheck shell=sh
# shellcheck disable=SC2154 # $prog and $BUFFDB are the sourcing script's
# lib.sh - what the benchmark scripts share; sourced, not run:
#
#   prog=txn_bench.sh            # names the script in messages
#   . "$(dirname "$0")/lib.sh"
#
# The script sets $BUFFDB (the buffdb binary) before calling
# server_start.  Every function is POSIX sh.

# die MESSAGE - bad settings: say so on stderr, exit 2
die() {
	echo "$prog: $*" >&2
	exit 2
}

# whole NAME VALUE - die unless VALUE is a whole number
whole() {
	case $2 in
	'' | *[!0-9]*) die "$1 must be a whole number, not '$2'" ;;
	esac
}

# free_port - a TCP port on 127.0.0.1 free at the moment of asking
free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# json_num KEY FILE - the first number after "KEY": in FILE
json_num() {
	sed -n "s/.*\"$1\":\([0-9.][0-9.]*\).*/\1/p" "$2" | head -n 1
}

# cache_counts KV_STORE - "hits misses" of the key cache summed over the
# processes of the server using KV_STORE, from `buffdb stats`
cache_counts() {
	"$BUFFDB" stats -s "$1" 2>/dev/null |
		awk '$1 == "total" { print $3, $4; found = 1 }
		END { if (!found) print "0 0" }'
}

# server_start DIR - start $BUFFDB on a free loopback port with
# DIR/buffdb.conf, its stores and its log (DIR/log) in DIR; wait until
# the master logs "ready:" (10 s at most).  The port may be taken between
# free_port and the bind: then try another, five times at most.  Sets
# $port and $pid (also on failure, "" for pid); returns 1 after printing
# the log if it never became ready.
server_start() {
	tries=0
	while [ "$tries" -lt 5 ]; do
		tries=$((tries + 1))
		port=$(free_port)
		"$BUFFDB" run "127.0.0.1:$port" -c "$1/buffdb.conf" \
			--kv-store "$1/kv.db" --blob-store "$1/blob.db" \
			>"$1/log" 2>&1 &
		pid=$!
		n=0
		while [ "$n" -lt 100 ] && kill -0 "$pid" 2>/dev/null; do
			if grep -q 'ready:' "$1/log"; then
				return 0
			fi
			sleep 0.1
			n=$((n + 1))
		done
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		pid=""
	done
	echo "$prog: the server in $1 did not start; its log:" >&2
	cat "$1/log" >&2
	return 1
}

# server_stop PID... - SIGTERM each master (it stops its workers), wait
# up to 15 s, then SIGKILL what is left; workers die with their master
server_stop() {
	for p in "$@"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	n=0
	while [ "$n" -lt 150 ]; do
		alive=""
		for p in "$@"; do
			if kill -0 "$p" 2>/dev/null; then
				alive="$alive $p"
			fi
		done
		[ -n "$alive" ] || break
		sleep 0.1
		n=$((n + 1))
	done
	for p in "$@"; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
}
