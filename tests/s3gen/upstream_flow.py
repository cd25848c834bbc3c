"""Upstream Chatterbox's S3Gen flow code (resemble-ai/chatterbox 5de7a54) made
importable under Debian's python3-torch 1.13: the shims for what Debian lacks,
the extraction of the s3gen package from the git mirror, and the flow builders.
Shared by make_meanflow_fixture.py (the tiny fixture) and
bench/reference_flow_stream.py (full size, timed).

Shims, restated exactly for the patterns the flow uses: einops
pack/rearrange/repeat, diffusers 0.29 Attention (AttnProcessor2_0 math written
out), GELU, LoRACompatibleLinear, get_activation('silu'), plus
omegaconf.DictConfig (a dict) and tqdm (a pass-through). Nothing of the
reference itself is changed.
"""
import os
import subprocess
import sys
import types

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


def build_s3gen_flow(meanflow=False):
    """The flow exactly as upstream's S3Token2Mel.__init__ (s3gen.py) builds
    it: published widths, the constructors' own pre-lookahead and upsampling
    layers, torch's default initialisation (seed it before calling)."""
    from chatterbox.models.s3gen.configs import CFM_PARAMS
    from chatterbox.models.s3gen.decoder import ConditionalDecoder
    from chatterbox.models.s3gen.flow import CausalMaskedDiffWithXvec
    from chatterbox.models.s3gen.flow_matching import CausalConditionalCFM
    from chatterbox.models.s3gen.transformer.upsample_encoder import UpsampleConformerEncoder

    encoder = UpsampleConformerEncoder(output_size=512, attention_heads=8, linear_units=2048, num_blocks=6,
                                       dropout_rate=0.1, positional_dropout_rate=0.1, attention_dropout_rate=0.1,
                                       normalize_before=True, input_layer='linear', pos_enc_layer_type='rel_pos_espnet',
                                       selfattention_layer_type='rel_selfattn', input_size=512, use_cnn_module=False,
                                       macaron_style=False)
    estimator = ConditionalDecoder(in_channels=320, out_channels=80, causal=True, channels=[256], dropout=0.0,
                                   attention_head_dim=64, n_blocks=4, num_mid_blocks=12, num_heads=8, act_fn='gelu',
                                   meanflow=meanflow)
    decoder = CausalConditionalCFM(spk_emb_dim=80, cfm_params=CFM_PARAMS, estimator=estimator)
    return CausalMaskedDiffWithXvec(encoder=encoder, decoder=decoder).eval()


# Chatterbox PR #528 (the streaming PR, refs/pull/528/head in the mirror):
# its flow.py is 5de7a54's plus the finalize=False mask fix (h_masks trimmed
# with h); without it 5de7a54 cannot decode with finalize=False at all (the
# mask keeps the look-ahead frames and the estimator's shapes disagree).
PR528 = "ce5a900dbdbc776eeb3d00c1c1607143c7604a5b"
FLOW_PY = "src/chatterbox/models/s3gen/flow.py"


def setup(git_dir, flow_py_commit=None):
    """Shims installed, the reference extracted to a temporary folder and put
    first on sys.path; returns that folder. flow_py_commit: flow.py from that
    commit instead (PR528 for the streaming rule)."""
    import tempfile
    install_shims()
    src = tempfile.mkdtemp(prefix="chatterbox_ref_")
    extract_reference(git_dir, src)
    if flow_py_commit:
        body = subprocess.run(["git", "--git-dir", git_dir, "show", flow_py_commit + ":" + FLOW_PY], check=True,
                              capture_output=True).stdout
        with open(os.path.join(src, FLOW_PY[len("src/"):]), "wb") as fh:
            fh.write(body)
    sys.path.insert(0, src)
    return src
