#!/usr/bin/python3
"""Upstream Chatterbox's S3Gen flow timed in PyTorch: the whole-utterance
`flow.inference` and the re-decode-everything streaming rule of Chatterbox
PR #528 (our S3GenFlowStreamer's default options), on weights and inputs that
`bench_api window --weights W --inputs I` then runs too (bench/run_live.py's
"against upstream's rule in PyTorch" table).

  reference_flow_stream.py --weights W.safetensors --inputs I.safetensors
      [--meanflow 0|1] [--seconds S] [--prompt-seconds P] [--chunk C]
      [--threads N] [--upstream GITDIR]

1. Builds the flow as upstream's S3Token2Mel.__init__ does (full published
   size; tests/s3gen/upstream_flow.py; flow.py from PR #528, which is
   5de7a54's plus the finalize=False mask fix the rule needs) with torch's default initialisation
   after torch.manual_seed(1234). Mean flow (Turbo): upstream initialises
   time_embed_mixer to its diagonal [I, 0], which makes r do nothing; it is
   perturbed as in tests/s3gen/make_meanflow_fixture.py (seed 2025) so both
   halves matter and the weight mapping is exercised.
2. Inputs with bench_window.h's seeds: tokens randint(0, 6561) [1, 25 S],
   prompt tokens [1, 25 P], prompt mel randn [1, 50 P, 80] and x-vector randn
   [1, 192] from one generator (seed 7); the noise z [1, 80, 50 P + 50 S] is
   the window streamer's (prompt part randn([50 P, 80]) from 5 ^
   0xD1B54A32D192ED03, target part randn([50 S, 80]) from 5, transposed), so
   our whole decode, our window mode and upstream's whole decode all start
   from the same z.
3. Times, after one warm-up call on 10 tokens: the whole decode
   (finalize=True, z given: torch.randn_like returns it), then the rule:
   every C tokens flow.inference on all tokens so far with finalize=False
   (the last 3 tokens are look-ahead), emitting the frames not emitted
   before; the end with finalize=True. The rule's target noise is z's target
   part (upstream's noised_mels: drawn once, reused), its prompt part is
   randn_like per call, as upstream (seeded once, torch.manual_seed(11)).
   PR #528's S3GenStreamer also vocodes the whole mel with HiFT per call and
   appends 3 silence tokens at the end; neither is timed here (flow only, no
   silence: the same rule as S3GenFlowStreamer's defaults).
4. Prints one JSON line: per-call times, totals, first-chunk time, the rule
   mel's deviation from upstream's whole mel, torch version, threads, peak
   RSS (measured before the files are written). Then writes W (the flow's
   state dict under "flow.", as s3gen.safetensors) and I (token,
   gen.prompt_token, gen.prompt_feat, gen.embedding, noise, and upstream's
   mels: upstream.whole_mel, upstream.rule_mel).

Runs on Debian's python3-torch (/usr/bin/python3).
"""
import argparse
import contextlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "s3gen"))
import torch  # noqa: E402
from reference_common import emit, peak_rss_kb, rel_l2, set_threads, write_safetensors  # noqa: E402
import upstream_flow  # noqa: E402

PROMPT_SEED_XOR = 0xD1B54A32D192ED03  # S3GenFlowStreamer's window-mode prompt noise


