#!/usr/bin/env python3
"""Perth implicit watermark fixtures: upstream's own modules on seeded weights.

Runs resemble-ai/Perth (perth/perth_net/perth_net_implicit/*) as shipped, with
Debian's python3-torch 1.13 and python3-torchaudio 0.13, and writes

  tests/perth/perth_net_000300.pth.tar   the weights, saved by upstream's own
                                         CheckpointManager.save_model (a
                                         torch.save dict {"model", "step"}, the
                                         layout of perth_net_250000.pth.tar)
  tests/perth/perth_tiny.safetensors     the test tensors (test.*), float32
                                         upstream run and float64 restatement
  tests/perth/tolerances.json            float32-vs-float64 differences

Usage: /usr/bin/python3 tests/perth/make_fixtures.py PERTH_GIT_DIR [OUT_DIR]
  PERTH_GIT_DIR: a clone of github.com/resemble-ai/Perth (bare is fine).

What Debian lacks, restated here (and only that):
  * librosa is not packaged: `librosa.resample` is the one function Perth
    calls. res_type="soxr_hq" is python-soxr's call sequence on Debian's
    libsoxr through ctypes (soxr_create(in, out, 1, FLOAT32_I -> FLOAT32_I,
    soxr_quality_spec(SOXR_HQ, 0)), input in chunks of 3 s, one flush
    soxr_process(NULL, 0)); res_type="polyphase" is librosa's own code over
    scipy.signal.resample_poly (Debian's python3-scipy). Both then apply
    librosa's fix_length(ceil(n * target / orig)) and cast back to the input
    dtype, as librosa.resample does.
Nothing else is changed; the model runs with hidden_size reduced (see HIDDEN).
"""
import ctypes
import ctypes.util
import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch

HIDDEN = 32        # upstream hparams: 256 (37 MB of weights); every other hparam as shipped
SEED = 1234
TRAIN_STEPS = 800
CKPT_STEP = 800

# ---------------------------------------------------------------------------
# librosa.resample shim (see the module docstring)
_soxr = ctypes.CDLL(ctypes.util.find_library("soxr") or "libsoxr.so.0")


class _IoSpec(ctypes.Structure):
    _fields_ = [("itype", ctypes.c_int), ("otype", ctypes.c_int), ("scale", ctypes.c_double),
                ("e", ctypes.c_void_p), ("flags", ctypes.c_ulong)]


class _QSpec(ctypes.Structure):
    _fields_ = [("precision", ctypes.c_double), ("phase_response", ctypes.c_double),
                ("passband_end", ctypes.c_double), ("stopband_begin", ctypes.c_double),
                ("e", ctypes.c_void_p), ("flags", ctypes.c_ulong)]


_soxr.soxr_io_spec.restype = _IoSpec
_soxr.soxr_io_spec.argtypes = [ctypes.c_int, ctypes.c_int]
_soxr.soxr_quality_spec.restype = _QSpec
_soxr.soxr_quality_spec.argtypes = [ctypes.c_ulong, ctypes.c_ulong]
_soxr.soxr_create.restype = ctypes.c_void_p
_soxr.soxr_create.argtypes = [ctypes.c_double, ctypes.c_double, ctypes.c_uint, ctypes.POINTER(ctypes.c_char_p),
                              ctypes.POINTER(_IoSpec), ctypes.POINTER(_QSpec), ctypes.c_void_p]
_soxr.soxr_process.restype = ctypes.c_char_p
_soxr.soxr_process.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),
                               ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
_soxr.soxr_delete.argtypes = [ctypes.c_void_p]
SOXR_FLOAT32_I, SOXR_HQ = 0, 4


def soxr_hq(x, in_rate, out_rate):
    x = np.ascontiguousarray(x, dtype=np.float32)
    err = ctypes.c_char_p()
    io = _soxr.soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I)
    q = _soxr.soxr_quality_spec(SOXR_HQ, 0)
    s = _soxr.soxr_create(float(in_rate), float(out_rate), 1, ctypes.byref(err), ctypes.byref(io), ctypes.byref(q), None)
    assert s and not err.value, err.value
    ratio = out_rate / in_rate
    chunk = 3 * in_rate
    buf = np.zeros(int(math.ceil(chunk * ratio)) + 1024, np.float32)
    out = []
    pos = 0
    idone, odone = ctypes.c_size_t(), ctypes.c_size_t()
    while pos < len(x):
        n = min(chunk, len(x) - pos)
        e = _soxr.soxr_process(s, x[pos:].ctypes.data, n, ctypes.byref(idone), buf.ctypes.data, len(buf), ctypes.byref(odone))
        assert not e
        out.append(buf[:odone.value].copy())
        pos += idone.value
    while True:
        e = _soxr.soxr_process(s, None, 0, None, buf.ctypes.data, len(buf), ctypes.byref(odone))
        assert not e
        if odone.value == 0:
            break
        out.append(buf[:odone.value].copy())
    _soxr.soxr_delete(s)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _fix_length(y, size):
    return y[:size] if len(y) >= size else np.pad(y, (0, size - len(y)))


