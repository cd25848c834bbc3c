#!/usr/bin/env python3
"""T3 and text-to-audio benchmark driver: runs bench_t3 (one process per
row, so peak RSS is per row) and bench_kernels, writes
bench/results/t3.json and bench/results/t3.md.

  bench/run_t3.py [--build DIR] [--quick]

Rows: decode speed per family (original 0.5B Llama T3, Turbo GPT-2 medium,
Nano GPT-2 small) x weight precision (f32, bf16, int8) x threads (1, 2); the
quantised models' accuracy against float32; text -> audio end to end per
family at 2 threads; the decode GEMM against the machine's measured read
bandwidth. Full-size seeded random weights throughout.
"""
import argparse, json, os, subprocess, sys, time

from busy import busy_core

HERE = os.path.dirname(os.path.abspath(__file__))


def run(argv, threads=None):
    env = dict(os.environ)
    # As bench/run_bench.py: libgomp's workers wait passively (Debian's torch
    # otherwise spins them, which on a busy 2-core machine costs the PyTorch
    # reference far more than it would cost a user on an idle one), and both
    # of LibTorch's pools get the row's thread count.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads:
        env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(threads)
    t = time.time()
    p = subprocess.run(argv, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        return {"error": p.stderr.strip()[-500:], "argv": argv}
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall_s"] = round(time.time() - t, 1)
    out["load_avg"] = os.getloadavg()[0]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sections", default="decode,accuracy,e2e,reference",
                    help="comma list; sections not run keep their rows from an existing t3.json")
    ap.add_argument("--weights-dir", default="/tmp/chatterbox_bench_weights",
                    help="where reference_t3.py --make-weights writes the shared checkpoints")
    a = ap.parse_args()
    sections = a.sections.split(",")
    t3 = os.path.join(a.build, "bench", "bench_t3")
    kern = os.path.join(a.build, "bench", "bench_kernels")
    fams = ["original", "turbo", "nano"]
    precs = ["f32", "bf16", "int8"]
    tokens = "15" if a.quick else "40"
    out_json = os.path.join(HERE, "results", "t3.json")
    res = {"decode": [], "accuracy": [], "e2e": [], "reference": []}
    if os.path.exists(out_json):
        res.update(json.load(open(out_json)))
    for s in sections:
        res[s] = []
    if "decode" in sections or "kernels" not in res:
        res["kernels"] = run([kern, "--threads", "2", "--reps", "3"])
    for f in fams if "decode" in sections else []:
        for p in precs:
            for th in ["1", "2"]:
                r = run([t3, "decode", "--family", f, "--precision", p, "--threads", th, "--tokens", tokens, "--reps", "1"])
                res["decode"].append(r)
                print(f, p, th, r.get("ms_per_token"), file=sys.stderr)
    # The same decode with the other core kept busy by another process.
    res["decode_busy"] = [] if "decode" in sections else res.get("decode_busy", [])
    for f in fams if "decode" in sections else []:
        for th in ["1", "2"]:
            with busy_core():
                r = run([t3, "decode", "--family", f, "--precision", "int8", "--threads", th, "--tokens", tokens,
                         "--reps", "1"])
            res["decode_busy"].append(r)
            print(f, "int8 busy", th, r.get("ms_per_token"), file=sys.stderr)
    for f in fams if "accuracy" in sections else []:
        for p in ["bf16", "int8"]:
            res["accuracy"].append(run([t3, "accuracy", "--family", f, "--precision", p, "--steps", "30" if a.quick else "100"]))
    for f in fams if "e2e" in sections else []:
        for p in ["f32", "int8"]:
            res["e2e"].append(run([t3, "e2e", "--family", f, "--precision", p, "--threads", "2",
                                   "--tokens", "50" if a.quick else "100"]))
    # Upstream's T3 loop in PyTorch (reference_t3.py) and ours on the same
    # checkpoint (written once by reference_t3.py), 2 threads, one after the
    # other in this run.
    py = "/usr/bin/python3"
    ref = os.path.join(HERE, "reference_t3.py")
    for f in fams if "reference" in sections else []:
        os.makedirs(a.weights_dir, exist_ok=True)
        w = os.path.join(a.weights_dir, f"t3_{f}_upstream_init.safetensors")
        if not os.path.exists(w):
            run([py, ref, "--make-weights", f, w])
        tokens_ref = "12" if a.quick else "30"
        row = {"family": f, "threads": 2, "tokens": int(tokens_ref)}
        row["upstream"] = run([py, ref, "--time", f, w, "--threads", "2", "--tokens", tokens_ref], threads=2)
        for p in ["f32", "int8"]:
            row[p] = run([t3, "decode", "--family", f, "--precision", p, "--threads", "2", "--tokens", tokens_ref,
                          "--reps", "1", "--weights", w], threads=2)
        res["reference"].append(row)
        print(f, "reference", row["upstream"].get("ms_per_token"), file=sys.stderr)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(out_json, "w") as fh:
        json.dump(res, fh, indent=1)
    write_md(res, os.path.join(HERE, "results", "t3.md"))
    plot(res, os.path.join(HERE, "results"))


