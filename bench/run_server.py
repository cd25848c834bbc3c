#!/usr/bin/env python3
"""chatterbox-server load figures (bench/results/server.{json,md}) on the tiny
fixture model (greedy T3, HiFT; plumbing-size weights: the figures measure the
service, not the model):
  1. below capacity: 1 instance, --workers 2 --queue 8, 2 clients, 20 s: throughput,
     P50/P99 time to first byte, errors (must be 0), RSS before/after;
  2. overload: 1 instance, --workers 1 --queue 1, 6 clients, 10 s: how many are
     refused with 503 (the rest must succeed);
  3. failover: 3 instances (--workers 1 --queue 4) behind nginx
     (server/nginx-chatterbox.conf), 4 clients, 15 s, one instance SIGKILLed at 5 s:
     requests lost.
  python3 bench/run_server.py BUILD_DIR FIXTURES [--out bench/results]"""
import json
import os
import platform
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build, fixtures = sys.argv[1], sys.argv[2]
out_dir = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else os.path.join(root, "bench", "results")
env = dict(os.environ)
env.setdefault("GST_REGISTRY", os.path.join(build, "tests", "registry.bin"))
env["GST_PLUGIN_SYSTEM_PATH_1_0"] = ""
env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # concurrent pipelines in one process: no spinning OpenMP workers
stock = subprocess.run(["pkg-config", "--variable=pluginsdir", "gstreamer-1.0"], capture_output=True, text=True).stdout.strip()
env["GST_PLUGIN_PATH_1_0"] = os.path.join(build, "gst-plugins") + ":" + stock
binary = os.path.join(build, "server", "chatterbox-server")
load = os.path.join(root, "tests", "server", "load.py")

runs = {
    # 2 workers x 1 thread: the two pipelines share the 2 cores without oversubscribing them.
    "below_capacity": (["--workers", "2", "--queue", "8", "--clients", "2", "--seconds", "20"], "1"),
    # RSS over a minute of steady load (is it flat?).
    "steady_60s": (["--workers", "2", "--queue", "8", "--clients", "2", "--seconds", "60"], "1"),
    # The same with glibc's malloc arenas capped: each pipeline's streaming
    # threads otherwise open arenas of their own, and RSS climbs with them.
    "steady_60s_arena2": (["--workers", "2", "--queue", "8", "--clients", "2", "--seconds", "60"], "1"),
    "overload": (["--workers", "1", "--queue", "1", "--clients", "6", "--seconds", "10"], "2"),
    "failover": (["--instances", "3", "--nginx", "--workers", "1", "--queue", "4", "--clients", "4",
                  "--seconds", "15", "--kill-at", "5"], "1"),
}
res = {"cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(),
       "loadavg_start": os.getloadavg()[0], "runs": {}}
for name, (args, threads) in runs.items():
    tmp = os.path.join("/tmp", f"cbx-bench-{name}.json")
    e = dict(env, OMP_NUM_THREADS=threads)
    if name.endswith("_arena2"):
        e["MALLOC_ARENA_MAX"] = "2"
    subprocess.run([sys.executable, "-W", "ignore", load, binary, fixtures, "--json", tmp] + args, env=e, check=True,
                   stdout=subprocess.DEVNULL)
    with open(tmp) as f:
        res["runs"][name] = json.load(f)
    res["runs"][name]["omp_threads"] = int(threads)
res["loadavg_end"] = os.getloadavg()[0]
os.makedirs(out_dir, exist_ok=True)
with open(os.path.join(out_dir, "server.json"), "w") as f:
    json.dump(res, f, indent=1)

b, o, fo = res["runs"]["below_capacity"], res["runs"]["overload"], res["runs"]["failover"]
L = ["# chatterbox-server under load", "",
     f"`python3 bench/run_server.py build {os.path.relpath(fixtures, root) if fixtures.startswith(root) else 'FIXTURES'}` "
     f"on {res['nproc']} shared cores (load average {res['loadavg_start']:.1f} at the start, "
     f"{res['loadavg_end']:.1f} at the end: other jobs ran beside it). Tiny fixture model (greedy, HiFT; "
     "0.6 s of audio a request; OMP_WAIT_POLICY=PASSIVE, OMP threads per run in server.json): these figures measure the service (queueing, streaming, failover), not the model.", "",
     "| run | setup | requests ok | errors | throughput (req/s) | audio s/s | TTFB P50 | TTFB P99 | RSS before → after (MB) |",
     "|---|---|---|---|---|---|---|---|---|"]
for name, r in res["runs"].items():
    setup = (f"{r['instances']} instance{'s' if r['instances'] > 1 else ''}{' + nginx' if r['nginx'] else ''}, "
             f"--workers {r['workers_per_instance']} --queue {r['queue_per_instance']}, {r['clients']} clients, "
             f"{r['seconds']:.0f} s")
    L.append(f"| {name} | {setup} | {r['ok']} | {r['errors']} ({', '.join(r['error_kinds']) or '-'}) | "
             f"{r['throughput_rps']:.2f} | {r['audio_seconds_per_second']:.2f} | {r['ttfb_p50_s']:.2f} s | "
             f"{r['ttfb_p99_s']:.2f} s | {', '.join(map(str, r['rss_before_mb']))} → {', '.join(map(str, r['rss_after_mb']))} |")
k = fo["kill"]
st = res["runs"]["steady_60s"]
series = ", ".join(f"{t:.0f} s: {m:.0f}" for t, m in st["rss_series_mb"])
st2 = res["runs"]["steady_60s_arena2"]
series2 = ", ".join(f"{t:.0f} s: {m:.0f}" for t, m in st2["rss_series_mb"])
L += ["", f"- Below capacity: {b['errors']} errors in {b['requests']} requests; over 60 s of steady load "
      f"{st['errors']} errors in {st['requests']}, RSS (MB) {series} ({st['rss_after_mb'][0]:.0f} at the end); "
      f"with MALLOC_ARENA_MAX=2 {st2['errors']} errors in {st2['requests']}, RSS (MB) {series2} "
      f"({st2['rss_after_mb'][0]:.0f} at the end).",
      f"- Overload: {o['status_counts'].get('503', 0)} of {o['requests']} requests refused with 503 + Retry-After "
      f"(1 worker + 1 queue slot, 6 clients); every admitted one completed ({o['ok']} ok).",
      f"- Failover: instance 3 SIGKILLed at {k['at_s']} s with {k['active']:.0f} request running and "
      f"{k['queued']:.0f} queued there: {k['lost']} lost; nginx resent the rest to the survivors "
      f"({k['ok_after_kill']} ok after the kill, {k['errors_after_kill_plus_1s']} errors from 1 s after it). "
      "A request is lost only if the dead instance had already started streaming its audio (nginx does not retry "
      "once bytes reached the client); one still synthesising or queued is retried (`proxy_next_upstream ... "
      "non_idempotent`).", ""]
with open(os.path.join(out_dir, "server.md"), "w") as f:
    f.write("\n".join(L))
print("\n".join(L))