def make_inputs(n, p, seed=5):
    g = torch.Generator().manual_seed(7)
    tok = torch.randint(0, 6561, (1, n), generator=g)
    prompt_token = torch.randint(0, 6561, (1, p), generator=g)
    prompt_feat = torch.randn(1, 2 * p, 80, generator=g)
    embedding = torch.randn(1, 192, generator=g)
    zp = torch.randn(1, 2 * p, 80, generator=torch.Generator().manual_seed(seed ^ PROMPT_SEED_XOR)).transpose(1, 2)
    zt = torch.randn(1, 2 * n, 80, generator=torch.Generator().manual_seed(seed)).transpose(1, 2)
    return tok, prompt_token, prompt_feat, embedding, torch.cat([zp, zt], 2).contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--meanflow", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--prompt-seconds", type=float, default=6)
    ap.add_argument("--chunk", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--upstream", default="/work/.mirror/resemble-ai+chatterbox/repo")
    a = ap.parse_args()
    set_threads(a.threads)
    upstream_flow.setup(a.upstream, flow_py_commit=upstream_flow.PR528)
    mf = bool(a.meanflow)
    steps = 2 if mf else 10
    torch.manual_seed(1234)
    flow = upstream_flow.build_s3gen_flow(meanflow=mf)
    if mf:
        w = flow.decoder.estimator.time_embed_mixer.weight
        D = w.shape[0]
        g = torch.Generator().manual_seed(2025)
        with torch.no_grad():
            w.copy_(torch.cat([torch.eye(D) + 0.5 * torch.randn(D, D, generator=g) / D ** 0.5,
                               0.5 * torch.randn(D, D, generator=g) / D ** 0.5], dim=1))
    n, p = round(25 * a.seconds), round(25 * a.prompt_seconds)
    tok, ptok, pfeat, emb, z = make_inputs(n, p)

    def infer(t, finalize, noise=None, noised_mels=None):
        saved = torch.randn_like
        if noise is not None:
            torch.randn_like = lambda m: noise[..., :m.shape[2]].clone()
        try:
            # basic_euler prints a progress line; stdout carries the JSON.
            with torch.inference_mode(), contextlib.redirect_stdout(sys.stderr):
                mel, _ = flow.inference(token=t, token_len=torch.tensor([t.shape[1]]), prompt_token=ptok,
                                        prompt_token_len=torch.tensor([p]), prompt_feat=pfeat, prompt_feat_len=None,
                                        embedding=emb, finalize=finalize, n_timesteps=steps, noised_mels=noised_mels,
                                        meanflow=mf)
        finally:
            torch.randn_like = saved
        return mel

    infer(tok[:, :10], True, noise=z)  # warm-up
    t0 = time.perf_counter()
    whole = infer(tok, True, noise=z)
    whole_ms = 1000 * (time.perf_counter() - t0)

    # PR #528's rule (S3GenFlowStreamer with default options).
    torch.manual_seed(11)
    target = z[..., 2 * p:]
    calls, parts, emitted = [], [], 0
    t0 = time.perf_counter()
    first_ms = None
    ends = list(range(a.chunk, n, a.chunk)) + [n]
    for i, end in enumerate(ends + [None]):
        finalize = end is None
        end = n if finalize else end
        eff = end if finalize else end - 3
        if eff <= 0:
            continue
        tc = time.perf_counter()
        mel = infer(tok[:, :end], finalize, noised_mels=target[..., :2 * eff])
        fresh = mel[..., emitted:]
        emitted = max(emitted, mel.shape[2])
        ms = 1000 * (time.perf_counter() - tc)
        calls.append({"tokens": end, "finalize": finalize, "ms": ms, "frames": fresh.shape[2]})
        if fresh.shape[2] > 0:
            parts.append(fresh)
            if first_ms is None:
                first_ms = 1000 * (time.perf_counter() - t0)
    rule_ms = 1000 * (time.perf_counter() - t0)
    rule = torch.cat(parts, 2)
    rl, ma = rel_l2(rule, whole)
    rss = peak_rss_kb()

    sd = {"flow." + k: v for k, v in flow.state_dict().items()}
    write_safetensors(a.weights, sd)
    write_safetensors(a.inputs, {"token": tok, "gen.prompt_token": ptok, "gen.prompt_feat": pfeat, "gen.embedding": emb,
                                 "noise": z, "upstream.whole_mel": whole, "upstream.rule_mel": rule}, keep_int64=True)
    ms_sorted = sorted(c["ms"] for c in calls if c["frames"] > 0)
    emit({"model": "s3gen-flow-meanflow" if mf else "s3gen-flow", "tokens": n, "prompt_tokens": p, "steps": steps,
          "chunk_tokens": a.chunk, "threads": a.threads, "whole_ms": whole_ms, "rule_ms": rule_ms,
          "rule_cost_ratio": rule_ms / whole_ms, "rule_first_chunk_ms": first_ms,
          "rule_chunk_ms_median": ms_sorted[len(ms_sorted) // 2] if ms_sorted else None,
          "rule_chunk_ms_max": ms_sorted[-1] if ms_sorted else None, "rule_calls": calls,
          "rule_vs_whole": {"rel_l2": rl, "max_abs": ma}, "frames": whole.shape[2],
          "whole_mel_max_abs": float(whole.abs().max()), "tensors": len(sd), "upstream_commit": upstream_flow.COMMIT,
          "torch": torch.__version__, "peak_rss_kb": rss})


if __name__ == "__main__":
    main()
