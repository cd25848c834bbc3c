#!/usr/bin/env python3
"""Builds a Chatterbox Multilingual style model directory from the tiny fixtures
(random weights: plumbing only), with the real file names:
  t3_mtl23ls_v3.safetensors  <- t3/t3_tiny.safetensors with text_emb / text_head grown
                                to the multilingual 2454 rows (the first 704 as they are,
                                the rest a deterministic pattern of the same scale)
  grapheme_mtl_merged_expanded_v1.json -> tests/t3/mtl/mtl_tiny.json (tiny made-up vocabulary)
  Cangjie5_TC.json           -> tests/t3/mtl/Cangjie5_TC.json (a subset of the real table)
  s3gen.safetensors          -> s3gen/flow_tiny.safetensors
  conds.pt                   -> t3/conds_tiny.pt
Standard library only.  usage: make-mtl-model-dir.py FIXTURES MTL_CASES_DIR OUT_DIR"""
import json
import math
import os
import struct
import sys


from safetensors_io import read, write  # one reader/writer for the model-dir scripts


MTL_ROWS = 2454
fx, cases, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
t3, meta = read(os.path.join(fx, "t3/t3_tiny.safetensors"))
grown = {}
for k, (dtype, shape, raw) in t3.items():
    if k.startswith("test."):
        continue
    if k in ("text_emb.weight", "text_head.weight"):
        assert dtype == "F32"
        rows, width = shape
        vals = struct.unpack(f"<{rows * width}f", raw)
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
        extra = [math.sin(i * 0.37) * std * 1.7 for i in range((MTL_ROWS - rows) * width)]
        raw = raw + struct.pack(f"<{len(extra)}f", *extra)
        shape = [MTL_ROWS, width]
    grown[k] = (dtype, shape, raw)
cfg = json.loads(meta["config"])
if "t3" in cfg:
    cfg["t3"]["text_tokens_dict_size"] = MTL_ROWS
write(os.path.join(out, "t3_mtl23ls_v3.safetensors"), grown, {"config": json.dumps(cfg)})
os.symlink(os.path.join(cases, "mtl_tiny.json"), os.path.join(out, "grapheme_mtl_merged_expanded_v1.json"))
os.symlink(os.path.join(cases, "Cangjie5_TC.json"), os.path.join(out, "Cangjie5_TC.json"))
os.symlink(os.path.join(fx, "s3gen/flow_tiny.safetensors"), os.path.join(out, "s3gen.safetensors"))
os.symlink(os.path.join(fx, "t3/conds_tiny.pt"), os.path.join(out, "conds.pt"))