def plot(res, results):
    """t3.png: ms per token per model and precision at 1 and 2 threads, the
    all-weights-once bandwidth limit, and upstream's PyTorch loop."""
    import shutil, tempfile
    if not shutil.which("gnuplot"):
        print("gnuplot missing: no t3.png", file=sys.stderr)
        return
    bw = {t["threads"]: t["read_gbps"] for t in res.get("kernels", {}).get("at_threads", [])}
    ref = {r["family"]: r.get("upstream", {}).get("ms_per_token") for r in res.get("reference", [])}
    d = tempfile.mkdtemp()
    f = os.path.join(d, "t3.dat")
    n = 0
    with open(f, "w") as fh:
        for r in res["decode"]:
            if "error" in r:
                continue
            limit = r["weight_mib_per_token"] * 1048576 / (bw.get(r["threads"], 0) * 1e9) * 1000 if bw.get(r["threads"]) else 0
            up = ref.get(r["family"]) if r["threads"] == 2 and r["precision"] == "f32" else None
            fh.write(f"{n} {r['ms_per_token']:.2f} {limit:.2f} {up if up else 'NaN'} \"{r['family']} {r['precision']} {r['threads']}t\"\n")
            n += 1
    script = f"""set terminal pngcairo size 1100,520
set output 't3.png'
set title 'T3 decode: ms per token (full-size random weights)'
set style data histogram
set style fill solid 0.6
set boxwidth 0.8
set ylabel 'ms per token'
set logscale y
set xtics rotate by -45
set grid ytics
set key top right
plot '{f}' using 0:2:xtic(5) with boxes title 'ours', '' using 0:3 with points pt 7 ps 1.2 title 'limit: weights once at measured bandwidth', '' using 0:4 with points pt 5 ps 1.5 title 'upstream PyTorch (2 threads, same weights)'
"""
    subprocess.run(["gnuplot"], input=script, text=True, cwd=results, check=False)


