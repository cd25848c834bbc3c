#!/usr/bin/python3
"""Tables, JSON and spectrogram images of the vocoder quality report.

bench/quality/report.sh runs the tools and calls this with its work folder:
manifest.tsv (id, set, voice, sentence), metrics/<id>.<system>.json
(chatterbox-quality --json), asr/<id>.<system>.txt (pocketsphinx) and
corpus/heldout/<id>.wav, <system>/<id>.wav. Writes report.md, report.json and
spectrograms-<id>.png into the results folder. Debian's python3 (numpy,
matplotlib) only.
"""
import argparse
import json
import math
import os
import re
import sys

import numpy as np

NAMES = {"original": "original", "vocos": "Vocos (default model)", "griffinlim": "Griffin-Lim, 32 it.",
         "hift": "HiFT"}
# (key in chatterbox-quality's JSON, label, higher is better)
METRICS = [
    ("stoi", "STOI", True),
    ("log_mel_l1", "log-mel L1 (S3Gen)", False),
    ("mcd_db", "MCD (dB)", False),
    ("mr_stft", "MR-STFT distance", False),
    ("spectral_similarity", "spectral similarity", True),
    ("snr_db", "SNR (dB)", True),
    ("si_snr_db", "SI-SNR (dB)", True),
]
SETS = [("heldout-voice", "held-out voice (flite awb), held-out sentences"),
        ("heldout-sentences", "training voices, held-out sentences"),
        ("all", "all files")]
# Issue #10's bar for the default model.
BAR = {"stoi_min": 0.85, "log_mel_l1_max": 0.5, "wer_delta_max": 0.15}


def words(text):
    """Lower case, letters/digits/apostrophes only: 'Hello, world!' -> ['hello', 'world']."""
    return re.sub(r"[^a-z0-9']+", " ", text.lower()).split()


def edit_distance(ref, hyp):
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)]


def metric_value(m, key):
    v = m[key]["total"] if key == "mr_stft" else m[key]
    if v == "inf":
        return math.inf
    return None if v is None else float(v)


def spread(values):
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return None
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(len(v))}


