#!/bin/sh
#
# server_cpu.sh - CPU time a server has used so far, in seconds
#
# usage: bench/server_cpu.sh PID            the process PID (all threads)
#        bench/server_cpu.sh -c PID         the children of PID: a buffdb
#                                           master's workers
#
# Prints one number, user + system time from /proc/<pid>/stat (utime and
# stime, fields 14 and 15, in clock ticks of getconf CLK_TCK, usually
# 10 ms), with two decimals.  With -c it sums the live children of PID
# (every thread's children file) and adds PID's cutime and cstime (fields
# 16 and 17): the time of children already reaped, so a worker that is
# restarted between two samples does not make the sum go backwards.  The
# master's own time is not counted.  Sample it twice and subtract:
#
#   a=$(bench/server_cpu.sh -c "$master"); sleep 5
#   b=$(bench/server_cpu.sh -c "$master")   # b - a = worker CPU seconds
#
# Exit status 1 if PID is gone.  Linux only.

set -eu

children=0
if [ "${1:-}" = -c ]; then
	children=1
	shift
fi
[ $# -eq 1 ] || {
	echo "usage: server_cpu.sh [-c] PID" >&2
	exit 2
}
pid=$1
[ -r "/proc/$pid/stat" ] || {
	echo "server_cpu.sh: no process $pid" >&2
	exit 1
}
tck=$(getconf CLK_TCK)

# ticks PID FIELDS - the sum of the given stat fields of PID (0 if it is
# gone).  The command name (field 2) may hold spaces, so fields are
# counted after its closing parenthesis: field n is then $(n - 2).
ticks() {
	sed 's/.*) //' "/proc/$1/stat" 2>/dev/null |
		awk -v f="$2" 'BEGIN { n = split(f, w, ",") }
		{ s = 0; for (i = 1; i <= n; i++) s += $(w[i] - 2); print s; found = 1 }
		END { if (!found) print 0 }'
}

if [ "$children" -eq 0 ]; then
	t=$(ticks "$pid" 14,15)
else
	t=$(ticks "$pid" 16,17)
	# shellcheck disable=SC2013 # the children files hold pids, words
	for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
		t=$((t + $(ticks "$c" 14,15)))
	done
fi
awk -v t="$t" -v h="$tck" 'BEGIN { printf "%.2f\n", t / h }'
