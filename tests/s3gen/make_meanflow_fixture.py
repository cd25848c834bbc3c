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
"shims"): einops pack/rearrange/repeat for the patterns used, diffusers 0.29
Attention (AttnProcessor2_0 math written out), GELU, LoRACompatibleLinear,
get_activation('silu'), plus omegaconf.DictConfig (a dict) and tqdm (a
pass-through). Nothing of the reference itself is changed.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

COMMIT = "5de7a54aa4e5e2baadb0182dde554908b48b85c2"
MIXER = "decoder.estimator.time_embed_mixer.weight"

# ------------------------------------------------------------------ shims --


def install_shims():
    def mod(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    def pack(ts, pattern):
        assert pattern == "b * t", pattern
        return torch.cat(ts, dim=1), [t.shape[1:-1] for t in ts]

    def rearrange(x, pattern):
        if pattern in ("b c t -> b t c", "b t c -> b c t"):
            return x.permute(0, 2, 1)
        if pattern == "b 1 t -> b t":
            return x.squeeze(1)
        if pattern == "b t -> b 1 t":
            return x.unsqueeze(1)
        raise NotImplementedError(pattern)

    def repeat(x, pattern, t):
        assert pattern == "b c -> b c t", pattern
        return x.unsqueeze(-1).expand(x.shape[0], x.shape[1], t)

    mod("einops", pack=pack, rearrange=rearrange, repeat=repeat)

    def placeholder(name):
        def init(self, *a, **k):
            raise NotImplementedError(name + " is not used by Chatterbox's configuration")
        return type(name, (nn.Module,), {"__init__": init})

    class GELU(nn.Module):
        def __init__(self, dim_in, dim_out, approximate="none", bias=True):
            super().__init__()
            self.proj = nn.Linear(dim_in, dim_out, bias=bias)
            self.approximate = approximate

        def forward(self, x):
            return F.gelu(self.proj(x), approximate=self.approximate)

    class Attention(nn.Module):
        # diffusers 0.29 Attention + AttnProcessor2_0 for self-attention.
        def __init__(self, query_dim, heads=8, dim_head=64, dropout=0.0, bias=False, cross_attention_dim=None,
                     upcast_attention=False, out_bias=True):
            super().__init__()
            assert cross_attention_dim is None
            inner = heads * dim_head
            self.heads, self.dim_head = heads, dim_head
            self.to_q = nn.Linear(query_dim, inner, bias=bias)
            self.to_k = nn.Linear(query_dim, inner, bias=bias)
            self.to_v = nn.Linear(query_dim, inner, bias=bias)
            self.to_out = nn.ModuleList([nn.Linear(inner, query_dim, bias=out_bias), nn.Dropout(dropout)])

        def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, **kw):
            assert encoder_hidden_states is None
            B, T, _ = hidden_states.shape
            h = self.heads
            q, k, v = (f(hidden_states).view(B, T, h, self.dim_head).transpose(1, 2)
                       for f in (self.to_q, self.to_k, self.to_v))
            s = q @ k.transpose(-1, -2) / (self.dim_head ** 0.5)
            if attention_mask is not None:  # [B, 1, T] -> every head, every query
                s = s + attention_mask.repeat_interleave(h, dim=0).view(B, h, -1, attention_mask.shape[-1])
            o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, h * self.dim_head)
            return self.to_out[1](self.to_out[0](o))

    def get_activation(name):
        assert name == "silu", name
        return nn.SiLU()

    mod("diffusers")
    mod("diffusers.models")
    mod("diffusers.models.attention", GELU=GELU, GEGLU=placeholder("GEGLU"), AdaLayerNorm=placeholder("AdaLayerNorm"),
        AdaLayerNormZero=placeholder("AdaLayerNormZero"), ApproximateGELU=placeholder("ApproximateGELU"))
    mod("diffusers.models.attention_processor", Attention=Attention)
    mod("diffusers.models.lora", LoRACompatibleLinear=nn.Linear)
    mod("diffusers.models.activations", get_activation=get_activation)
    mod("diffusers.utils")
    mod("diffusers.utils.torch_utils", maybe_allow_in_graph=lambda c: c)
    mod("conformer", ConformerBlock=placeholder("ConformerBlock"))
    mod("omegaconf", DictConfig=dict)
    mod("tqdm", tqdm=lambda it, total=None: it)


def extract_reference(git_dir, dst):
    """The s3gen package at COMMIT, without its __init__ (which would import
    the tokenizer, HiFT and torchaudio the flow does not need)."""
    files = subprocess.run(["git", "--git-dir", git_dir, "ls-tree", "-r", "--name-only", COMMIT,
                            "src/chatterbox/models/s3gen"], check=True, capture_output=True, text=True).stdout.split()
    files.append("src/chatterbox/models/utils.py")
    for f in files:
        if not f.endswith(".py"):
            continue
        out = os.path.join(dst, f[len("src/"):])
        os.makedirs(os.path.dirname(out), exist_ok=True)
        body = subprocess.run(["git", "--git-dir", git_dir, "show", COMMIT + ":" + f], check=True,
                              capture_output=True).stdout
        with open(out, "wb") as fh:
            fh.write(b"" if f.endswith("s3gen/__init__.py") else body)
    for pkg in ("chatterbox", "chatterbox/models"):
        open(os.path.join(dst, pkg, "__init__.py"), "w").close()


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


# ------------------------------------------------------------------ build --


def build_flow(cfg, meanflow=True):
    from chatterbox.models.s3gen.configs import CFM_PARAMS
    from chatterbox.models.s3gen.decoder import ConditionalDecoder
    from chatterbox.models.s3gen.flow import CausalMaskedDiffWithXvec
    from chatterbox.models.s3gen.flow_matching import CausalConditionalCFM
    from chatterbox.models.s3gen.transformer import upsample_encoder as ue

    e, h, d, fl = cfg["encoder"], cfg["encoder_hardcoded"], cfg["estimator"], cfg["flow"]
    enc = ue.UpsampleConformerEncoder(**{k: e[k] for k in (
        "output_size", "attention_heads", "linear_units", "num_blocks", "dropout_rate", "positional_dropout_rate",
        "attention_dropout_rate", "input_layer", "pos_enc_layer_type", "selfattention_layer_type", "input_size",
        "use_cnn_module", "macaron_style", "normalize_before")})
    # The constructor hard-codes 512 channels here; the tiny model uses the
    # same classes at its own width (as flow_tiny does).
    enc.pre_lookahead_layer = ue.PreLookaheadLayer(**h["pre_lookahead_layer"])
    enc.up_layer = ue.Upsample1D(**h["up_layer"])
    est = ConditionalDecoder(in_channels=d["in_channels"], out_channels=d["out_channels"], causal=True,
                             channels=d["channels"], dropout=0.0, attention_head_dim=d["attention_head_dim"],
                             n_blocks=d["n_blocks"], num_mid_blocks=d["num_mid_blocks"], num_heads=d["num_heads"],
                             act_fn=d["act_fn"], meanflow=meanflow)
    dec = CausalConditionalCFM(spk_emb_dim=80, cfm_params=CFM_PARAMS, estimator=est)
    return CausalMaskedDiffWithXvec(input_size=fl["input_size"], output_size=fl["output_size"],
                                    spk_embed_dim=fl["spk_embed_dim"], vocab_size=fl["vocab_size"],
                                    token_mel_ratio=fl["token_mel_ratio"], pre_lookahead_len=fl["pre_lookahead_len"],
                                    encoder=enc, decoder=dec).eval()


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