def librosa_resample(y, *, orig_sr, target_sr, res_type="soxr_hq", fix=True, scale=False, **_):
    import scipy.signal
    ratio = float(target_sr) / orig_sr
    n_samples = int(np.ceil(y.shape[-1] * ratio))
    if res_type == "polyphase":
        g = np.gcd(int(orig_sr), int(target_sr))
        y_hat = scipy.signal.resample_poly(y, int(target_sr) // g, int(orig_sr) // g, axis=-1)
    elif res_type == "soxr_hq":
        y_hat = soxr_hq(y, orig_sr, target_sr)
    else:
        raise NotImplementedError(res_type)
    if fix:
        y_hat = _fix_length(y_hat, n_samples)
    if scale:
        y_hat /= np.sqrt(ratio)
    return np.asarray(y_hat, dtype=y.dtype)


librosa = types.ModuleType("librosa")
librosa.resample = librosa_resample
sys.modules["librosa"] = librosa

# ---------------------------------------------------------------------------


def write_safetensors(path, tensors, meta):
    import struct
    names = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}
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


def espeak(text, voice, speed=150):
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", f.name, text], check=True)
        import wave
        with wave.open(f.name) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0, rate


def main():
    perth_git = sys.argv[1]
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    torch.set_num_threads(1)
    src = tempfile.mkdtemp(prefix="perth-src-")
    # the sources only (the mirror may lack the 250000-step weights' blob)
    files = subprocess.run(["git", "--git-dir", perth_git, "ls-tree", "-r", "--name-only", "HEAD", "perth"],
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if name.endswith((".py", ".yaml", ".txt")):
            os.makedirs(os.path.join(src, os.path.dirname(name)), exist_ok=True)
            with open(os.path.join(src, name), "wb") as f:
                f.write(subprocess.run(["git", "--git-dir", perth_git, "show", "HEAD:" + name],
                                       capture_output=True, check=True).stdout)
    commit = subprocess.run(["git", "--git-dir", perth_git, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    sys.path.insert(0, src)
    import yaml
    from perth.perth_net.perth_net_implicit.config import PerthConfig
    from perth.perth_net.perth_net_implicit.model.perth_net import PerthNet
    from perth.perth_net.perth_net_implicit.perth_watermarker import PerthImplicitWatermarker
    from perth.perth_net.perth_net_implicit.checkpoint_manager import CheckpointManager
    from perth.perth_net.perth_net_implicit.utils import cx_to_magphase

    with open(os.path.join(src, "perth/perth_net/pretrained/implicit/hparams.yaml")) as f:
        hp_dict = yaml.safe_load(f)
    hp_dict["hidden_size"] = HIDDEN
    hp = PerthConfig(**hp_dict)

    torch.manual_seed(SEED)
    net = PerthNet(hp)
    # seeded default init, then the encoder's last 1x1 conv scaled down so the
    # residual starts small, then a short training run (below) so that the
    # decoder separates marked from unmarked audio at all.
    with torch.no_grad():
        net.encoder.layers[-1].conv.weight.mul_(0.05)
        net.encoder.layers[-1].conv.bias.zero_()

    # --- training data: espeak-ng sentences (not the test sentence), at 32 kHz
    train_text = [
        ("The quick brown fox jumps over the lazy dog near the river bank.", "en-us"),
        ("Every morning she walked to the station and bought a newspaper.", "en-gb"),
        ("Numbers like four hundred and twelve are read aloud slowly.", "en-us+f3"),
        ("Watermarks should survive compression but remain inaudible.", "en-gb+m3"),
        ("A gentle breeze moved the curtains while the kettle boiled.", "en-us+f2"),
        ("Please call back tomorrow afternoon between two and four.", "en-us+m5"),
        ("Seven silver spoons lay on the polished wooden table.", "en-gb+f4"),
        ("He asked whether the museum would open early on Sunday.", "en-us+m2"),
        ("Bright lights flickered over the harbour as the ships came in.", "en-gb+m1"),
        ("Can you hear the difference between these two recordings?", "en-us+f1"),
        ("Thunder rolled across the valley long after the rain had stopped.", "en-us+m7"),
        ("Our train leaves at half past nine, so please be quick.", "en-gb+f2"),
    ]
    mags = []
    for text, voice in train_text:
        w, rate = espeak(text, voice)
        w32 = librosa_resample(w, orig_sr=rate, target_sr=hp.sample_rate)
        mag, _ = net.ap.signal_to_magphase(torch.from_numpy(w32))
        mags.append(mag)
    g = torch.Generator().manual_seed(SEED + 1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    seg = 160
    best = (float("inf"), None, -1)
    for step in range(TRAIN_STEPS):
        batch = []
        for _ in range(8):
            m = mags[int(torch.randint(len(mags), (1,), generator=g))]
            o = int(torch.randint(m.shape[1] - seg, (1,), generator=g))
            batch.append(m[:, o:o + seg])
        x = torch.stack(batch)
        # PerthNet.forward without attacks; the encoder's residual is taken
        # out of place here (upstream's in-place add breaks autograd in 1.13)
        from perth.perth_net.perth_net_implicit.model import magmask
        mask = magmask(x)[:, None]
        res = net.encoder.layers(x[:, :net.subband]) * mask
        wmarked = torch.cat([x[:, :net.subband] + res, x[:, net.subband:]], dim=1)
        no_pred, wm_pred = net.decoder(x), net.decoder(wmarked)
        loss = ((wm_pred - 1) ** 2).mean() + (no_pred ** 2).mean() + 30.0 * (res ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        # keep the best of the last steps (the run is short and noisy)
        ema = loss.item() if step == 0 else 0.9 * ema + 0.1 * loss.item()
        if step >= TRAIN_STEPS // 2 and ema < best[0]:
            best = (ema, copy.deepcopy(net.state_dict()), step)
        if step % 50 == 0 or step == TRAIN_STEPS - 1:
            print(f"step {step}: loss {loss.item():.4f} wm {wm_pred.mean().item():.3f} "
                  f"no {no_pred.mean().item():.3f} res_rms {res.pow(2).mean().sqrt().item():.4f}")
    print(f"keeping step {best[2]} (smoothed loss {best[0]:.4f})")
    net.load_state_dict(best[1])
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)

    # --- the weights, saved by upstream's CheckpointManager
    ckdir = tempfile.mkdtemp(prefix="perth-ckpt-")
    cm = CheckpointManager(ckdir, "implicit", dataset_hp=hp)
    cm.save_model(net, CKPT_STEP)
    ck_name = f"perth_net_{CKPT_STEP:06d}.pth.tar"
    os.replace(os.path.join(ckdir, "implicit", ck_name), os.path.join(out_dir, ck_name))
    # and reload it the way upstream does (PerthNet.load -> from_cm -> load_latest)
    os.makedirs(os.path.join(ckdir, "implicit2"))
    import shutil
    shutil.copy(os.path.join(out_dir, ck_name), os.path.join(ckdir, "implicit2", ck_name))
    shutil.copy(os.path.join(ckdir, "implicit", "hparams.yaml"), os.path.join(ckdir, "implicit2", "hparams.yaml"))
    wm = PerthImplicitWatermarker(run_name="implicit2", models_dir=ckdir)
    assert wm.perth_net.hp == hp
    net = wm.perth_net

    # --- the test clip: a held-out sentence, 24 kHz, with digital silence at both ends
    w, rate = espeak("Perth marks every word, quietly.", "en-us+f4", 160)
    wave = librosa_resample(w, orig_sr=rate, target_sr=24000)
    wave = np.concatenate([np.zeros(4800, np.float32), wave, np.zeros(3601, np.float32)])
    wave = (wave * (0.7 / np.abs(wave).max())).astype(np.float32)
    sr = 24000

    with torch.no_grad():
        # upstream end to end (float32)
        marked = wm.apply_watermark(wave, sample_rate=sr)
        conf_marked = float(wm.get_watermark(marked, sample_rate=sr, round=False))
        conf_unmarked = float(wm.get_watermark(wave, sample_rate=sr, round=False))
        print(f"upstream: in {len(wave)} out {len(marked)}; confidence marked {conf_marked:.6f} "
              f"unmarked {conf_unmarked:.6f}")

        # the same steps one by one (asserted bit-equal to apply_watermark)
        def embed_steps(model, w32, dtype):
            sig = torch.from_numpy(w32).to(dtype)
            spec = model.ap.spectrogram(sig)
            mag, phase = cx_to_magphase(hp, spec)
            wmag, mask = model.encoder(mag[None])
            wsig = model.ap.magphase_to_signal(wmag[0], phase)
            return mag, mask[0, 0], (wmag[0] - mag)[:net.subband], wsig

        wave32 = librosa_resample(wave, orig_sr=sr, target_sr=hp.sample_rate)
        mag, mask, res, wsig = embed_steps(net, wave32, torch.float32)
        marked_steps = librosa_resample(wsig.numpy(), orig_sr=hp.sample_rate, target_sr=sr)
        assert np.array_equal(marked_steps, marked), "step-wise embed differs from apply_watermark"

        def detect_steps(model, w_sr, dtype):
            w32 = librosa_resample(w_sr, orig_sr=sr, target_sr=hp.sample_rate, res_type="polyphase")
            m, _ = cx_to_magphase(hp, model.ap.spectrogram(torch.from_numpy(w32).to(dtype)))
            return w32, float(model.decoder(m[None])[0].clip(0.0, 1.0))

        poly_marked, c = detect_steps(net, marked, torch.float32)
        assert c == conf_marked
        poly_unmarked, c = detect_steps(net, wave, torch.float32)
        assert c == conf_unmarked
        # detection at 32 kHz, no resampler: the mark's own effect
        def conf32(model, w32, dtype):
            m, _ = cx_to_magphase(hp, model.ap.spectrogram(torch.from_numpy(w32).to(dtype)))
            return float(model.decoder(m[None])[0])
        conf32_marked = conf32(net, wsig.numpy(), torch.float32)
        conf32_unmarked = conf32(net, wave32, torch.float32)

        # float64 restatement of every model step (the resamplers are libsoxr's
        # single-precision engine and scipy's float32 polyphase in both runs)
        net64 = copy.deepcopy(net).double()
        mag64, mask64, res64, wsig64 = embed_steps(net64, wave32, torch.float64)
        marked64 = librosa_resample(wsig64.float().numpy(), orig_sr=hp.sample_rate, target_sr=sr)
        _, conf_marked64 = detect_steps(net64, marked, torch.float64)
        _, conf_unmarked64 = detect_steps(net64, wave, torch.float64)
        conf32_marked64 = conf32(net64, wsig.numpy(), torch.float64)
        conf32_unmarked64 = conf32(net64, wave32, torch.float64)

    frame_sum = mag.sum(0)
    thresh = frame_sum.max() * 0.05
    margin = float((frame_sum - thresh).abs().min() / thresh)
    assert torch.equal(mask, mask64.float()), "mask differs between float32 and float64"
    n = len(marked)
    tol = {
        "mag": float((mag.double() - mag64).abs().max()),
        "residual": float((res.double() - res64).abs().max()),
        "wm_32k": float((wsig.double() - wsig64).abs().max()),
        "marked_24k": float(np.abs(marked.astype(np.float64) - marked64.astype(np.float64)).max()),
        "conf_marked": abs(conf_marked - conf_marked64),
        "conf_unmarked": abs(conf_unmarked - conf_unmarked64),
        "conf32_marked": abs(conf32_marked - conf32_marked64),
        "conf32_unmarked": abs(conf32_unmarked - conf32_unmarked64),
        "mask_threshold_margin_rel": margin,
    }
    mark = marked[:n] - wave[:n]
    stats = {
        "n_in": len(wave), "n_32k": len(wave32), "n_wm_32k": int(wsig.shape[0]), "n_out": n,
        "frames": int(mag.shape[1]), "masked_frames": int(mask.sum()),
        "residual_rms": float(res.pow(2).mean().sqrt()), "residual_max": float(res.abs().max()),
        "snr_db": float(10 * np.log10(np.sum(wave[:n] ** 2) / np.sum(mark ** 2))),
        "conf_marked": conf_marked, "conf_unmarked": conf_unmarked,
        "conf32_marked": conf32_marked, "conf32_unmarked": conf32_unmarked,
    }
    print(json.dumps(stats, indent=1))
    print(json.dumps(tol, indent=1))

    t = lambda a: torch.as_tensor(np.ascontiguousarray(a)).float().contiguous()
    tensors = {
        "test.wave_24k": t(wave),
        "test.wave_32k": t(wave32),
        "test.mag_subband": t(mag[:net.subband]),
        "test.frame_sum": t(frame_sum),
        "test.mask": t(mask),
        "test.residual": t(res),
        "test.wm_32k": t(wsig),
        "test.marked_24k": t(marked),
        "test.poly_marked_32k": t(poly_marked),
        "test.conf_marked": torch.tensor([conf_marked], dtype=torch.float64),
        "test.conf_unmarked": torch.tensor([conf_unmarked], dtype=torch.float64),
        "test.conf32_marked": torch.tensor([conf32_marked], dtype=torch.float64),
        "test.conf32_unmarked": torch.tensor([conf32_unmarked], dtype=torch.float64),
        "test.conf_marked_f64": torch.tensor([conf_marked64], dtype=torch.float64),
        "test.conf_unmarked_f64": torch.tensor([conf_unmarked64], dtype=torch.float64),
    }
    meta = {"upstream_commit": commit, "seed": str(SEED), "hparams": json.dumps(hp._asdict()),
            "train_steps": str(TRAIN_STEPS), "stats": json.dumps(stats), "tolerances_f32_vs_f64": json.dumps(tol)}
    write_safetensors(os.path.join(out_dir, "perth_tiny.safetensors"), tensors, meta)
    with open(os.path.join(out_dir, "tolerances.json"), "w") as f:
        json.dump({"stats": stats, "f32_vs_f64": tol, "upstream_commit": commit}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
