"""Minimal safetensors reader and writer (the format: u64 header length, JSON header, raw
little-endian data), so the training scripts need nothing beyond PyTorch and NumPy."""
import json
import struct

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "U8": np.uint8}


def read(path):
    """All tensors of a file as NumPy arrays, and its metadata."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    base = 8 + n
    for name, e in header.items():
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(data[base + a:base + b], dtype=DTYPES[e["dtype"]]).reshape(
            e["shape"])
    return out, meta


def write(path, tensors, metadata=None):
    """Write float32 tensors (NumPy arrays) in name order."""
    header, blobs, at = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
