#!/usr/bin/env python3
"""Voice front end bench: ours (bench_voice, LibTorch) beside upstream's
PyTorch (reference_voice.py) on the same full-size random weights and the
same 10 s reference; writes bench/results/voice.{json,md}.
  bench/run_voice.py --build BUILD --upstream CHATTERBOX_CHECKOUT --s3tokenizer S3TOKENIZER_CHECKOUT
                     [--threads 2] [--reps 3] [--seconds 10]
Short on purpose (reps 3): it runs on shared, loaded machines; the load is recorded."""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
NOTE = "Upstream's CAMPPlus and VoiceEncoder rows are slow partly because of Debian's torch 1.13 build (OpenBLAS, no MKL; oneDNN present) and upstream's own numpy/scipy front ends; upstream pins torch 2.6, which was not available here, so the ratios are against this build only."
ROOT = os.path.dirname(HERE)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--s3tokenizer", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fixtures", default=os.environ.get("CHATTERBOX_FIXTURES", os.path.join(ROOT, "..", "shared", "fixtures")))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "voice"))
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_voice_") as work:
        ours_json = os.path.join(work, "ours.json")
        subprocess.run([os.path.join(a.build, "bench", "bench_voice"), "--keys", os.path.join(a.fixtures, "s3gen", "keys"),
                        "--ref", os.path.join(a.fixtures, "clone", "ref_24k.wav"), "--work", work, "--json", ours_json,
                        "--seconds", str(a.seconds), "--reps", str(a.reps), "--threads", str(a.threads)],
                       check=True, env=env)
        ours = json.load(open(ours_json))
        up_json = os.path.join(work, "upstream.json")
        subprocess.run(["/usr/bin/python3", os.path.join(HERE, "reference_voice.py"), "--upstream", a.upstream,
                        "--s3tokenizer", a.s3tokenizer, "--weights", ours["weights"]["s3gen"], "--ve", ours["weights"]["ve"],
                        "--ref", ours["weights"]["ref"], "--json", up_json, "--reps", str(a.reps),
                        "--threads", str(a.threads)], check=True, env=env)
        up = json.load(open(up_json))
    load_after = os.getloadavg()
    a_tok, b_tok = ours["tokens_10s"], up["tokens_10s"]
    same = sum(x == y for x, y in zip(a_tok, b_tok))
    token_check = {"ours": len(a_tok), "upstream": len(b_tok), "equal": same}
    rows = []
    for k, v in ours["stages"].items():
        u = up["stages"].get(k)
        rows.append({"stage": k, "ours_ms": v["median_ms"], "upstream_ms": u["median_ms"] if u else None,
                     "ratio_upstream_over_ours": (u["median_ms"] / v["median_ms"]) if u else None})
    res = {"cpu": cpu_name(), "threads": a.threads, "reps": a.reps, "reference_seconds": a.seconds,
           "loadavg_before": load_before, "loadavg_after": load_after,
           "weights": "random, full size, real layout (fixtures/s3gen/keys): tokenizer width %d x %d blocks, CAMPPlus growth %d / init %d, VoiceEncoder 3x256 LSTM" % (
               ours["tokenizer_config"]["width"], ours["tokenizer_config"]["layers"],
               ours["campplus_config"]["growth_rate"], ours["campplus_config"]["init_channels"]),
           "upstream": {"torch": up["torch"], "torchaudio": up["torchaudio"]},
           "stages": rows, "tokens_10s_ours_vs_upstream": token_check, "tokenizer_rtf": ours["tokenizer_rtf"], "upstream_tokenizer_rtf": up["tokenizer_rtf"]}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out + ".json", "w") as f:
        json.dump(res, f, indent=2)
    with open(a.out + ".md", "w") as f:
        f.write("# Voice front end: cloning a %.0f s reference, S3 tokenizer RTF\n\n" % a.seconds)
        f.write("CPU: %s; %d threads; median of %d runs after one warm-up. Load average %.1f before, %.1f after: "
                "a shared 2-core machine under other builds, so absolute times are noisy; the ratios compare runs "
                "made minutes apart on the same load.\n\n" % (res["cpu"], a.threads, a.reps, load_before[0], load_after[0]))
        f.write("Weights: %s. Upstream: resemble-ai/chatterbox 5de7a54 + xingchensong/S3Tokenizer 2abe1c5 on Debian's "
                "torch %s / torchaudio %s (librosa, einops shimmed: bench/reference_voice.py).\n\n" % (
                    res["weights"], up["torch"], up["torchaudio"]))
        f.write("Same weights, same model: the 10 s tokens agree %d of %d (ours %d, upstream %d tokens).\n\n" % (
            same, max(len(a_tok), len(b_tok)), len(a_tok), len(b_tok)))
        f.write("| stage | ours (ms) | upstream PyTorch (ms) | upstream / ours |\n|---|---|---|---|\n")
        for r in rows:
            u = "%.1f" % r["upstream_ms"] if r["upstream_ms"] is not None else "n/a"
            q = "%.2f" % r["ratio_upstream_over_ours"] if r["ratio_upstream_over_ours"] is not None else "n/a"
            f.write("| %s | %.1f | %s | %s |\n" % (r["stage"], r["ours_ms"], u, q))
        f.write("\n%s\n" % NOTE)
        f.write("\nresample_soxr: librosa.resample(soxr_hq) upstream; python-soxr is not in Debian (ours calls the "
                "same libsoxr 0.1.3). prepare_conditionals_total: ours end to end (both resamples, tokenizer twice, "
                "CAMPPlus, VE, mel).\n\n")
        f.write("## S3 tokenizer real-time factor (%.0f s of 16 kHz audio; lower is faster)\n\n" % a.seconds)
        f.write("| mode | ours RTF | latency | agreement with whole (random weights) |\n|---|---|---|---|\n")
        for k, v in ours["tokenizer_rtf"].items():
            lat = "%.1f ms" % v["latency_ms"] if "latency_ms" in v else "utterance"
            agr = "%.3f" % v["agreement_with_whole_random_weights"] if "agreement_with_whole_random_weights" in v else "1 (exact)"
            f.write("| %s | %.3f | %s | %s |\n" % (k, v["rtf"], lat, agr))
        f.write("| upstream whole (PyTorch) | %.3f | utterance | reference |\n\n" % up["tokenizer_rtf"]["whole"]["rtf"])
        f.write("Streamed = S3TokenizerStream fed 20 ms pieces (the s3tokenizer element's engine); every chunk "
                "re-encodes its context + chunk + lookahead window, so its cost is (context + chunk + lookahead) / "
                "chunk times the whole pass's. Agreement on random weights says little about the real model "
                "(see README for the fixture tokenizer on speech).\n")
    print(open(a.out + ".md").read())


if __name__ == "__main__":
    sys.exit(main())
