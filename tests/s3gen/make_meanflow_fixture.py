#!/usr/bin/python3
"""Makes tests/s3gen/flow_tiny_meanflow.safetensors: the Chatterbox-Turbo
(mean-flow) S3Gen flow run by the reference Python code on the tiny flow
fixture's weights plus a seeded `time_embed_mixer`.

    /usr/bin/python3 tests/s3gen/make_meanflow_fixture.py \
        --chatterbox-git /path/to/resemble-ai/chatterbox/.git \
        --flow-tiny ../shared/fixtures/s3gen/flow_tiny.safetensors \
        --out tests/s3gen/flow_tiny_meanflow.safetensors

Runs the reference at commit 5de7a54 (`git show` of flow.py, flow_matching.py,
decoder.py, transformer/*, matcha/*, utils/*) on CPU in float32 (and once in
float64 to measure float32's own error). Packages Debian's python3-torch 1.13
setup lacks are restated exactly as for the flow_tiny fixture (its metadata
"shims"), in upstream_flow.py (shared with bench/reference_flow_stream.py).
Nothing of the reference itself is changed.
"""
import argparse
import json
import os
import struct
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from upstream_flow import COMMIT, MIXER, build_flow, extract_reference, install_shims  # noqa: E402

# ----------------------------------------------------------- safetensors --

DT = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    meta = head.pop("__metadata__", {})
    out = {}
    for k, v in head.items():
        a, b = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype=DT[v["dtype"]]).reshape(v["shape"]).copy())
    return out, meta


