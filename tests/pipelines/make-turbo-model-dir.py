#!/usr/bin/env python3
"""Builds a Chatterbox-Turbo style model directory from the tiny fixtures
(random weights: plumbing only), with the real file names:
  t3_turbo_v1.safetensors     -> t3_turbo/t3_turbo_tiny.safetensors (GPT-2 T3, 576-token text vocabulary)
  tokenizer.json              -> t3_turbo/gpt2_bpe_tiny/tokenizer.json (that vocabulary)
  s3gen_meanflow.safetensors  <- s3gen/flow_tiny.safetensors under "flow." + the mean-flow time mixer
                                 of tests/s3gen/flow_tiny_meanflow.safetensors (and its config)
  conds.pt                    <- the Turbo fixture's voice (t3.*) + conds_tiny's S3Gen prompt (gen.*),
                                 written as safetensors (the loaders read conds files by content)
Standard library only.  usage: make-turbo-model-dir.py FIXTURES S3GEN_TEST_DIR OUT_DIR"""
import os
import sys


from safetensors_io import read, write  # one reader/writer for the model-dir scripts


fx, s3gen_test_dir, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
os.symlink(os.path.join(fx, "t3_turbo/t3_turbo_tiny.safetensors"), os.path.join(out, "t3_turbo_v1.safetensors"))
os.symlink(os.path.join(fx, "t3_turbo/gpt2_bpe_tiny/tokenizer.json"), os.path.join(out, "tokenizer.json"))

flow, _ = read(os.path.join(fx, "s3gen/flow_tiny.safetensors"))
mf, mf_meta = read(os.path.join(s3gen_test_dir, "flow_tiny_meanflow.safetensors"))
s3gen = {"flow." + k: v for k, v in flow.items() if not k.startswith("test.")}
s3gen["flow.decoder.estimator.time_embed_mixer.weight"] = mf["decoder.estimator.time_embed_mixer.weight"]
# The config: at these widths the estimator's head count is not in any shape.
write(os.path.join(out, "s3gen_meanflow.safetensors"), s3gen, {"config": mf_meta["config"]})

turbo, _ = read(os.path.join(fx, "t3_turbo/t3_turbo_tiny.safetensors"))
conds, _ = read(os.path.join(fx, "t3/conds_tiny.safetensors"))
voice = {k: v for k, v in conds.items() if k.startswith("gen.")}
voice["t3.speaker_emb"] = turbo["test.cond.speaker_emb"]
voice["t3.cond_prompt_speech_tokens"] = turbo["test.cond.cond_prompt_speech_tokens"]
write(os.path.join(out, "conds.pt"), voice, {})
