#!/bin/sh
# install-deps.sh - install every Debian 12 package buffdb needs to build,
# test and benchmark.  Run as root (or via sudo).  Idempotent.
set -eu

PKGS="build-essential autoconf automake libtool pkg-config
      libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
      libprotobuf-c-dev protobuf-c-compiler
      libsqlite3-dev liblmdb-dev lmdb-utils libcriterion-dev
      libinih-dev libsystemd-dev uuid-dev libssl-dev libxxhash-dev
      libjansson-dev
      python3 python3-grpcio python3-protobuf
      sqlite3 time procps iproute2 valgrind"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