def write_safetensors(path, tensors, meta):
    names = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    head, blobs, off = {"__metadata__": meta}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k].detach().numpy())
        head[k] = {"dtype": names[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(head, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def run(flow, t, steps, noise_target, dtype, record=None):
    """flow.inference(meanflow=True) with the target noise given, as
    S3Token2Wav.flow_inference passes it; z (prompt part drawn by the
    reference's randn_like) and every estimator call are recorded."""
    est = flow.decoder.estimator
    calls = []
    orig = est.forward

    def spy(x, mask, mu, t, spks=None, cond=None, r=None):
        out = orig(x, mask, mu, t, spks=spks, cond=cond, r=r)
        calls.append({k: v.clone() for k, v in dict(x=x, mask=mask, mu=mu, t=t, spks=spks, cond=cond, r=r,
                                                      out=out).items()})
        return out

    est.forward = spy
    try:
        torch.manual_seed(77)
        with torch.inference_mode():
            feat, _ = flow.inference(token=t["test.token"], token_len=t["test.token_len"],
                                     prompt_token=t["test.prompt_token"], prompt_token_len=t["test.prompt_token_len"],
                                     prompt_feat=t["test.prompt_feat"].to(dtype), prompt_feat_len=None,
                                     embedding=t["test.embedding"].to(dtype), finalize=True, n_timesteps=steps,
                                     noised_mels=noise_target.to(dtype), meanflow=True)
    finally:
        est.forward = orig
    return feat, calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chatterbox-git", required=True)
    ap.add_argument("--flow-tiny", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    install_shims()
    src = tempfile.mkdtemp(prefix="chatterbox_ref_")
    extract_reference(a.chatterbox_git, src)
    sys.path.insert(0, src)

    tiny, meta = read_safetensors(a.flow_tiny)
    cfg = json.loads(meta["config"])
    cfg["estimator"]["meanflow"] = True
    cfg["inference"]["meanflow"] = True
    cfg["inference"]["n_timesteps"] = 2
    weights = {k: v for k, v in tiny.items() if not k.startswith("test.")}
    # A trained mixer stays near its diagonal init ([I, 0], intmeanflow.py);
    # seeded deviations of the same order make both halves (t and r) matter.
    D = cfg["estimator"]["channels"][0] * 4
    g = torch.Generator().manual_seed(2025)
    mixer = torch.cat([torch.eye(D) + 0.5 * torch.randn(D, D, generator=g) / D ** 0.5,
                       0.5 * torch.randn(D, D, generator=g) / D ** 0.5], dim=1)
    weights[MIXER] = mixer

    # The shims reproduce flow_tiny's standard-mode output from its noise to
    # float32 rounding (3.5e-6; the float64 run gives flow_tiny's recorded
    # f32-vs-f64 difference, 7.5e-6, so the math is the same).
    std = build_flow(cfg, meanflow=False)
    std.load_state_dict({k: v for k, v in weights.items() if k != MIXER}, strict=True)
    saved = torch.randn_like
    torch.randn_like = lambda m: tiny["test.noise"].clone()
    try:
        with torch.inference_mode():
            feat, _ = std.inference(token=tiny["test.token"], token_len=tiny["test.token_len"],
                                    prompt_token=tiny["test.prompt_token"], prompt_token_len=tiny["test.prompt_token_len"],
                                    prompt_feat=tiny["test.prompt_feat"], prompt_feat_len=None,
                                    embedding=tiny["test.embedding"], finalize=True, n_timesteps=10)
    finally:
        torch.randn_like = saved
    shim_check = float((feat - tiny["test.output_mel"]).abs().max())
    assert shim_check < 2e-5, shim_check

    flow = build_flow(cfg)
    missing = set(flow.state_dict()) ^ set(weights)
    assert not missing, missing
    flow.load_state_dict(weights, strict=True)
    flow64 = build_flow(cfg).double()
    flow64.load_state_dict({k: v.double() for k, v in weights.items()}, strict=True)

    n_target = tiny["test.token"].shape[1] * 2
    # S3Token2Wav.flow_inference draws this noise for meanflow models.
    noise_target = torch.randn(1, 80, n_target, generator=torch.Generator().manual_seed(99))
    out = {MIXER: mixer}
    stats = {"standard_mode_vs_flow_tiny_output_mel_max_abs": shim_check}
    for steps in (1, 2, 4):
        feat, calls = run(flow, tiny, steps, noise_target, torch.float32)
        assert len(calls) == steps
        p = "test.mf%d." % steps
        z = calls[0]["x"]
        # The prompt part is redrawn after the same seed: one z for all runs.
        if "test.mf.noise" in out:
            assert torch.equal(out["test.mf.noise"], z)
        out["test.mf.noise"] = z
        # The encoder is unchanged by meanflow: mu is flow_tiny's (to float32
        # rounding, as above).
        assert float((calls[0]["mu"] - tiny["test.mu"]).abs().max()) < 1e-5
        out[p + "output_mel"] = feat
        stats["mf%d_output_mel_max_abs" % steps] = float(feat.abs().max())
        if steps == 2:
            for i, c in enumerate(calls):
                for k in ("x", "t", "r", "out"):
                    out[p + "est%d.%s" % (i, k)] = c[k]
            # Shared by both calls (cond is flow_tiny's test.cond, mask ones).
            out[p + "est.mu"], out[p + "est.spks"] = calls[0]["mu"], calls[0]["spks"]
            assert torch.equal(calls[0]["cond"], tiny["test.cond"]) and bool((calls[0]["mask"] == 1).all())
        # float64 from the very same z (randn_like patched to return it), so
        # the difference is float32 arithmetic only.
        # decoder.mask_to_bias asserts a float32/16 dtype; the audit run uses
        # its same formula in float64.
        import chatterbox.models.s3gen.decoder as dm
        saved = torch.randn_like, dm.mask_to_bias
        torch.randn_like = lambda m, z=z: z.to(m.dtype).clone()
        dm.mask_to_bias = lambda m, dtype: (1.0 - m.to(dtype)) * -1.0e10
        try:
            feat64, _ = run(flow64, tiny, steps, noise_target, torch.float64)
        finally:
            torch.randn_like, dm.mask_to_bias = saved
        stats["mf%d_f32_vs_f64_max_abs" % steps] = float((feat.double() - feat64).abs().max())
    md = {
        "format": "pt", "fixture": "flow_tiny_meanflow", "upstream_commit": COMMIT,
        "config": json.dumps(cfg, sort_keys=True),
        "weights": "flow_tiny.safetensors (shared fixtures) + " + MIXER + " [D, 2D], D = 4 * channels[0] = %d: "
                   "[I + 0.5 N/sqrt(D), 0.5 N/sqrt(D)], torch.Generator seed 2025" % D,
        "call": "flow.inference(token, token_len, prompt_token, prompt_token_len, prompt_feat, None, embedding, "
                "finalize=True, n_timesteps=S, noised_mels=target noise, meanflow=True)",
        "noise": "test.mf.noise = z, the x of the first estimator call (prompt part from the reference's "
                 "randn_like after torch.manual_seed(77), target part = randn(1, 80, 60) seed 99 as noised_mels)",
        "generator": "tests/s3gen/make_meanflow_fixture.py",
        "torch": torch.__version__, "stats": json.dumps(stats, sort_keys=True),
    }
    write_safetensors(a.out, out, md)
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
