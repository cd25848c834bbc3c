"""Upstream's voice front end timed on bench_voice's weights and reference:
S3TokenizerV2 (xingchensong/S3Tokenizer model_v2.py, as Chatterbox wraps it in
models/s3tokenizer/s3tokenizer.py), CAMPPlus (models/s3gen/xvector.py), the
VoiceEncoder (models/voice_encoder), S3Gen's mel (models/s3gen/utils/mel.py)
and torchaudio's Resample(24000, 16000) (embed_ref's). Runs on Debian's
python3-torch / python3-torchaudio (/usr/bin/python3); what Debian lacks is
shimmed for exactly the calls made here:
  librosa.filters.mel  - Slaney mel filterbank restated in numpy (htk=False, norm="slaney")
  librosa.stft         - numpy rfft of reflect-padded Hann frames (center=True)
  librosa.effects.trim - librosa's RMS rule (frame 2048, hop 512, top_db)
  einops.rearrange     - the two patterns the tokenizer uses
  onnx, tqdm           - import placeholders (never called)
The soxr resample (librosa.resample soxr_hq) is not timed here: python-soxr
is not in Debian, and ours calls the same libsoxr.
  usage: reference_voice.py --upstream DIR --s3tokenizer DIR --weights S3GEN --ve VE --ref REF --json OUT
         [--reps 3] [--threads 2]"""

import argparse
import importlib.util
import json
import os
import sys
import time
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_common import read_safetensors, set_threads, time_calls  # noqa: E402


