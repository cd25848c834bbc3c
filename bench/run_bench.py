#!/usr/bin/python3
"""Driver of the benchmark (bench/run.sh calls it after building).

Runs every measurement in its own child process (peak memory per process;
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set to the thread count so that "N
threads" sizes both of LibTorch's pools), collects the JSON lines the
programs print, and writes bench/results/bench.json, bench.md and PNG plots
(gnuplot). Standard library only."""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ["vocos-s3gen", "vocos-24k", "hift"]
LOOKAHEADS = [0, 1, 2, 4, 8, -1]  # -1: the model's default (exact streaming)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gb": round(mem_kb / 1048576, 1),
            "kernel": platform.release(), "loadavg_start": loadavg(),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


class Runner:
    def __init__(self, build, results, omp_policy):
        self.build, self.results, self.omp_policy = build, results, omp_policy
        self.log = []  # every child call: argv, seconds, load average before/after

    def run(self, argv, threads=None, env_extra=None, cwd=None, timeout=1800):
        env = dict(os.environ)
        if self.omp_policy:
            env["OMP_WAIT_POLICY"] = self.omp_policy
        if threads:
            env["OPENBLAS_NUM_THREADS"] = str(threads)
            env["OMP_NUM_THREADS"] = str(threads)
        env.update(env_extra or {})
        la0 = loadavg()
        t0 = time.time()
        p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        dt = time.time() - t0
        entry = {"argv": argv[1:], "s": round(dt, 2), "load_before": la0, "load_after": loadavg(), "rc": p.returncode}
        self.log.append(entry)
        if p.returncode != 0:
            log("FAILED:", " ".join(argv), "\n", p.stderr[-3000:])
            return None
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        if not lines:
            log("no JSON from", " ".join(argv), p.stdout[-2000:], p.stderr[-2000:])
            return None
        out = json.loads(lines[-1])
        out["load_before"] = la0
        log(f"  {os.path.basename(argv[0])} {' '.join(argv[1:4])}... {dt:.1f}s load {la0[0]:.2f}")
        return out


def stats(ms, audio_s):
    """Times real-time (audio seconds per wall second) over the repeats."""
    if not ms:
        return None
    xrt = sorted(audio_s / (t / 1000.0) for t in ms)
    q = statistics.quantiles(xrt, n=4) if len(xrt) >= 4 else [xrt[0], statistics.median(xrt), xrt[-1]]
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms), "n": len(ms),
            "xrt_median": statistics.median(xrt), "xrt_min": xrt[0], "xrt_max": xrt[-1],
            "xrt_q1": q[0], "xrt_q3": q[-1]}


