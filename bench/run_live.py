#!/usr/bin/env python3
"""Live text-to-speech benchmark: the S3Gen flow's bounded-cost window
streaming (s3genmel left-context / chunk-tokens) against the whole-utterance
decode, and text -> audio live end to end. Writes bench/results/live.json and
bench/results/live.md.

  bench/run_live.py [--build DIR] [--quick] [--no-reference] [--only window|live]
                    [--out DIR]

1. bench_api window (standard 10-step CFG flow and the 2-step mean flow, full
   size, seeded random weights): per (left-context, chunk) setting, the mel's
   deviation from the whole decode from the same noise (rel-L2, max abs),
   the vocoded audio against the whole decode's audio (bench/quality metrics,
   the embedded default Vocos), the stream's cost against the whole decode,
   first-chunk time, work per decode; upstream's re-decode-everything rule
   for contrast.
   Unless --no-reference: bench/reference_flow_stream.py first runs upstream's
   own flow code in PyTorch (Debian's python3-torch 1.13) on seeded weights,
   times its whole decode and PR #528's rule, and writes the weights and
   inputs; bench_api window then runs on exactly those (--weights/--inputs),
   and checks its whole decode against upstream's (rel-L2).
2. bench_t3 live (original, Turbo, Nano T3 + flow + streaming Vocos, full
   size random weights, 2 threads): time to first audio after the text, RTF,
   underruns a real-time sink would hear, peak RSS; and bench_t3 e2e, the
   whole-utterance path, for its time to first audio.

One process per row (peak RSS per row). Short runs: the machine is shared
(load average per row in live.json). --quick: 1 s utterances after a 1 s
prompt, chunks of 10, fewer settings (checks the script end to end in a few
minutes); --out: somewhere else than bench/results (quick runs).
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(argv, env=None):
    t = time.time()
    p = subprocess.run(argv, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        return {"error": p.stderr.strip()[-500:], "argv": argv}
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall_s"] = round(time.time() - t, 1)
    out["load_avg"] = round(os.getloadavg()[0], 2)
    return out


def fmt(x, nd=3):
    return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def md(res):
    L = ["# Live text-to-speech: window streaming of the S3Gen flow (`bench/run_live.py`)", "",
         "![deviation and cost per setting](live.png)", ""]
    L.append(f"CPU: {res.get('cpu', '?')}. Full-size seeded random weights (upstream's own initialisation, seed 1234, "
             "where upstream's PyTorch run made them; else S3GenFlow::random), 2 threads, on a 2-core machine "
             "(load average per row in live.json): times are indicative, the work counts and deviations are not "
             "affected by load.")
    L.append("")
    L.append("Mode: `s3genmel chunk-tokens=C left-context=L` (docs/s3gen-streaming.md). Deviation: the streamed "
             "mel against the whole-utterance decode from the same noise z, so only the windowing differs. "
             "`cond=0`: the context frames without the emitted mel as cond. Random weights attend everywhere "
             "with no locality, so these deviations are an upper-bound style picture of the architecture, not a "
             "trained model's sound.")
    for w in res["window"]:
        if "error" in w:
            L += ["", f"window run failed: {w['error']}"]
            continue
        L += ["", f"## {w['model']}: {w['tokens']} tokens after a {w['prompt_tokens']}-token prompt, "
                  f"{w['steps']} steps; whole decode {w['whole_ms']:.0f} ms for {w['audio_s']:.1f} s of audio", ""]
        ref = w.get("reference") if "error" not in w.get("reference", {"error": 1}) else None
        up_rule = ref["rule_ms"] if ref else None
        L.append("| L | C | added latency | mel rel-L2 | max abs | rel-L2 (cond=0) | STOI | MCD dB | MR-STFT | spec. sim. | "
                 "SI-SNR dB | cost / whole | upstream PyTorch rule / this | first chunk ms | chunk ms (median / max) | "
                 "decodes | max encoder tokens | max CFM frames | CFM frames / whole |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        whole_frames = 2 * (w["tokens"] + w["prompt_tokens"])

        def audio(r):
            m = r.get("audio_vs_whole")
            if not m:
                return "- | - | - | - | -"
            return (f"{fmt(m['stoi'])} | {m['mcd_db']:.2f} | {m['mr_stft']:.3f} | {m['spectral_similarity']:.3f} | "
                    f"{fmt(m['si_snr_db'], 1)}")

        for r in w["window"]:
            L.append(f"| {r['left_context']} | {r['chunk_tokens']} | {(r['chunk_tokens'] + 3) * 40} ms | "
                     f"{r['vs_whole']['rel_l2']:.4f} | {r['vs_whole']['max_abs']:.3f} | "
                     f"{r['vs_whole_zero_cond']['rel_l2']:.4f} | {audio(r)} | {r['cost_ratio']:.2f} | "
                     f"{fmt(up_rule / r['stream_ms'] if up_rule else None, 1)} | {r['first_chunk_ms']:.0f} | "
                     f"{r['chunk_ms_median']:.0f} / {r['chunk_ms_max']:.0f} | {r['decodes']} | "
                     f"{r['max_encoder_tokens']} | {r['max_decoder_frames']} | {r['decoder_frames'] / whole_frames:.2f} |")
        u = w.get("upstream")
        if u:
            same = u.get("vs_whole_same_target_noise")
            dev = (f"{same['rel_l2']:.4f}* | {same['max_abs']:.3f}*" if same else
                   f"{u['vs_whole']['rel_l2']:.4f}** | {u['vs_whole']['max_abs']:.3f}**")
            L.append(f"| PR #528 rule (ours) | {u['chunk_tokens']} | {(u['chunk_tokens'] + 3) * 40} ms | "
                     f"{dev} | - | {audio(u)} | {u['cost_ratio']:.2f} | "
                     f"{fmt(up_rule / u['stream_ms'] if up_rule else None, 1)} | "
                     f"{u['first_chunk_ms']:.0f} | {u['chunk_ms_median']:.0f} / {u['chunk_ms_max']:.0f} | "
                     f"{u['decodes']} | {u['max_encoder_tokens']} | {u['max_decoder_frames']} | {u['decoder_frames'] / whole_frames:.2f} |")
            L.append("")
            L.append("\\* upstream's rule draws its own noise: its mel and audio are compared with a whole decode "
                     "from the rule's target noise (prompt part from z; the rule redraws it per call, as upstream), "
                     "the figure the reference table gives for upstream's PyTorch rule." if same else
                     "\\*\\* against the whole decode above, so it also holds the rule's different noise.")
    L += ["", "Audio columns: the streamed mel and the whole mel vocoded by the same whole-utterance Vocos "
          f"({res['window'][0].get('vocos', '?') if res['window'] and 'error' not in res['window'][0] else '?'}), "
          "the streamed audio scored against the whole decode's audio with bench/quality's metrics (STOI 0..1 "
          "higher is better; MCD, multi-resolution STFT distance: 0 = identical; spectral similarity: 1 = "
          "identical; SI-SNR: sample-exact). Random flow weights: the mels are not speech, so STOI may be "
          "undefined (too little speech-like energy) and all numbers describe the deviation, not a voice."]
    refs = [w for w in res["window"] if "error" not in w and w.get("reference") and "error" not in w["reference"]]
    if refs or any("error" in w.get("reference", {}) for w in res["window"]):
        L += ["", "## Against upstream's rule in PyTorch (same weights, same run)", "",
              "`bench/reference_flow_stream.py` runs upstream's own flow code (resemble-ai/chatterbox 5de7a54, "
              "flow.py of PR #528 for its finalize=False mask fix) in PyTorch "
              f"{refs[0]['reference'].get('torch', '?') if refs else '?'} (Debian's python3-torch, 2 threads) on "
              "seeded full-size weights and inputs, writes them, and bench_api window runs on the same files. "
              "Whole: one `flow.inference` of the utterance. Rule: Chatterbox PR #528's S3GenStreamer rule (every "
              "C tokens the whole prefix re-decoded with finalize=False, the new frames emitted, the end with "
              "finalize=True), flow only (upstream's streamer also re-vocodes everything with HiFT per call). "
              "Ratios above 1: ours is faster.", "",
              "| model | tokens (prompt) | C | upstream whole ms | our whole ms | upstream / ours (whole) | "
              "whole-decode rel-L2 ours vs upstream | upstream rule ms | our rule ms | upstream / ours (rule) | "
              "upstream rule mel rel-L2 vs its whole | "
              "upstream rule / our window mode (per setting L:C) | upstream peak RSS | our peak RSS |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
        for w in res["window"]:
            ref = w.get("reference")
            if not ref:
                continue
            if "error" in ref or "error" in w:
                L.append(f"| {w.get('model', '?')} | failed: {(ref.get('error') or w.get('error', ''))[:100]} |")
                continue
            u = w.get("upstream", {})
            vs = w.get("vs_upstream_whole", {})
            per = ", ".join(f"{r['left_context']}:{r['chunk_tokens']} {ref['rule_ms'] / r['stream_ms']:.1f}"
                            for r in w["window"])
            dev = f"{vs['rel_l2']:.1e} (max abs {vs['max_abs']:.1e})" if vs else "-"
            L.append(f"| {w['model']} | {w['tokens']} ({w['prompt_tokens']}) | {ref['chunk_tokens']} | "
                     f"{ref['whole_ms']:.0f} | {w['whole_ms']:.0f} | {ref['whole_ms'] / w['whole_ms']:.2f} | {dev} | "
                     f"{ref['rule_ms']:.0f} | {fmt(u.get('stream_ms'), 0)} | "
                     f"{fmt(ref['rule_ms'] / u['stream_ms'] if u.get('stream_ms') else None, 2)} | "
                     f"{ref['rule_vs_whole']['rel_l2']:.3f} | {per} | "
                     f"{ref['peak_rss_kb'] / 1024:.0f} MiB | {w['peak_rss_kb'] / 1024:.0f} MiB |")
        L += ["", "The whole-decode rel-L2 checks the weight mapping and the math: both sides decode the same tokens "
              "from the same noise z with the same weights. Upstream's rule mel vs its whole: upstream's own "
              "deviation with the whole decode's target noise (noised_mels) and a fresh prompt-noise draw per "
              "call (randn_like), i.e. the rule's approximation plus that redraw; our rule row above draws all "
              "of its noise itself, so its deviation also holds a different target noise."]
    L += ["", "## Text to audio, live (`bench_t3 live`)", "",
          "T3 tokens one by one into the window-streamed flow and the streaming Vocos (S3Gen layout, exact "
          "lookahead). Time to first audio counts from the text (T3 prefill included). Underruns: a real-time "
          "sink that starts at the first sample and pauses whenever the next buffer is late.", "",
          "| model | T3 precision | voice prompt | L / C | tokens | audio s | first audio ms | whole-utterance first audio ms | RTF | "
          "T3 ms/token | flow ms | vocoder ms | underruns | underrun total / max ms | peak RSS |",
          "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["live"]:
        if "error" in r:
            L.append(f"| {r.get('family', '?')} | failed: {r['error'][:80]} |")
            continue
        wh = r.get("whole", {})
        pb = r["playback"]
        L.append(f"| {r['family']} | {r.get('precision', 'f32')} | {'cached' if r.get('warm_voice') else 'computed'} | "
                 f"{r['left_context']} / {r['chunk_tokens']} | "
                 f"{r['tokens']} | {r['audio_s']:.2f} | "
                 f"{r['time_to_first_audio_ms']:.0f} | {fmt(wh.get('time_to_first_audio_ms'), 0)} | {r['rtf']:.2f} | "
                 f"{r['t3_ms_per_token']:.1f} | {r['flow_ms']:.0f} | {r['vocoder_ms']:.0f} | {pb['underruns']} | "
                 f"{pb['underrun_total_ms']:.0f} / {pb['underrun_max_ms']:.0f} | {r['peak_rss_kb'] / 1024:.0f} MiB |")
    L.append("")
    L += ["## Reading it", "",
          "- Work, not time, is the reliable cost measure: `CFM frames / whole` counts the frames the flow "
          "decodes (each x steps x the CFG batch) against the whole decode's prompt + utterance frames; per-decode "
          "work is fixed by L and C (the `s3gen_window` test checks it does not grow with the utterance). Wall "
          "times carry the load average recorded per row in live.json.",
          "- `cond=0` (context frames re-decoded from the same noise with zero cond, as in the whole decode) "
          "against the default (cond = the emitted mel): which sounds better needs trained weights; random weights "
          "attend everywhere, so the deviations are a worst-case picture of the architecture.",
          "- Live text to audio: the first chunk waits for C + 3 tokens from T3 after its prefill, then one flow "
          "window and the vocoder's lookahead. `voice prompt: cached` rows are a session's later sentences (the t3 "
          "element keeps the Turbo/Nano voice prompt's keys and values), where the prefill is the text alone. "
          "An underrun is counted when a buffer arrives after its playback time; most rows have one, right after "
          "the first chunk (the sink starts at the first sample, before a second chunk can be ready).",
          ""]
    return "\n".join(L) + "\n"


def plot(res, out):
    """live.png: per window setting, the mel's and the audio's deviation from
    the whole decode and the stream's cost against it, both flows."""
    if not shutil.which("gnuplot"):
        print("gnuplot missing: no live.png", file=sys.stderr)
        return
    d = tempfile.mkdtemp()
    f = os.path.join(d, "live.dat")
    n = 0
    with open(f, "w") as fh:
        for w in res["window"]:
            if "error" in w:
                continue
            tag = "mf" if "meanflow" in w["model"] else "std"
            rows = [(f"{tag} {r['left_context']}:{r['chunk_tokens']}", r) for r in w["window"]]
            if w.get("upstream"):
                rows.append((f"{tag} rule {w['upstream']['chunk_tokens']}", w["upstream"]))
            for label, r in rows:
                mr = r.get("audio_vs_whole", {}).get("mr_stft")
                dev = r.get("vs_whole_same_target_noise", r["vs_whole"])["rel_l2"]
                fh.write(f"{n} {dev:.5f} {mr if mr is not None else 'NaN'} {r['cost_ratio']:.3f} "
                         f"\"{label}\"\n")
                n += 1
    if n == 0:
        return
    script = f"""set terminal pngcairo size 1100,520
set output 'live.png'
set title 'S3Gen flow streaming against the whole decode (full-size random weights)'
set style fill solid 0.6
set ylabel 'deviation from the whole decode'
set y2label 'stream cost / whole decode'
set y2tics
set logscale y2
set xtics rotate by -45
set grid ytics
set key below
set yrange [0:*]
set xrange [-0.6:{n - 0.4}]
plot '{f}' using ($1-0.2):2:(0.4) with boxes title 'mel rel-L2', \\
     '' using ($1+0.2):3:(0.4) with boxes title 'audio multi-resolution STFT distance', \\
     '' using 1:4:xtic(5) axes x1y2 with points pt 7 ps 1.5 title 'cost / whole (right axis)'
"""
    subprocess.run(["gnuplot"], input=script, text=True, cwd=out, check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-reference", action="store_true", help="skip upstream's PyTorch run (random weights only)")
    ap.add_argument("--only", choices=["window", "live"], default=None)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()
    api = os.path.join(a.build, "bench", "bench_api")
    t3 = os.path.join(a.build, "bench", "bench_t3")
    res = {"window": [], "live": []}
    try:
        res["cpu"] = open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip()
    except Exception:
        pass
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    tmp = tempfile.mkdtemp(prefix="run_live_")
    if a.only in (None, "window"):
        # The 10-step CFG flow is ~10x the mean flow's cost: a shorter utterance
        # and prompt keep the run short on the shared machine.
        if a.quick:
            configs = [("0", "1", "1", "25:10", "10"), ("1", "1", "1", "25:10,50:10", "10")]
        else:
            configs = [("0", "2", "2", "25:25,50:25", "25"), ("1", "4", "6", "25:25,50:25,100:25,50:10", "25")]
        for mf, sec, prompt, settings, chunk in configs:
            argv = [api, "window", "--seconds", sec, "--prompt-seconds", prompt, "--threads", "2", "--meanflow", mf,
                    "--settings", settings, "--upstream-chunk", chunk]
            ref = None
            if not a.no_reference:
                wts, inp = os.path.join(tmp, f"flow{mf}.safetensors"), os.path.join(tmp, f"inputs{mf}.safetensors")
                ref = run(["/usr/bin/python3", os.path.join(HERE, "reference_flow_stream.py"), "--weights", wts,
                           "--inputs", inp, "--meanflow", mf, "--seconds", sec, "--prompt-seconds", prompt,
                           "--chunk", chunk, "--threads", "2"], env=env)
                print("reference", mf, json.dumps(ref)[:300], file=sys.stderr)
                if "error" not in ref:
                    argv += ["--weights", wts, "--inputs", inp]
            r = run(argv, env=env)
            if ref is not None:
                r["reference"] = ref
            res["window"].append(r)
            print("window", mf, json.dumps(r)[:300], file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    if a.only in (None, "live"):
        # Each family in float32 and int8 T3 at the element's default window
        # (L 50 / C 25), and Turbo int8 with a 10-token chunk (the lowest
        # first-audio setting measured).
        # Then a voice agent's later sentences (--warm-voice: the t3
        # element's prompt cache already holds the voice), with smaller
        # windows for an earlier first chunk.
        rows = [(fam, toks, prec, "50", "25", "0") for fam, toks in [("nano", "50"), ("turbo", "50"), ("original", "30")]
                for prec in ("f32", "int8")] + [("turbo", "50", "int8", "50", "10", "0")]
        rows += [(fam, "50", "int8", left, chunk, "1") for fam in ("nano", "turbo")
                 for left, chunk in (("50", "25"), ("25", "10"), ("10", "10"))]
        for fam, toks, prec, left, chunk, warm in rows:
            if a.quick:
                toks = "40"
            r = run([t3, "live", "--family", fam, "--precision", prec, "--threads", "2", "--tokens", toks,
                     "--text-tokens", "40", "--stream-left", left, "--stream-chunk", chunk, "--warm-voice", warm])
            if "error" not in r and chunk == "25" and warm == "0":
                r["whole"] = run([t3, "e2e", "--family", fam, "--precision", prec, "--threads", "2", "--tokens", toks,
                                  "--text-tokens", "40"])
            r.setdefault("family", fam)
            r.setdefault("precision", prec)
            res["live"].append(r)
            print("live", fam, json.dumps(r)[:300], file=sys.stderr)
    out = a.out
    os.makedirs(out, exist_ok=True)
    old = {}
    path = os.path.join(out, "live.json")
    if a.only and os.path.exists(path):
        old = json.load(open(path))
        for k in ("window", "live"):
            if not res[k]:
                res[k] = old.get(k, [])
    json.dump(res, open(path, "w"), indent=1)
    open(os.path.join(out, "live.md"), "w").write(md(res))
    plot(res, out)


if __name__ == "__main__":
    main()
