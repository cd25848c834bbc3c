"""bench.json -> bench.md (markdown tables) and PNG plots (gnuplot).
`python3 bench/report.py bench/results/bench.json` redoes them from a saved run."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

LABEL = {"vocos-s3gen": "Vocos S3Gen layout (80 mels, hop 480)", "vocos-24k": "Vocos charactr layout (100 mels, hop 256)",
         "hift": "HiFT (Chatterbox, base 512)"}


def la_name(la):
    return "default" if la < 0 else str(la)


def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def api_row(res, m, s, th):
    for o in res.get("api", []):
        if o["model"] == m and o["seconds"] == s and o["threads"] == th:
            return o
    return None


def ref_row(res, m, s, th):
    for o in res.get("reference", []):
        if o["model"] == m and o["seconds"] == s and o["threads"] == th:
            return o
    return None


def markdown(res):
    mc = res["machine"]
    P = res["plan"]
    L = []
    L.append("# gst-chatterbox vocoder benchmark\n")
    L.append(f"Machine: **{mc['cpu']}**, {mc['cores']} cores, {mc['mem_gb']} GB, Linux {mc['kernel']}. "
             f"Run {mc['date']}{' (--quick)' if res['quick'] else ''}, {res['total_s']:.0f} s in all. "
             f"Load average at start {mc['loadavg_start']}, at end {mc['loadavg_end']} "
             "(other jobs on the machine inflate times; each row below also records the 1-min load when it started).\n")
    L.append("Workloads: full-size models with seeded random weights, inputs are log-mels (our MelExtractor, each "
             "model's own layout) of a synthetic speech-like signal. **xRT** = audio seconds per wall-clock second "
             "(higher is faster), median over repeats after one warm-up, spread = min-max. \"N threads\" sizes both "
             "OpenBLAS's pool and LibTorch's OpenMP pool (OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = N, plus the model's "
             f"own option). OpenMP wait policy: {res.get('omp_wait_policy', 'default')} (see \"OpenMP wait policy\" below). "
             "Every measurement runs in its own process.\n")

    L.append("## Model API speed (whole utterance, no GStreamer)\n")
    L.append("| model | input | threads | median ms | xRT median | xRT min-max | peak RSS MiB | load |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for o in res.get("api", []):
        w = o["whole"]
        L.append(f"| {o['model']} | {o['seconds']:g} s | {o['threads']} | {fmt(w['median_ms'])} | {fmt(w['xrt_median'])} | "
                 f"{fmt(w['xrt_min'])}-{fmt(w['xrt_max'])} | {o['peak_rss_kb'] / 1024:.0f} | {o['load_before'][0]:.2f} |")
    L.append("")

    L.append("## Vocos / HiFT speed ratio (same run)\n")
    L.append("Ratio of median times, HiFT time / Vocos time (how many times faster Vocos is).\n")
    L.append("| input | threads | HiFT / Vocos-S3Gen | HiFT / Vocos-24k |")
    L.append("|---:|---:|---:|---:|")
    for s in P["seconds"]:
        for th in P["threads"]:
            h, v1, v2 = api_row(res, "hift", s, th), api_row(res, "vocos-s3gen", s, th), api_row(res, "vocos-24k", s, th)
            if not h:
                continue
            # per audio second, as the 24k layout gives slightly fewer samples for the same input
            def ratio(v):
                if not v:
                    return "-"
                return f"{(h['whole']['median_ms'] / h['audio_s']) / (v['whole']['median_ms'] / v['audio_s']):.1f}x"
            L.append(f"| {s:g} s | {th} | {ratio(v1)} | {ratio(v2)} |")
    L.append("")

    if res.get("omp_policy"):
        L.append("## OpenMP wait policy (1 s input, 2 threads)\n")
        L.append("libgomp's default spins idle workers (OMP_WAIT_POLICY=ACTIVE); with other jobs on the cores they "
                 "compete with the OpenBLAS threads. The rest of this run uses the policy named at the top.\n")
        L.append("| model | policy | median ms | xRT median | load |")
        L.append("|---|---|---:|---:|---:|")
        for o in res["omp_policy"]:
            L.append(f"| {o['model']} | {o['policy']} | {fmt(o['whole']['median_ms'])} | {fmt(o['whole']['xrt_median'])} | "
                     f"{o['load_before'][0]:.2f} |")
        L.append("")

    L.append("## Peak resident memory per process\n")
    L.append("VmHWM of a process that loads one model and runs it whole (input, warm-up, repeats); \"after load\" is VmHWM right after loading the model.\n")
    L.append("| model | after load MiB | " + " | ".join(f"peak, {s:g} s input MiB" for s in P["seconds"]) + " |")
    L.append("|---|---:|" + "---:|" * len(P["seconds"]))
    for m in LABEL:
        rows = [o for o in res.get("api", []) if o["model"] == m]
        if not rows:
            continue
        after = max(o["rss_after_load_kb"] for o in rows) / 1024
        cells = []
        for s in P["seconds"]:
            ps = [o["peak_rss_kb"] for o in rows if o["seconds"] == s]
            cells.append(f"{max(ps) / 1024:.0f}" if ps else "-")
        L.append(f"| {m} | {after:.0f} | " + " | ".join(cells) + " |")
    L.append("")

    if res.get("element"):
        L.append(f"## Element overhead ({P['stream_s']:g} s input, 10-frame buffers)\n")
        L.append("API streaming = `feed()` in 10-frame chunks + `drain()` (the element's call pattern) without "
                 "GStreamer; element = appsrc ! vocosdec/hiftdec ! appsink, all buffers pushed at once, first push to "
                 "EOS. Whole = one `forward()` call.\n")
        L.append("| model | threads | whole xRT | API streaming xRT | element xRT | element time / API streaming time |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for e in res["element"]:
            a = next((o for o in res.get("api_stream", []) if o["model"] == e["model"] and o["threads"] == e["threads"]), None)
            st = a["stream"] if a else None
            ratio = e["stats"]["median_ms"] / st["median_ms"] if st else None
            L.append(f"| {e['model']} | {e['threads']} | {fmt(a['whole']['xrt_median']) if a else '-'} | "
                     f"{fmt(st['xrt_median']) if st else '-'} | {fmt(e['stats']['xrt_median'])} | {fmt(ratio, 2)} |")
        L.append("")

    L.append("## PyTorch reference (upstream forward restated in Python, same machine, same run)\n")
    if res.get("reference_skipped"):
        L.append(f"Skipped: {res['reference_skipped']}\n")
    else:
        chk = res.get("reference_check", [])
        if chk:
            L.append("Same model on both sides: our weights and a 2 s mel through the reference vs our output "
                     "(HiFT with zero source draws): " + "; ".join(
                         f"{c['model']} rel-L2 {c['check_rel_l2']:.2e}, max abs {c['check_max_abs']:.2e}" for c in chk) + ".\n")
        L.append("Reference = `bench/reference_vocos.py` / `bench/reference_hift.py` on Debian's python3-torch "
                 f"{res['reference'][0]['torch'] if res.get('reference') else ''} (the same libtorch_cpu as ours), "
                 "torch.set_num_threads(N). HiFT reference includes upstream's random source draws, per-call weight "
                 "norm and the trim fade, ours runs deterministic draws (same cost) with weight norm folded at load.\n")
        L.append("| model | input | threads | ours median ms | reference median ms | ours / reference | reference xRT |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        for o in res.get("reference", []):
            a = api_row(res, o["model"], o["seconds"], o["threads"])
            ours = a["whole"]["median_ms"] if a else None
            L.append(f"| {o['model']} | {o['seconds']:g} s | {o['threads']} | {fmt(ours)} | {fmt(o['stats']['median_ms'])} | "
                     f"{fmt(ours / o['stats']['median_ms'], 3) if ours else '-'} | {fmt(o['stats']['xrt_median'])} |")
        done = {(o["model"], o["seconds"]) for o in res.get("reference", [])}
        missing = sorted({(o["model"], o["seconds"]) for o in res.get("api", [])} - done)
        if missing:
            L.append("\nNot run for the reference (time budget of the default run): " +
                     ", ".join(f"{m} {s:g} s" for m, s in missing) + ".")
        L.append("")

    L.append("## Streamed vs whole-utterance output against lookahead\n")
    if res.get("error"):
        e0 = res["error"][0]
        L.append(f"{e0['seconds']:g} s input fed in {e0['chunk']}-frame chunks, compared with one `forward()` of the "
                 "whole input (HiFT in deterministic mode). \"default\" = the model's exact lookahead.\n")
        L.append("| model | lookahead | frames | rel-L2 | max abs | samples stream/whole |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for e in res["error"]:
            for row in e["rows"]:
                L.append(f"| {e['model']} | {la_name(row['lookahead'])} | {row['lookahead_frames']} | {row['rel_l2']:.2e} | "
                         f"{row['max_abs']:.2e} | {row['samples_stream']}/{row['samples_whole']} |")
        L.append("")

    if res.get("latency"):
        L.append("## First-audio latency of a live pipeline\n")
        l0 = res["latency"][0]
        L.append(f"appsrc (live) pushes one mel frame per buffer at real-time pace ! vocosdec/hiftdec (threads=2) ! "
                 f"appsink; time from pushing the first frame to the first audio buffer, median of {len(l0['rows'][0]['first_audio_ms'])} "
                 "runs after a warm-up run. \"frames in\" = mel frames pushed by then.\n")
        L.append("| model | frame ms | lookahead | first audio ms (median) | min-max | frames in |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for o in res["latency"]:
            for row in o["rows"]:
                t = sorted(row["first_audio_ms"])
                fr = sorted(row["frames_pushed_at_first_audio"])
                L.append(f"| {o['model']} | {o['frame_ms']:.1f} | {la_name(row['lookahead'])} | {fmt(t[len(t) // 2])} | "
                         f"{fmt(t[0])}-{fmt(t[-1])} | {fr[len(fr) // 2]:.0f} |")
        L.append("")

    if res.get("flow"):
        f0 = res["flow"][0]
        L.append("## S3Gen flow (speech tokens -> mel)\n")
        L.append(f"Chatterbox's flow at its real widths (encoder 512 x 6 + 4 up blocks, estimator channels 256, 4 "
                 f"transformer blocks per level, 12 mid blocks, 8 heads x 64), random weights, 2 threads: "
                 f"{f0['tokens']} target tokens ({f0['audio_s']:g} s of mel) after a {f0['prompt_seconds']:g} s voice prompt "
                 "(decoded with every utterance, as upstream). ms per audio second = median time / audio seconds. "
                 "Streamed = upstream's S3GenStreamer rule (every N tokens, all tokens so far decoded again, the last 3 "
                 "as look-ahead), its deviation from the whole decode with the same target noise.\n")
        L.append("| decoder | precision | steps | median ms | ms per audio s | xRT | streamed (chunk, decodes): ms, x whole | "
                 "streamed vs whole max abs / rel-L2 | vs f32 max abs / rel-L2 | peak RSS MiB | load |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for o in res["flow"]:
            w = o["whole"]
            st, sv, vf = o.get("stream"), o.get("stream_vs_whole"), o.get("vs_f32")
            stream = (f"{o['stream_chunk_tokens']} tok, {o['stream_decodes']}: {fmt(st['median_ms'], 0)}, "
                      f"{st['median_ms'] / w['median_ms']:.1f}x") if st else "-"
            dev = f"{sv['max_abs']:.2f} / {sv['rel_l2']:.3f}" if sv else "-"
            prec = f"{vf['max_abs']:.3f} / {vf['rel_l2']:.4f}" if vf else "-"
            kind = "mean flow (Turbo)" if "meanflow" in o["model"] else "standard (CFG)"
            L.append(f"| {kind} | {o['precision']} | {o['steps']} | {fmt(w['median_ms'], 0)} | "
                     f"{fmt(w['median_ms'] / o['audio_s'], 0)} | {fmt(w['xrt_median'], 2)} | {stream} | {dev} | {prec} | "
                     f"{o['peak_rss_kb'] / 1024:.0f} | {o['load_before'][0]:.2f} |")
        L.append("")

    L.append("## CUDA\n")
    c = res.get("cuda")
    if not c:
        L.append("CUDA run failed (see bench.json calls).\n")
    elif "skipped" in c:
        L.append(f"Skipped: {c['skipped']}.\n")
    else:
        w = c.get("whole_ms")
        L.append(f"vocos-s3gen, 10 s input on {c['device']}: median {min(w):.1f} ms.\n")
    L.append("Plots: `xrt.png` (speed), `error.png` (streaming error vs lookahead), `latency.png` (first audio), "
             "`reference.png` (ours / reference time).\n")
    return "\n".join(L)


def gnuplot(script, results):
    if not shutil.which("gnuplot"):
        print("gnuplot missing: no plots", file=sys.stderr)
        return
    subprocess.run(["gnuplot"], input=script, text=True, cwd=results, check=False)


def plots(res, results):
    d = tempfile.mkdtemp()
    P = res["plan"]
    # Speed: xRT against input length, per model and thread count, min-max bars.
    series = []
    for m in LABEL:
        for th in P["threads"]:
            rows = [o for o in res.get("api", []) if o["model"] == m and o["threads"] == th]
            if not rows:
                continue
            f = os.path.join(d, f"xrt_{m}_{th}.dat")
            with open(f, "w") as fh:
                for o in sorted(rows, key=lambda o: o["seconds"]):
                    w = o["whole"]
                    fh.write(f"{o['seconds']} {w['xrt_median']} {w['xrt_min']} {w['xrt_max']}\n")
            series.append(f"'{f}' using 1:2:3:4 with yerrorlines lw 2 title '{m}, {th} thr'")
    if series:
        gnuplot(f"""set terminal pngcairo size 900,560