def plan(quick):
    """Repeats per input length: fewer for long inputs, fewer still in --quick."""
    if quick:
        return {"seconds": [1, 10], "reps": {1: 3, 10: 2}, "threads": [1, 2], "stream_s": 2, "stream_reps": 2,
                "elem_reps": 2, "err_s": 2, "lat_reps": 1, "lat_s": 1.0, "lat_lookaheads": [0, 2, -1],
                "ref_seconds": {"vocos": [1, 10], "hift": [1]}, "ref_reps": {1: 2, 10: 1, 60: 1},
                "flow": {"seconds": 2, "prompt_s": 2, "reps": 1, "stream_chunk": 25}}
    return {"seconds": [1, 10, 60], "reps": {1: 7, 10: 5, 60: 2}, "threads": [1, 2], "stream_s": 5, "stream_reps": 3,
            "elem_reps": 3, "err_s": 3, "lat_reps": 3, "lat_s": 1.5, "lat_lookaheads": LOOKAHEADS,
            "ref_seconds": {"vocos": [1, 10, 60], "hift": [1, 10]}, "ref_reps": {1: 5, 10: 3, 60: 1},
            "flow": {"seconds": 4, "prompt_s": 4, "reps": 2, "stream_chunk": 25}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--omp-active", action="store_true",
                    help="keep libgomp's default spin-waiting (OMP_WAIT_POLICY unset) instead of PASSIVE")
    a = ap.parse_args()
    os.makedirs(a.results, exist_ok=True)
    P = plan(a.quick)
    # libgomp's default (active) waiting spins idle OpenMP workers; on a busy
    # 2-core machine they steal the cores from the OpenBLAS threads and from
    # each other, which made 2-thread runs 3-8x slower than 1-thread ones.
    # PASSIVE (for every child, ours and the reference alike) unless
    # --omp-active; step 1b below shows the difference.
    omp_policy = None if a.omp_active else "PASSIVE"
    r = Runner(a.build, a.results, omp_policy)
    api = os.path.join(a.build, "bench", "bench_api")
    elem = os.path.join(a.build, "bench", "bench_element")
    models_dir = os.path.join(a.build, "bench", "models")
    os.makedirs(models_dir, exist_ok=True)
    t_start = time.time()
    res = {"machine": machine(), "quick": a.quick, "plan": P, "omp_wait_policy": omp_policy or "default (active)"}
    log("machine:", res["machine"])

    log("writing random-weight model files")
    res["models"] = r.run([api, "models", "--dir", models_dir])

    # 1. Model API speed (whole utterance) + peak memory; streaming at one length.
    log("model API speed")
    res["api"] = []
    for m in MODELS:
        for s in P["seconds"]:
            for th in P["threads"]:
                argv = [api, "speed", "--model", m, "--dir", models_dir, "--seconds", str(s), "--threads", str(th),
                        "--reps", str(P["reps"][s]), "--warmup", "1",
                        "--stream-reps", "0"]
                o = r.run(argv, threads=th)
                if o:
                    o["whole"] = stats(o["whole_ms"], o["audio_s"])
                    o["stream"] = stats(o["stream_ms"], o["audio_s"])
                    res["api"].append(o)

    # 1a. The streaming path (feed() in 10-frame chunks + drain()) at the
    # element benchmark's input length: the element's call pattern without GStreamer.
    log("model API streaming")
    res["api_stream"] = []
    for m in MODELS:
        for th in P["threads"]:
            o = r.run([api, "speed", "--model", m, "--dir", models_dir, "--seconds", str(P["stream_s"]), "--threads",
                       str(th), "--reps", "3", "--warmup", "1", "--stream-reps", str(P["stream_reps"]),
                       "--stream-chunk", "10"], threads=th)
            if o:
                o["whole"] = stats(o["whole_ms"], o["audio_s"])
                o["stream"] = stats(o["stream_ms"], o["audio_s"])
                res["api_stream"].append(o)

    # 1b. libgomp wait policy at 2 threads: default (active spinning) vs PASSIVE.
    log("OpenMP wait policy at 2 threads")
    res["omp_policy"] = []
    for m in ["vocos-s3gen", "hift"]:
        for pol in ["ACTIVE", "PASSIVE"]:
            o = r.run([api, "speed", "--model", m, "--dir", models_dir, "--seconds", "1", "--threads", "2",
                       "--reps", "3", "--stream-reps", "0"], threads=2, env_extra={"OMP_WAIT_POLICY": pol})
            if o:
                o["policy"] = pol
                o["whole"] = stats(o["whole_ms"], o["audio_s"])
                res["omp_policy"].append(o)

    # 2. CUDA, when the library has it and a GPU is visible (else a note).
    o = r.run([api, "speed", "--model", "vocos-s3gen", "--dir", models_dir, "--seconds", "10", "--threads", "2",
               "--reps", "5", "--device", "cuda"], threads=2)
    res["cuda"] = o
    if o and "skipped" in o:
        log("CUDA skipped:", o["skipped"])

    # 3. Element throughput (same feed pattern as stream_ms: 10-frame buffers).
    res["element"] = []
    if os.path.exists(elem):
        log("element throughput")
        for m in MODELS:
            for th in P["threads"]:
                o = r.run([elem, "throughput", "--model", m, "--dir", models_dir, "--seconds", str(P["stream_s"]),
                           "--threads", str(th), "--reps", str(P["elem_reps"]), "--chunk", "10"], threads=th)
                if o:
                    o["stats"] = stats(o["element_ms"], o["audio_s"])
                    res["element"].append(o)
        # 4. First-audio latency of a live pipeline.
        log("element first-audio latency")
        res["latency"] = []
        for m in MODELS:
            o = r.run([elem, "latency", "--model", m, "--dir", models_dir, "--threads", "2",
                       "--lookaheads", ",".join(map(str, P["lat_lookaheads"])), "--reps", str(P["lat_reps"]),
                       "--seconds", str(P["lat_s"]), "--frames-per-buffer", "1"], threads=2)
            if o:
                res["latency"].append(o)
    else:
        res["element_skipped"] = "bench_element not built (no GStreamer app library?)"

    # 5. Chunked-vs-whole error against lookahead.
    log("streaming error vs lookahead")
    res["error"] = []
    for m in MODELS:
        o = r.run([api, "error", "--model", m, "--dir", models_dir, "--seconds", str(P["err_s"]), "--chunk", "10",
                   "--threads", "1", "--lookaheads", ",".join(map(str, LOOKAHEADS))], threads=1)
        if o:
            res["error"].append(o)

    # 5a. The S3Gen flow (tokens -> mel) at full size: standard (10 steps,
    # CFG) and mean flow (Turbo, 2 steps), whole and with upstream's
    # re-decode-everything streaming; bf16 against f32 weights.
    log("S3Gen flow")
    res["flow"] = []
    F = P["flow"]
    for meanflow, precision, stream in [(0, "f32", True), (1, "f32", True), (1, "bf16", False), (0, "bf16", False)]:
        o = r.run([api, "flow", "--seconds", str(F["seconds"]), "--prompt-seconds", str(F["prompt_s"]),
                   "--threads", "2", "--reps", str(F["reps"]), "--meanflow", str(meanflow), "--precision", precision,
                   "--stream-chunk", str(F["stream_chunk"] if stream else 0), "--stream-reps", "1"], threads=2,
                  timeout=3600)
        if o:
            o["whole"] = stats(o["whole_ms"], o["audio_s"])
            o["stream"] = stats(o["stream_ms"], o["audio_s"])
            res["flow"].append(o)

    # 6. The PyTorch reference (upstream's forward restated), same machine, same run.
    res["reference"] = []
    py = "/usr/bin/python3"
    have_torch = subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0
    if a.no_reference:
        res["reference_skipped"] = "--no-reference"
    elif not have_torch:
        res["reference_skipped"] = "python3-torch is not installed (apt install python3-torch failed?)"
        log(res["reference_skipped"])
    else:
        log("PyTorch reference")
        # Same model? Our weights and mel through the reference; compare audio.
        res["reference_check"] = []
        for m in MODELS:
            dump = os.path.join(models_dir, m + ".dump.safetensors")
            if r.run([api, "dump", "--model", m, "--dir", models_dir, "--seconds", "2", "--out", dump,
                      "--threads", "1"], threads=1):
                script = "reference_hift.py" if m == "hift" else "reference_vocos.py"
                extra = [] if m == "hift" else ["--layout", m.split("-")[1]]
                o = r.run([py, os.path.join(HERE, script), *extra, "--weights", os.path.join(models_dir, m + ".safetensors"),
                           "--check", dump, "--threads", "1"], threads=1, cwd=HERE)
                if o:
                    res["reference_check"].append(o)
        for m in MODELS:
            kind = "hift" if m == "hift" else "vocos"
            for s in P["ref_seconds"][kind]:
                for th in P["threads"]:
                    script = "reference_hift.py" if m == "hift" else "reference_vocos.py"
                    extra = [] if m == "hift" else ["--layout", m.split("-")[1]]
                    reps = P["ref_reps"][s]
                    o = r.run([py, os.path.join(HERE, script), *extra, "--seconds", str(s), "--threads", str(th),
                               "--reps", str(reps), "--warmup", "1" if s < 60 else "0"], threads=th, cwd=HERE)
                    if o:
                        o["threads"] = th
                        o["stats"] = stats(o["ms"], o["audio_s"])
                        res["reference"].append(o)

    res["machine"]["loadavg_end"] = loadavg()
    res["total_s"] = round(time.time() - t_start, 1)
    res["calls"] = r.log
    with open(os.path.join(a.results, "bench.json"), "w") as f:
        json.dump(res, f, indent=1)
    import report  # bench/report.py: markdown + plots from bench.json
    report.write_all(res, a.results)
    log(f"done in {res['total_s']} s: {a.results}/bench.md")


if __name__ == "__main__":
    main()
