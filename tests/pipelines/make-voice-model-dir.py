#!/usr/bin/env python3
"""Builds a Chatterbox style model directory for the voice pipelines from the
tiny fixtures (random weights: plumbing only), with the real file names:
  s3gen.safetensors  <- s3gen/flow_tiny.safetensors (flow, with its config) + clone/s3tok_tiny.safetensors
                        (tokenizer.*) + clone/campplus_tiny.safetensors (speaker_encoder.*), as the real
                        s3gen.safetensors holds all three
  ve.safetensors     -> clone/ve_full.safetensors
  t3_cfg.safetensors -> t3/t3_tiny.safetensors, tokenizer.json -> t3/tokenizer_tiny.json
  conds.pt           -> t3/conds_tiny.pt (the default voice, as vc.py's)
Standard library only.  usage: make-voice-model-dir.py FIXTURES OUT_DIR"""
import json
import os
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}
    return tensors, meta


def write(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for k, (dtype, shape, raw) in tensors.items():
        header[k] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


fx, out = sys.argv[1:3]
os.makedirs(out, exist_ok=True)
flow, flow_meta = read(os.path.join(fx, "s3gen/flow_tiny.safetensors"))
s3gen = {k: v for k, v in flow.items() if not k.startswith("test.")}
for f in ("clone/s3tok_tiny.safetensors", "clone/campplus_tiny.safetensors"):
    t, _ = read(os.path.join(fx, f))
    s3gen.update({k: v for k, v in t.items() if not k.startswith("test.")})
write(os.path.join(out, "s3gen.safetensors"), s3gen, {"config": flow_meta["config"]})
for name, src in (("ve.safetensors", "clone/ve_full.safetensors"), ("t3_cfg.safetensors", "t3/t3_tiny.safetensors"),
                  ("tokenizer.json", "t3/tokenizer_tiny.json"), ("conds.pt", "t3/conds_tiny.pt")):
    os.symlink(os.path.join(fx, src), os.path.join(out, name))