def read_wav(path):
    """16-bit PCM or float32 (wavenc's F32LE); the wave module refuses float, so by hand."""
    with open(path, "rb") as f:
        d = f.read()
    pos, fmt_tag, bits, rate, data = 12, None, None, None, None
    while pos + 8 <= len(d):
        cid, size = d[pos:pos + 4], int.from_bytes(d[pos + 4:pos + 8], "little")
        body = d[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt_tag = int.from_bytes(body[0:2], "little")
            rate = int.from_bytes(body[4:8], "little")
            bits = int.from_bytes(body[14:16], "little")
        elif cid == b"data":
            data = body
        pos += 8 + size + (size & 1)
    if fmt_tag == 3 and bits == 32:
        return np.frombuffer(data, dtype="<f4").astype(np.float64), rate
    if fmt_tag == 1 and bits == 16:
        return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0, rate
    raise ValueError(f"{path}: format {fmt_tag}/{bits} bits not handled")


def log_spectrogram(x, rate, n_fft=1024, hop=256):
    win = np.hanning(n_fft + 1)[:-1]
    x = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * win
    mag = np.abs(np.fft.rfft(frames, axis=-1)).T
    return 20 * np.log10(np.maximum(mag, 1e-5)), rate / 2


def spectrogram_image(path, item, systems, work, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("original", os.path.join(work, "corpus", "heldout", item["id"] + ".wav"))]
    panels += [(s, os.path.join(work, s, item["id"] + ".wav")) for s in systems]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), sharey=True)
    for ax, (name, wav) in zip(axes, panels):
        x, rate = read_wav(wav)
        s, nyq = log_spectrogram(x, rate)
        im = ax.imshow(s, origin="lower", aspect="auto", vmin=-80, vmax=s.max(), cmap="magma",
                       extent=[0, len(x) / rate, 0, nyq / 1000])
        title = NAMES[name]
        if name != "original":
            m = item["metrics"][name]
            title += f"\nSTOI {m['stoi']:.3f}, log-mel L1 {m['log_mel_l1']:.3f}"
        else:
            title += "\n" + item["voice"]
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("s")
        ax.axhline(8, color="w", lw=0.5, ls=":")  # S3Gen mels stop at 8 kHz
    axes[0].set_ylabel("kHz")
    fig.colorbar(im, ax=axes, label="dB", shrink=0.8)
    fig.suptitle(f"\"{item['sentence']}\"", fontsize=9)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def fmt_spread(s, digits):
    if s is None:
        return "n/a"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--systems", required=True)
    ap.add_argument("--machine", default="")
    ap.add_argument("--load-start", default="")
    ap.add_argument("--load-end", default="")
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--hift", default="")
    a = ap.parse_args()
    systems = a.systems.split()
    os.makedirs(a.results, exist_ok=True)

    items = []
    with open(os.path.join(a.work, "manifest.tsv")) as f:
        for line in f:
            fid, set_name, voice, sentence = line.rstrip("\n").split("\t")
            it = {"id": fid, "set": set_name, "voice": voice, "sentence": sentence, "metrics": {}, "asr": {}}
            ref_words = words(sentence)
            for s in ["original"] + systems:
                with open(os.path.join(a.work, "asr", f"{fid}.{s}.txt")) as h:
                    hyp = h.read().strip()
                e = edit_distance(ref_words, words(hyp))
                it["asr"][s] = {"hypothesis": hyp, "errors": e, "words": len(ref_words),
                                "wer": e / len(ref_words)}
            for s in systems:
                with open(os.path.join(a.work, "metrics", f"{fid}.{s}.json")) as h:
                    it["metrics"][s] = json.load(h)
            with open(os.path.join(a.work, "metrics", f"{fid}.time.json")) as h:
                it["seconds"] = json.load(h)
            items.append(it)

    summary = {}
    for set_key, _ in SETS:
        sel = [it for it in items if set_key == "all" or it["set"] == set_key]
        if not sel:
            continue
        agg = {"files": len(sel), "words": sum(it["asr"]["original"]["words"] for it in sel), "systems": {}}
        for s in ["original"] + systems:
            errors = sum(it["asr"][s]["errors"] for it in sel)
            entry = {"wer": errors / agg["words"], "wer_per_file": spread([it["asr"][s]["wer"] for it in sel])}
            if s != "original":
                for key, _, _ in METRICS:
                    entry[key] = spread([metric_value(it["metrics"][s], key) for it in sel])
            agg["systems"][s] = entry
        summary[set_key] = agg

    checks = {}
    for set_key in ("heldout-voice", "all"):
        if set_key not in summary:
            continue
        v = summary[set_key]["systems"]["vocos"]
        delta = v["wer"] - summary[set_key]["systems"]["original"]["wer"]
        checks[set_key] = {
            "stoi": {"value": v["stoi"]["mean"], "bar": f">= {BAR['stoi_min']}", "pass": v["stoi"]["mean"] >= BAR["stoi_min"]},
            "log_mel_l1": {"value": v["log_mel_l1"]["mean"], "bar": f"<= {BAR['log_mel_l1_max']}",
                           "pass": v["log_mel_l1"]["mean"] <= BAR["log_mel_l1_max"]},
            "wer_minus_original": {"value": delta, "bar": f"<= {BAR['wer_delta_max']}",
                                   "pass": delta <= BAR["wer_delta_max"]},
        }

    # Images: the first file of the held-out voice and of another voice.
    images = []
    for set_key in ("heldout-voice", "heldout-sentences"):
        sel = [it for it in items if it["set"] == set_key]
        if sel:
            name = f"spectrograms-{sel[0]['id']}.png"
            spectrogram_image(os.path.join(a.results, name), sel[0], systems, a.work, a.results)
            images.append(name)

    report = {"machine": a.machine, "load_average_start": a.load_start, "load_average_end": a.load_end,
              "seconds": a.seconds, "systems": systems, "hift_model": a.hift or None,
              "griffin_lim": {"iterations": 32, "momentum": 0.99, "initial_phase": "uniform random, seed 0",
                              "magnitude": "NNLS inversion of the S3Gen mel filterbank, 100 updates"},
              "asr": "pocketsphinx (GStreamer element, Debian pocketsphinx-en-us model), 16 kHz; "
                     "WER = word edits / reference words, text lower-cased, punctuation dropped",
              "bar": BAR, "checks": checks, "summary": summary, "files": items, "images": images}
    with open(os.path.join(a.results, "report.json"), "w") as f:
        json.dump(report, f, indent=1)

    md = ["# Vocoder quality report", "",
          f"`bash bench/quality/report.sh` on {a.machine}; load average {a.load_start} at the start, "
          f"{a.load_end} at the end; {a.seconds:.0f} s.", "",
          "Each original is held-out speech from `scripts/make-corpus.sh` (never trained on); every "
          "re-synthesis starts from the same S3Gen log-mel of it. Cells: mean ± standard deviation "
          "(min–max) over files; **bold** = the better system on that row. WER is pooled over all words "
          "(per-file mean ± std in brackets)."]
    if "hift" not in systems:
        md += ["", "HiFT is not in the table: no trained HiFT weights are available here (the suite's HiFT "
               "files are tiny random-weight fixtures, whose output is noise). Pass Chatterbox's "
               "`s3gen.safetensors` with `--hift` to add it."]
    for set_key, title in SETS:
        if set_key not in summary:
            continue
        agg = summary[set_key]
        md += ["", f"## {title}: {agg['files']} files, {agg['words']} words", "",
               "| metric | " + " | ".join(NAMES[s] for s in systems) + " |",
               "|---|" + "---|" * len(systems)]
        for key, label, higher in METRICS:
            vals = {s: agg["systems"][s][key] for s in systems}
            means = {s: v["mean"] for s, v in vals.items() if v}
            best = (max if higher else min)(means, key=means.get) if means else None
            digits = 2 if key.endswith("_db") else 3
            cells = [("**" + fmt_spread(vals[s], digits) + "**") if s == best and len(means) > 1
                     else fmt_spread(vals[s], digits) for s in systems]
            md.append(f"| {label} {'↑' if higher else '↓'} | " + " | ".join(cells) + " |")
        orig = agg["systems"]["original"]
        wers = {s: agg["systems"][s]["wer"] for s in systems}
        best = min(wers, key=wers.get)
        cells = []
        for s in systems:
            w = agg["systems"][s]
            c = f"{w['wer']:.3f} ({w['wer_per_file']['mean']:.3f} ± {w['wer_per_file']['std']:.3f})"
            cells.append(f"**{c}**" if s == best and len(systems) > 1 else c)
        md.append(f"| WER ↓ (original audio: {orig['wer']:.3f}) | " + " | ".join(cells) + " |")
    if checks:
        md += ["", "## The default model against issue #10's bar", "",
               "| files | STOI ≥ 0.85 | log-mel L1 ≤ 0.5 | WER − original's ≤ 0.15 |", "|---|---|---|---|"]
        for set_key, c in checks.items():
            cell = lambda k, d: f"{c[k]['value']:.{d}f} {'pass' if c[k]['pass'] else '**fail**'}"
            md.append(f"| {dict(SETS)[set_key]} | {cell('stoi', 3)} | {cell('log_mel_l1', 3)} | "
                      f"{cell('wer_minus_original', 3)} |")
    md += ["", "## Spectrograms", ""] + [f"![{n}]({n})" for n in images]
    md += ["", "## Per file", "", "| file | " + " | ".join(f"{NAMES[s]} STOI / L1 / WER" for s in systems) +
           " | original WER |", "|---|" + "---|" * (len(systems) + 1)]
    for it in items:
        cells = [f"{it['metrics'][s]['stoi']:.3f} / {it['metrics'][s]['log_mel_l1']:.3f} / "
                 f"{it['asr'][s]['wer']:.2f}" for s in systems]
        md.append(f"| {it['id']} | " + " | ".join(cells) + f" | {it['asr']['original']['wer']:.2f} |")
    with open(os.path.join(a.results, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md[:60]))
    print(f"\nwrote {a.results}/report.md, report.json, {', '.join(images)}", file=sys.stderr)


if __name__ == "__main__":
    main()
