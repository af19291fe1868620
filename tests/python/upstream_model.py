"""upstream_model.py - a model pushed through buffdb's Model service
(proto/model.proto), then loaded back the way a client written against
upstream BuffDB loads one: Kv.Get of model:<name>:<version>:metadata, then
Blob.Get of each of its blob_ids, concatenated.  The loading side uses only
the kv.proto and blob.proto stubs, on a channel with gRPC's default message
limits (4 MiB received), as most clients have.  Exits non-zero on any
mismatch."""
import hashlib
import json
import os
import sys

import grpc

import blob_pb2
import blob_pb2_grpc
import kv_pb2
import kv_pb2_grpc
import model_pb2
import model_pb2_grpc

addr = sys.argv[1]
MIB = 1 << 20
# the server's part size (BFDB_MODEL_PART_SIZE): 4 MiB less 64 KiB, so that
# a part with its metadata fits in one default 4 MiB message
PART = 4 * MIB - 64 * 1024
DEFAULT_MAX_RECV = 4 * MIB  # grpc.max_receive_message_length's default

name, version = "llama-tiny", "2026.1"
# three parts, two of them full (PART bytes)
files = [("weights/model.bin", os.urandom(2 * PART + MIB + 4321)),
         ("config.json", json.dumps({"hidden_size": 64}).encode())]
whole = b"".join(d for _, d in files)


def push_requests():
    info = model_pb2.ModelInfo(
        name=name, version=version, framework="pytorch",
        description="pushed from python", input_shape=[1, 128],
        output_shape=[1, 32000], parameters={"layers": "2"},
        files=[model_pb2.FileInfo(path=p, size=len(d),
                                  sha256=hashlib.sha256(d).hexdigest())
               for p, d in files])
    yield model_pb2.PushRequest(header=model_pb2.PushHeader(info=info))
    for i, (_, d) in enumerate(files):
        for off in range(0, len(d), MIB):
            yield model_pb2.PushRequest(chunk=model_pb2.Chunk(
                file=i, offset=off, data=d[off:off + MIB]))


# ---- push through the Model service ---------------------------------------
pch = grpc.insecure_channel(addr)
grpc.channel_ready_future(pch).result(timeout=10)
model = model_pb2_grpc.ModelStub(pch)
pushed = model.Push(push_requests(), timeout=120)
assert pushed.name == name and pushed.version == version, pushed
assert pushed.size_bytes == len(whole), pushed.size_bytes
want_parts = sum((len(d) + PART - 1) // PART for _, d in files)
assert len(pushed.blob_ids) == want_parts, list(pushed.blob_ids)
for fi, (p, d) in zip(pushed.files, files):
    assert fi.path == p and fi.size == len(d), fi
    assert fi.sha256 == hashlib.sha256(d).hexdigest(), (p, fi.sha256)
assert pushed.created_at.endswith("Z"), pushed.created_at

# the Model service's own read path, default limits too
got = {}
first = True
for r in model.Pull(model_pb2.PullRequest(name=name, version=version),
                    timeout=120):
    if first:
        assert r.WhichOneof("msg") == "info", r
        first = False
        continue
    assert r.WhichOneof("msg") == "chunk", r
    got.setdefault(r.chunk.file, bytearray())
    assert r.chunk.offset == len(got[r.chunk.file]), r.chunk.offset
    got[r.chunk.file] += r.chunk.data
for i, (p, d) in enumerate(files):
    assert bytes(got.get(i, b"")) == d, "Pull: %s differs" % p
ver = model.Verify(model_pb2.VerifyRequest(name=name, version=version))
assert ver.ok and ver.bytes_checked == len(whole), ver
pch.close()

# ---- load it the upstream way: kv + blob stubs, default limits ------------
ch = grpc.insecure_channel(addr)  # no options: 4 MiB receive limit
grpc.channel_ready_future(ch).result(timeout=10)
kv = kv_pb2_grpc.KvStub(ch)
blob = blob_pb2_grpc.BlobStub(ch)

key = f"model:{name}:{version}:metadata"
res = list(kv.Get(iter([kv_pb2.GetRequest(key=key)])))
info = json.loads(res[0].value)
assert list(info) == ["name", "version", "framework", "description",
                      "input_shape", "output_shape", "parameters",
                      "created_at", "size_bytes", "blob_ids"], list(info)
assert info["name"] == name and info["version"] == version, info
assert info["framework"] == "pytorch", info
assert info["input_shape"] == [1, 128], info
assert info["output_shape"] == [1, 32000], info
assert info["parameters"].get("layers") == "2", info
assert info["size_bytes"] == len(whole), info
assert info["created_at"] == pushed.created_at, info
assert info["blob_ids"] == list(pushed.blob_ids), info

index = list(kv.Get(iter([kv_pb2.GetRequest(key=f"model:{name}:index")])))
assert json.loads(index[0].value) == [version], index[0].value

parts = []
for i, bid in enumerate(info["blob_ids"]):
    try:
        parts.extend(blob.Get(iter([blob_pb2.GetRequest(id=bid)])))
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise SystemExit(
                "Blob.Get of part %d (blob %d) does not fit gRPC's default "
                "4 MiB receive limit (%d bytes): %s" %
                (i, bid, DEFAULT_MAX_RECV, e.details()))
        raise
assert len(parts) == len(info["blob_ids"]), len(parts)
# each file's parts: full ones of PART bytes, then the rest of the file
want_lens = [min(PART, len(d) - off) for _, d in files
             for off in range(0, len(d), PART)]
for i, p in enumerate(parts):
    assert len(p.bytes) == want_lens[i], (i, len(p.bytes), want_lens[i])
    assert p.HasField("metadata"), i
    meta = json.loads(p.metadata)
    assert meta == {"model": name, "part": i, "type": "weights",
                    "version": version}, meta
data = b"".join(p.bytes for p in parts)
assert len(data) == len(whole), (len(data), len(whole))
assert hashlib.sha256(data).digest() == hashlib.sha256(whole).digest()
ch.close()
print("ok")
