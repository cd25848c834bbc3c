#!/usr/bin/python3
"""HiFT: ours against the PyTorch reference, interleaved on the same machine.

  bench/hift_vs_reference.py --build DIR [--rounds 5] [--threads 1,2] [--seconds 10] [--chunk 10]

On a machine shared with other jobs, separate runs of ours and of the
reference see different loads; this alternates them in one run. Each round
runs, per thread count, one child process of ours (bench_api speed: one
warm-up, one whole-utterance forward(), one streaming pass of feed() in
--chunk-frame buffers + drain()) and one of the reference
(bench/reference_hift.py: one warm-up, one timed call), their order swapped
every round. Reported: medians and min-max over the rounds, the ratio of the
medians, the median of the per-round ratios (the two calls of a round run
seconds apart, under nearly the same load), and the load average before
every call. First it checks that both compute the same thing (our weights
and mel through the reference, compared with our audio); last, the
streamed-vs-whole error of ours at each lookahead (bench_api error).

Writes bench/results/hift_vs_reference.{json,md}. Standard library only;
run with Debian's /usr/bin/python3 (torch 1.13 for the reference)."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def child(argv, threads):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    p = subprocess.run(argv, env=env, cwd=HERE, capture_output=True, text=True, timeout=1800)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        sys.exit(f"failed: {' '.join(argv)}\n{p.stderr[-2000:]}")
    return json.loads(lines[-1])


def spread(v):
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, help="meson build dir holding bench/bench_api")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--chunk", type=int, default=10)
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    a = ap.parse_args()
    api = os.path.join(os.path.abspath(a.build), "bench", "bench_api")
    models = os.path.join(os.path.abspath(a.build), "bench", "models")
    os.makedirs(models, exist_ok=True)
    weights = os.path.join(models, "hift.safetensors")
    if not os.path.exists(weights):
        child([api, "models", "--dir", models], 1)
    # Same computation on both sides (deterministic source draws).
    dump = os.path.join(models, "hift.dump.safetensors")
    child([api, "dump", "--model", "hift", "--dir", models, "--seconds", "2", "--out", dump, "--threads", "1"], 1)
    check = child([PY, os.path.join(HERE, "reference_hift.py"), "--weights", weights, "--check", dump,
                   "--threads", "1"], 1)
    res = {"seconds": a.seconds, "chunk": a.chunk, "rounds": a.rounds, "check": check,
           "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": []}
    threads = [int(t) for t in a.threads.split(",")]
    runs = {t: {"ours_whole": [], "ours_stream": [], "ref": [], "load": []} for t in threads}
    for r in range(a.rounds):
        for t in threads:
            ours_argv = [api, "speed", "--model", "hift", "--dir", models, "--seconds", str(a.seconds), "--threads",
                         str(t), "--reps", "1", "--warmup", "1", "--stream-reps", "1", "--stream-chunk", str(a.chunk)]
            ref_argv = [PY, os.path.join(HERE, "reference_hift.py"), "--seconds", str(a.seconds), "--threads", str(t),
                        "--reps", "1", "--warmup", "1"]
            order = [("ours", ours_argv), ("ref", ref_argv)]
            if r % 2:
                order.reverse()
            R = runs[t]
            for who, argv in order:
                R["load"].append(loadavg())
                o = child(argv, t)
                if who == "ours":
                    R["ours_whole"].append(o["whole_ms"][0])
                    R["ours_stream"].append(o["stream_ms"][0])
                    R.setdefault("ours_rss_kb", []).append(o["peak_rss_kb"])
                else:
                    R["ref"].append(o["ms"][0])
                    R.setdefault("ref_rss_kb", []).append(o["peak_rss_kb"])
            print(f"round {r} threads {t}: ours whole {R['ours_whole'][-1]:.0f} ms, stream {R['ours_stream'][-1]:.0f} "
                  f"ms; reference {R['ref'][-1]:.0f} ms; load {R['load'][-2]:.2f}/{R['load'][-1]:.2f}",
                  file=sys.stderr, flush=True)
    res["error"] = [child([api, "error", "--model", "hift", "--dir", models, "--seconds", "3", "--chunk", str(c),
                           "--threads", "1", "--lookaheads", "0,1,2,4,8,-1"], 1) for c in (a.chunk, 1)]
    for t in threads:
        R = runs[t]
        row = {"threads": t, "ours_whole_ms": spread(R["ours_whole"]), "ours_stream_ms": spread(R["ours_stream"]),
               "ref_ms": spread(R["ref"]), "load": spread(R["load"]), "raw": R}
        row["ref_over_ours_whole"] = row["ref_ms"]["median"] / row["ours_whole_ms"]["median"]
        row["ref_over_ours_stream"] = row["ref_ms"]["median"] / row["ours_stream_ms"]["median"]
        row["paired_whole"] = spread([x / y for x, y in zip(R["ref"], R["ours_whole"])])
        row["paired_stream"] = spread([x / y for x, y in zip(R["ref"], R["ours_stream"])])
        res["rows"].append(row)
    os.makedirs(a.results, exist_ok=True)
    with open(os.path.join(a.results, "hift_vs_reference.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(a.results, "hift_vs_reference.md"), "w") as f:
        f.write(markdown(res))
    sys.stdout.write(markdown(res))


def markdown(res):
    s, c = res["seconds"], res["check"]
    out = [f"# HiFT: ours vs the PyTorch reference, interleaved ({res['date']})", "",
           f"{s:g} s of audio, Chatterbox's HiFT (base 512) with random weights, float32, CPU. {res['rounds']} rounds; "
           f"per round and thread count one process of ours (whole `forward()`, then `feed()` in {res['chunk']}-frame "
           f"buffers + `drain()`) and one of `bench/reference_hift.py`, order swapped every round, each after one "
           "warm-up call. Times: median (min-max) ms; x RT = audio seconds per wall second at the median.", "",
           f"Same computation: our weights and a 2 s mel through the reference give our audio to rel-L2 "
           f"{c['check_rel_l2']:.2e}, max abs {c['check_max_abs']:.2e}.", "",
           "| threads | ours whole | x RT | ours streamed | x RT | reference | x RT | reference / ours whole (paired) "
           "| reference / ours streamed (paired) | load avg |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        def cell(d):
            return f"{d['median']:.0f} ({d['min']:.0f}-{d['max']:.0f})"

        def ratio(d, med):
            return f"{med:.2f} ({d['median']:.2f}, {d['min']:.2f}-{d['max']:.2f})"
        out.append(f"| {r['threads']} | {cell(r['ours_whole_ms'])} | {1000 * s / r['ours_whole_ms']['median']:.2f} | "
                   f"{cell(r['ours_stream_ms'])} | {1000 * s / r['ours_stream_ms']['median']:.2f} | {cell(r['ref_ms'])} | "
                   f"{1000 * s / r['ref_ms']['median']:.2f} | {ratio(r['paired_whole'], r['ref_over_ours_whole'])} | "
                   f"{ratio(r['paired_stream'], r['ref_over_ours_stream'])} | "
                   f"{r['load']['median']:.1f} ({r['load']['min']:.1f}-{r['load']['max']:.1f}) |")
    out += ["", "Ratios > 1: ours faster. The paired column is the median (min-max) over rounds of the two calls of one "
            "round; the first number is the ratio of the medians. Peak RSS of a process (MiB, max over rounds): " +
            ", ".join(f"{r['threads']} thread(s) ours {max(r['raw']['ours_rss_kb']) / 1024:.0f}, reference "
                      f"{max(r['raw']['ref_rss_kb']) / 1024:.0f}" for r in res["rows"]) + ".", "",
            "Streamed vs whole (3 s, deterministic source; `lookahead` in frames, default = exact):", "",
            "| chunk (frames) | lookahead | rel-L2 | max abs |", "|---:|---:|---:|---:|"]
    for e in res["error"]:
        for row in e["rows"]:
            la = "default (%d)" % row["lookahead_frames"] if row["lookahead"] < 0 else str(row["lookahead"])
            out.append(f"| {e['chunk']} | {la} | {row['rel_l2']:.2e} | {row['max_abs']:.2e} |")
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main()