def write_md(res, path):
    k = res["kernels"]
    L = ["# T3 and text-to-audio benchmark (`bench/run_t3.py`)", "", "![T3 decode](t3.png)", "",
         f"CPU: {k.get('cpu', '?')}. Full-size seeded random weights. Load average per row in t3.json.", "",
         "## Decode (ms per token, median) and prefill", "",
         "| model | precision | threads | ms / token | T3 s per audio s | weights read / token | rate | prefill (positions) | peak RSS |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["decode"]:
        if "error" in r:
            continue
        L.append(f"| {r['family']} | {r['precision']} | {r['threads']} | {r['ms_per_token']:.1f} | {r['t3_s_per_audio_s']:.2f} | "
                 f"{r['weight_mib_per_token']:.0f} MiB | {r['weights_gbps']:.1f} GB/s | {r['prefill_ms'][0]:.0f} ms ({r['prefill_positions']}) | "
                 f"{r['peak_rss_kb'] / 1024:.0f} MiB |")
    busy = [r for r in res.get("decode_busy", []) if "error" not in r]
    if busy:
        idle = {(r["family"], r["precision"], r["threads"]): r for r in res["decode"] if "error" not in r}
        L += ["", "With the other core kept busy by another process (a Python busy loop), int8:", "",
              "| model | threads | ms / token, other core busy | idle (above) | busy / idle |", "|---|---:|---:|---:|---:|"]
        for r in busy:
            i = idle.get((r["family"], "int8", r["threads"]))
            L.append(f"| {r['family']} | {r['threads']} | {r['ms_per_token']:.1f} | "
                     + (f"{i['ms_per_token']:.1f} | {r['ms_per_token'] / i['ms_per_token']:.2f} |" if i else "- | - |"))
    L += ["", "Physical limit: every weight is read once per token. Measured read bandwidth (STREAM-like sum, same thread pool): " +
          ", ".join(f"{t['read_gbps']:.1f} GB/s at {t['threads']} thread(s)" for t in k.get("at_threads", [])) +
          ". The decode GEMMs alone (bench_kernels, Llama_520M, CFG pair): " +
          "; ".join(f"{t['threads']} thread(s): " + ", ".join(f"{f} {t[f]['per_token_ms']:.0f} ms ({100 * t[f]['of_read_bandwidth']:.0f} % of the bandwidth)"
                                                        for f in ("f32", "bf16", "int8")) for t in k.get("at_threads", [])) + ".", "",
          "## Accuracy of the quantised weights against float32", "",
          "On the float32 model's sampled trajectory (the quantised model forced onto it); greedy: free-running decodes of both.", "",
          "| model | precision | steps | logits rel-L2 mean / max | argmax agreement | candidate-set Jaccard | greedy: first different token |",
          "|---|---|---:|---:|---:|---:|---:|"]
    for r in res["accuracy"]:
        if "error" in r:
            continue
        L.append(f"| {r['family']} | {r['precision']} | {r['steps_compared']} | {r['logits_rel_l2_mean']:.4f} / {r['logits_rel_l2_max']:.4f} | "
                 f"{100 * r['argmax_agreement']:.0f} % | {r['candidate_set_jaccard_mean']:.3f} | step {r['greedy_first_difference']} of {r['greedy_steps']} |")
    L += ["", "## Text to 24 kHz audio (libraries, 2 threads)", "",
          "T3 -> S3Gen flow (original: 10 steps with CFG; Turbo/Nano: 2-step mean flow) -> Vocos (S3Gen layout, dim 512, 8 layers).", "",
          "| model | T3 precision | tokens | audio | T3 prefill | T3 ms/token | flow | vocoder | total | real-time factor | time to first audio | peak RSS |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["e2e"]:
        if "error" in r:
            continue
        L.append(f"| {r['family']} | {r['precision']} | {r['tokens']} | {r['audio_s']:.1f} s | {r['t3_prefill_ms']:.0f} ms | {r['t3_ms_per_token']:.1f} | "
                 f"{r['flow_ms']:.0f} ms | {r['vocoder_ms']:.0f} ms | {r['total_ms']:.0f} ms | {r['rtf']:.2f} | {r['time_to_first_audio_ms']:.0f} ms | "
                 f"{r['peak_rss_kb'] / 1024:.0f} MiB |")
    if res.get("reference"):
        L += ["", "## Against upstream's T3 loop in PyTorch (same checkpoint, same run, 2 threads)", "",
              "Upstream `T3.inference` (original, CFG pair) / `T3.inference_turbo` (Turbo, Nano) from resemble-ai/chatterbox 5de7a54, "
              "run by `bench/reference_t3.py` on Debian's torch " + str(res["reference"][0].get("upstream", {}).get("torch", "?")) +
              " with transformers and einops restated in `bench/refshim` (not packaged for Debian). "
              "Weights: upstream's T3 with torch's default initialisation, saved and loaded by both. "
              "Ratio = upstream ms / ours ms (above 1: we are faster).", "",
              "| model | tokens | upstream ms / token | upstream prefill | ours f32 ms / token | ratio | ours int8 ms / token | ratio | ours f32 prefill |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["reference"]:
            u, f32, i8 = r.get("upstream", {}), r.get("f32", {}), r.get("int8", {})
            if any("error" in x or x.get("ms_per_token") is None for x in (u, f32, i8)):
                L.append(f"| {r['family']} | {r['tokens']} | error: see t3.json | | | | | | |")
                continue
            L.append(f"| {r['family']} | {r['tokens']} | {u['ms_per_token']:.1f} | {u['prefill_ms'][0]:.0f} ms | {f32['ms_per_token']:.1f} | "
                     f"{u['ms_per_token'] / f32['ms_per_token']:.2f}x | {i8['ms_per_token']:.1f} | {u['ms_per_token'] / i8['ms_per_token']:.2f}x | "
                     f"{f32['prefill_ms'][0]:.0f} ms |")
    with open(path, "w") as fh:
        fh.write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
