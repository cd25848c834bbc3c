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
import os
import sys


from safetensors_io import read, write  # one reader/writer for the model-dir scripts


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
