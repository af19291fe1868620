#!/bin/sh
# tap.sh - run one test program so that it reports TAP on stdout.
# Criterion binaries get --tap; shell and python tests print TAP themselves.
t="$1"; shift
case "$t" in
    *.sh) exec "${SHELL:-/bin/sh}" "$t" "$@" ;;
    *.py) exec python3 "$t" "$@" ;;
    *) exec "$t" --tap=/dev/stdout -j2 "$@" ;;
esac
