"""Helpers shared by the reference_*.py scripts (timing loop,
a minimal safetensors reader for the weight/check files bench_api writes,
thread setup). Standard library + torch only: runs on Debian's python3-torch
(/usr/bin/python3), not a pyenv python."""

import json
import os
import struct
import sys
import time

import torch

_DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32}


def read_safetensors(path):
    """{name: tensor} of a safetensors file (the format is an 8-byte header
    length, a JSON header, then the raw little-endian data)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=_DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out


def write_safetensors(path, tensors, keep_int64=False):
    """{name: tensor} -> a float32 safetensors file (read_safetensors's inverse).
    keep_int64: int64 tensors (token ids) stay I64 instead of becoming F32."""
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        t = t.detach().contiguous()
        dt = "I64" if keep_int64 and t.dtype == torch.int64 else "F32"
        t = t if dt == "I64" else t.float()
        b = t.numpy().tobytes()
        header[k] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def set_threads(n):
    # Same as the C++ side: run_bench.py also exports OPENBLAS_NUM_THREADS /
    # OMP_NUM_THREADS = n for this process, so both of LibTorch's pools match.
    torch.set_num_threads(n)


def time_calls(fn, reps, warmup, warm_fn=None):
    """Times fn() reps times after `warmup` calls of warm_fn (default fn; the
    scripts warm up on at most 2 s of input: enough to prime the pools)."""
    for _ in range(warmup):
        (warm_fn or fn)()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(1000.0 * (time.perf_counter() - t0))
    return times


def peak_rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def rel_l2(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    n = min(a.numel(), b.numel())
    a, b = a[:n], b[:n]
    return float((a - b).norm() / b.norm()), float((a - b).abs().max())


def torch_info():
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "openblas_env": os.environ.get("OPENBLAS_NUM_THREADS")}
