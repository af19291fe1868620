#!/bin/sh
# upstream_client.sh - a real client generated from upstream's protos.
#
# Generates Python stubs from proto/ with Debian's protoc and
# grpc_python_plugin, starts buffdb on a loopback port, and runs
# upstream_client.py (a client of upstream's kv, blob and query protos)
# and upstream_model.py (a model pushed through buffdb.model, loaded back
# with the kv and blob stubs only, at gRPC's default message limits)
# against it.  Prints TAP; skips when python3-grpcio is not installed (CI
# installs it).
set -u
py=/usr/bin/python3
srcdir=${BUFFDB_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${BUFFDB_BIN:-./buffdb}

if ! "$py" -c 'import grpc, google.protobuf' 2>/dev/null; then
    echo "1..0 # SKIP python3-grpcio is not installed"
    exit 0
fi
plugin=$(command -v grpc_python_plugin || true)
if [ -z "$plugin" ] || ! command -v protoc >/dev/null; then
    echo "1..0 # SKIP protoc or grpc_python_plugin is not installed"
    exit 0
fi

echo "1..4"
t3="a model pushed through buffdb.model loads the upstream way"
base=${BUFFDB_TMPDIR:-/tmp}
mkdir -p "$base"
dir=$(mktemp -d "$base/py-XXXXXX")
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

if protoc -I"$srcdir/proto" -I/usr/include --python_out="$dir" \
        --grpc_out="$dir" --plugin=protoc-gen-grpc="$plugin" \
        kv.proto blob.proto query.proto model.proto 2>"$dir/protoc.log"; then
    echo "ok 1 - python stubs generated from proto/"
else
    echo "not ok 1 - python stubs generated from proto/"
    sed 's/^/# /' "$dir/protoc.log"
    exit 0
fi

port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$dir" && exec "$bin" run "127.0.0.1:$port" --workers 2 >"$dir/server.log" 2>&1) &
pid=$!
i=0
while ! grep -q "ready:" "$dir/server.log" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 200 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "not ok 2 - upstream-style client stores and loads a model"
        echo "not ok 3 - $t3"
        sed 's/^/# /' "$dir/server.log"
        exit 0
    fi
    sleep 0.1
done

if PYTHONPATH="$dir" "$py" "$srcdir/tests/python/upstream_client.py" \
        "127.0.0.1:$port" >"$dir/client.log" 2>&1; then
    echo "ok 2 - upstream-style client stores and loads a model"
else
    echo "not ok 2 - upstream-style client stores and loads a model"
    sed 's/^/# /' "$dir/client.log"
fi

if PYTHONPATH="$dir" "$py" "$srcdir/tests/python/upstream_model.py" \
        "127.0.0.1:$port" >"$dir/model.log" 2>&1; then
    echo "ok 3 - $t3"
else
    echo "not ok 3 - $t3"
    sed 's/^/# /' "$dir/model.log"
fi

kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do
    sleep 0.1
    i=$((i + 1))
done
if wait "$pid"; then
    echo "ok 4 - server stops cleanly on SIGTERM"
else
    echo "not ok 4 - server stops cleanly on SIGTERM"
    sed 's/^/# /' "$dir/server.log"
fi
pid=""
