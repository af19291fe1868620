"""upstream_client.py - what an ML engineer's client written against
upstream BuffDB does: store model weights as a blob with upstream's blob
metadata, record the ModelInfo JSON under model:<name>:<version>:metadata,
and load both back.  Exits non-zero on any mismatch."""
import hashlib
import json
import os
import sys

import grpc

import blob_pb2
import blob_pb2_grpc
import kv_pb2
import kv_pb2_grpc
import query_pb2
import query_pb2_grpc
from google.protobuf import wrappers_pb2

addr = sys.argv[1]
MIB = 1 << 20
opts = [("grpc.max_receive_message_length", 8 * MIB),
        ("grpc.max_send_message_length", 8 * MIB)]
ch = grpc.insecure_channel(addr, options=opts)
grpc.channel_ready_future(ch).result(timeout=10)
kv = kv_pb2_grpc.KvStub(ch)
blob = blob_pb2_grpc.BlobStub(ch)
query = query_pb2_grpc.QueryStub(ch)

name, version = "resnet50", "1.0.0"
weights = os.urandom(MIB)
meta = {"model": name, "part": 0, "type": "weights", "version": version}

stored = list(blob.Store(iter([blob_pb2.StoreRequest(
    bytes=weights, metadata=json.dumps(meta))])))
assert len(stored) == 1 and stored[0].id >= 1, stored
blob_id = stored[0].id

info = {"name": name, "version": version, "framework": "pytorch",
        "description": "image classifier", "input_shape": [1, 3, 224, 224],
        "output_shape": [1, 1000], "parameters": {"layers": "50"},
        "created_at": "2026-11-28T00:00:00Z", "size_bytes": len(weights),
        "blob_ids": [blob_id]}
key = f"model:{name}:{version}:metadata"
acks = list(kv.Set(iter([
    kv_pb2.SetRequest(key=key, value=json.dumps(info)),
    kv_pb2.SetRequest(key=f"model:{name}:index", value=json.dumps([version])),
])))
assert [a.key for a in acks] == [key, f"model:{name}:index"], acks

# load it back the way upstream's clients do
got = list(kv.Get(iter([kv_pb2.GetRequest(key=key)])))
loaded = json.loads(got[0].value)
assert loaded == info, loaded
parts = list(blob.Get(iter([blob_pb2.GetRequest(id=i)
                            for i in loaded["blob_ids"]])))
data = b"".join(p.bytes for p in parts)
assert hashlib.sha256(data).digest() == hashlib.sha256(weights).digest()
assert parts[0].HasField("metadata")
assert json.loads(parts[0].metadata) == meta

# optional presence both ways: absent metadata stays absent, "" stays ""
ids = [r.id for r in blob.Store(iter([blob_pb2.StoreRequest(bytes=b"a"),
                                      blob_pb2.StoreRequest(bytes=b"b",
                                                            metadata="")]))]
a, b = list(blob.Get(iter([blob_pb2.GetRequest(id=i) for i in ids])))
assert not a.HasField("metadata"), a
assert b.HasField("metadata") and b.metadata == "", b

# errors arrive as gRPC statuses
try:
    list(kv.Get(iter([kv_pb2.GetRequest(key="model:none:0:metadata")])))
    raise SystemExit("missing key did not fail")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.NOT_FOUND, e

eq = kv.Eq(iter([kv_pb2.EqRequest(key=key), kv_pb2.EqRequest(key=key)]))
assert isinstance(eq, wrappers_pb2.BoolValue) and eq.value is True

rows = list(query.Query(iter([query_pb2.RawQuery(
    query="SELECT count(*) FROM blob", target=query_pb2.BLOB)])))
count = wrappers_pb2.Int64Value()
assert rows[0].fields[0].Unpack(count) and count.value == 3, rows
print("ok")