set output 'xrt.png'
set title 'Model API speed: times real-time (median, min-max bars)'
set logscale xy
set xlabel 'input length (s)'
set ylabel 'xRT (audio s per wall s)'
set xtics (1, 10, 60)
set key outside right
set grid
plot {', '.join(series)}
""", results)
    # Streaming error against lookahead.
    if res.get("error"):
        s1, s2 = [], []
        for e in res["error"]:
            f = os.path.join(d, f"err_{e['model']}.dat")
            with open(f, "w") as fh:
                for i, row in enumerate(e["rows"]):
                    fh.write(f"{i} {max(row['rel_l2'], 1e-12)} {max(row['max_abs'], 1e-12)} \"{la_name(row['lookahead'])}\"\n")
            s1.append(f"'{f}' using 1:2:xtic(4) with linespoints lw 2 title '{e['model']}'")
            s2.append(f"'{f}' using 1:3:xtic(4) with linespoints lw 2 title '{e['model']}'")
        gnuplot(f"""set terminal pngcairo size 1100,480
set output 'error.png'
set multiplot layout 1,2 title 'Streamed (10-frame chunks) vs whole-utterance output'
set logscale y
set grid
set xlabel 'lookahead (frames)'
set format y '%.0e'
set ylabel 'rel-L2'
plot {', '.join(s1)}
set ylabel 'max abs'
plot {', '.join(s2)}
unset multiplot
""", results)
    # Latency against lookahead.
    if res.get("latency"):
        s = []
        for o in res["latency"]:
            f = os.path.join(d, f"lat_{o['model']}.dat")
            with open(f, "w") as fh:
                for i, row in enumerate(o["rows"]):
                    t = sorted(row["first_audio_ms"])
                    fh.write(f"{i} {t[len(t) // 2]} {t[0]} {t[-1]} \"{la_name(row['lookahead'])}\"\n")
            s.append(f"'{f}' using 1:2:3:4:xtic(5) with yerrorlines lw 2 title '{o['model']}'")
        gnuplot(f"""set terminal pngcairo size 900,520