def slaney_mel(sr, n_fft, n_mels=128, fmin=0.0, fmax=None, **_):
    fmax = sr / 2 if fmax is None else fmax

    def hz_to_mel(f):
        f = np.asanyarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        logstep = np.log(6.4) / 27.0
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep, lin)

    def mel_to_hz(m):
        m = np.asanyarray(m, dtype=np.float64)
        logstep = np.log(6.4) / 27.0
        return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), (200.0 / 3) * m)

    fftfreqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    weights = np.maximum(0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def librosa_stft(y, n_fft, hop_length, win_length=None, center=True, pad_mode="reflect", **_):
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    if center:
        y = np.pad(y, n_fft // 2, mode=pad_mode)
    n = 1 + (len(y) - n_fft) // hop_length
    frames = np.lib.stride_tricks.as_strided(y, (n, n_fft), (y.strides[0] * hop_length, y.strides[0]))
    return np.fft.rfft(frames * win, axis=1).T.astype(np.complex64)


def librosa_trim(y, top_db=60, frame_length=2048, hop_length=512, **_):
    yp = np.pad(y, frame_length // 2)
    n = 1 + (len(yp) - frame_length) // hop_length
    fr = np.lib.stride_tricks.as_strided(yp, (n, frame_length), (yp.strides[0] * hop_length, yp.strides[0]))
    rms = np.sqrt(np.mean(np.abs(fr) ** 2, axis=1))
    db = 20 * np.log10(np.maximum(1e-10, rms)) - 20 * np.log10(np.maximum(1e-10, rms.max()))
    nz = np.flatnonzero(db > -top_db)
    if nz.size == 0:
        return y[:0], (0, 0)
    start, end = nz[0] * hop_length, min(len(y), (nz[-1] + 1) * hop_length)
    return y[start:end], (start, end)


def rearrange(x, pattern):
    if pattern == "... d -> (...) d":
        return x.reshape(-1, x.shape[-1])
    if pattern == "b n d -> b d n":
        return x.transpose(1, 2)
    raise NotImplementedError(pattern)


def install_shims():
    librosa = types.ModuleType("librosa")
    librosa.filters = types.SimpleNamespace(mel=slaney_mel)
    librosa.stft = librosa_stft
    librosa.effects = types.SimpleNamespace(trim=librosa_trim)
    sys.modules["librosa"] = librosa
    filters = types.ModuleType("librosa.filters")
    filters.mel = slaney_mel
    sys.modules["librosa.filters"] = filters
    sys.modules["einops"] = types.SimpleNamespace(rearrange=rearrange)
    sys.modules["onnx"] = types.ModuleType("onnx")
    tqdm = types.ModuleType("tqdm")
    tqdm.tqdm = lambda *a, **k: None
    sys.modules["tqdm"] = tqdm


def load_file_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser()
    for k in ("upstream", "s3tokenizer", "weights", "ve", "ref", "json"):
        ap.add_argument("--" + k, required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    set_threads(a.threads)
    torch.set_grad_enabled(False)
    install_shims()
    sys.path.insert(0, a.s3tokenizer)
    src = os.path.join(a.upstream, "src")
    # The chatterbox packages without their __init__ (which imports the whole TTS).
    for pkg, sub in (("chatterbox", ""), ("chatterbox.models", "models"),
                     ("chatterbox.models.voice_encoder", "models/voice_encoder")):
        m = types.ModuleType(pkg)
        m.__path__ = [os.path.join(src, "chatterbox", sub)]
        sys.modules[pkg] = m
    s3t = load_file_module("chatterbox.models.s3tokenizer_s3tokenizer",
                           os.path.join(src, "chatterbox/models/s3tokenizer/s3tokenizer.py"))
    xvec = load_file_module("chatterbox.models.s3gen_xvector", os.path.join(src, "chatterbox/models/s3gen/xvector.py"))
    melmod = load_file_module("chatterbox.models.s3gen_mel", os.path.join(src, "chatterbox/models/s3gen/utils/mel.py"))
    import importlib
    ve_mod = importlib.import_module("chatterbox.models.voice_encoder.voice_encoder")
    import torchaudio

    w = read_safetensors(a.weights)
    tok = s3t.S3Tokenizer("speech_tokenizer_v2_25hz")
    missing, unexpected = tok.load_state_dict({k[len("tokenizer."):]: v for k, v in w.items()
                                               if k.startswith("tokenizer.")}, strict=False)
    assert not unexpected and set(missing) <= {"_mel_filters", "window"}, (missing, unexpected)
    tok.eval()
    camp = xvec.CAMPPlus(memory_efficient=False)
    camp.load_state_dict({k[len("speaker_encoder."):]: v for k, v in w.items() if k.startswith("speaker_encoder.")})
    camp.eval()
    ve = ve_mod.VoiceEncoder()
    ve.load_state_dict(read_safetensors(a.ve))
    ve.eval()

    ref = read_safetensors(a.ref)["wave_24k"].float()
    seconds = ref.numel() / 24000.0
    resampler = torchaudio.transforms.Resample(24000, 16000)
    ref16 = resampler(ref[None])[0]
    ref16_np = ref16.numpy().astype(np.float32)

    stages = {}

    def row(k, fn):
        t = time_calls(fn, a.reps, 1)
        stages[k] = {"median_ms": sorted(t)[len(t) // 2], "ms": t}
        print(f"  upstream {k}: {stages[k]['median_ms']:.1f} ms", file=sys.stderr)

    row("resample_sinc_24k_16k", lambda: torchaudio.transforms.Resample(24000, 16000)(ref[None]))
    row("tokenizer_10s", lambda: tok([ref16]))
    row("tokenizer_t3_prompt_6s", lambda: tok([ref16[:6 * 16000]], max_len=150))
    row("campplus", lambda: camp.inference(ref16[None]))
    row("voice_encoder", lambda: ve.embeds_from_wavs([ref16_np], sample_rate=16000))
    row("s3gen_mel", lambda: melmod.mel_spectrogram(ref[None]))
    tokens = tok([ref16])[0][0].tolist()
    res = {"threads": a.threads, "reps": a.reps, "reference_seconds": seconds, "torch": torch.__version__,
           "torchaudio": torchaudio.__version__, "stages": stages,
           "tokenizer_rtf": {"whole": {"median_ms": stages["tokenizer_10s"]["median_ms"],
                                       "rtf": stages["tokenizer_10s"]["median_ms"] / 1000.0 / seconds}},
           "tokens_10s": tokens}
    with open(a.json, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
