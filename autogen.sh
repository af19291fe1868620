#!/bin/sh
# autogen.sh - bootstrap the autotools build from a git checkout
set -e
cd "$(dirname "$0")"
autoreconf --install --force