set output 'latency.png'
set title 'Live pipeline: first mel frame in -> first audio out'
set xlabel 'lookahead (frames)'
set ylabel 'ms'
set grid
set key top left
plot {', '.join(s)}
""", results)
    # Ours / reference time.
    if res.get("reference"):
        f = os.path.join(d, "ref.dat")
        with open(f, "w") as fh:
            keys = []
            for o in res["reference"]:
                k = (o["model"], o["seconds"])
                if k not in keys:
                    keys.append(k)
            for m, s in keys:
                cells = []
                for th in P["threads"]:
                    o, a = ref_row(res, m, s, th), api_row(res, m, s, th)
                    cells.append(f"{a['whole']['median_ms'] / o['stats']['median_ms']:.4f}" if o and a else "NaN")
                fh.write(f"\"{m} {s:g}s\" " + " ".join(cells) + "\n")
        cols = " , ".join(f"'{f}' using {i + 2}:xtic(1) title '{th} thr'" for i, th in enumerate(P["threads"]))
        gnuplot(f"""set terminal pngcairo size 900,520
set output 'reference.png'
set title 'Our time / PyTorch reference time (lower is better)'
set style data histograms
set style fill solid 0.7
set boxwidth 0.9
set grid y
set yrange [0:*]
set xtics rotate by -30
plot {cols}
""", results)


def write_all(res, results):
    with open(os.path.join(results, "bench.md"), "w") as f:
        f.write(markdown(res) + "\n")
    plots(res, results)


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench.json")
    with open(path) as f:
        write_all(json.load(f), os.path.dirname(os.path.abspath(path)))
