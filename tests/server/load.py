#!/usr/bin/env python3
"""Bounded load on chatterbox-server: N concurrent clients for M seconds, on
one instance or on several behind nginx (server/nginx-chatterbox.conf), with
optionally one instance killed (SIGKILL) mid-load.

  load.py SERVER_BINARY FIXTURES [--instances K] [--nginx] [--clients N]
          [--seconds M] [--kill-at S] [--workers W] [--queue Q] [--json OUT] [--check]

Each client loops: POST /v1/audio/speech (the tiny fixture model, greedy, pcm),
read the whole streamed body. A request counts as ok when it is a 200 with
the full audio (30 frames of 480 samples for the fixed sentence); anything
else (connection error, truncated stream, 5xx) is an error, or 'lost' when it
ends after the kill. Reports throughput, P50/P99 time to first byte, errors,
the instances' RSS before and after. --check makes the figures assertions
(the suite runs it so): no error without a kill; with a kill, at most the
requests the killed instance had streaming (its --workers) are lost, and the
survivors serve the rest."""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_util import SENTENCE, Server, make_model_dir, model_args, ttfb_request  # noqa: E402

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPECT_BYTES = 30 * 480 * 2


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_nginx(tmp, ports):
    """Our shipped config with this run's ports, as a non-root-friendly nginx
    (its own prefix, pid, logs and temp paths under tmp)."""
    with open(os.path.join(SOURCE_ROOT, "server", "nginx-chatterbox.conf")) as f:
        snippet = f.read()
    lines = [f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in ports]
    snippet = re.sub(r"(    server 127\.0\.0\.1:800\d [^\n]*\n)+", "\n".join(lines) + "\n", snippet)
    port = free_port()
    snippet = snippet.replace("listen 127.0.0.1:8000;", f"listen 127.0.0.1:{port};")
    for d in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"]:
        os.makedirs(os.path.join(tmp, d), exist_ok=True)
        os.chmod(os.path.join(tmp, d), 0o777)
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/logs/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{snippet}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    subprocess.run([nginx, "-p", tmp, "-c", conf, "-e", f"{tmp}/logs/error.log"], check=True)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return nginx, conf, port


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("fixtures")
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--nginx", action="store_true")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--kill-at", type=float, default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--queue", type=int, default=4)
    ap.add_argument("--json")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    if a.nginx and not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        print("nginx is not installed (Debian: nginx-light): skipped")
        return 77

    tmp = tempfile.mkdtemp(prefix="cbx-load-")
    servers, nginx = [], None
    try:
        model = make_model_dir(a.fixtures, os.path.join(tmp, "model"))
        voices = os.path.join(tmp, "voices")
        for i in range(a.instances):
            servers.append(Server(a.binary, model_args("tiny", model, a.fixtures) +
                                  ["--voices-dir", voices, "--workers", str(a.workers), "--queue", str(a.queue)],
                                  log=os.path.join(tmp, f"server{i}.log")))
        body = {"model": "tiny", "input": SENTENCE, "response_format": "pcm"}
        # Warm up every instance (model load), then measure.  (A 503 client backs off 0.5 s.)
        for s in servers:
            st, _, _, n = ttfb_request(s.port, body)
            assert st == 200 and n == EXPECT_BYTES, (st, n)
        rss_before = [s.rss() for s in servers]
        if a.nginx:
            nginx, conf, port = start_nginx(tmp, [s.port for s in servers])
        else:
            port = servers[0].port

        results = []  # (t_start, t_end, status, ttfb, ok)
        lock = threading.Lock()
        t0 = time.monotonic()
        stop_at = t0 + a.seconds

        def client():
            while time.monotonic() < stop_at:
                ts = time.monotonic()
                try:
                    st, ttfb, total, n = ttfb_request(port, body, timeout=60)
                    ok = st == 200 and n == EXPECT_BYTES
                except Exception as e:  # noqa: BLE001 (a refused/reset connection is a result here)
                    st, ttfb, ok = repr(e)[:60], None, False
                with lock:
                    results.append((ts - t0, time.monotonic() - t0, st, ttfb, ok))
                if st == 503:
                    time.sleep(0.5)  # as a client honouring Retry-After would (shortened to keep the run short)

        rss_series = []  # (s, MB) of the first instance, every 5 s

        def sample_rss():
            while time.monotonic() < stop_at:
                if servers[0].proc.poll() is None:
                    rss_series.append((round(time.monotonic() - t0, 1), round(servers[0].rss() / 2**20, 1)))
                time.sleep(5)

        threads = [threading.Thread(target=client) for _ in range(a.clients)] + [threading.Thread(target=sample_rss)]
        for t in threads:
            t.start()
        killed = None
        if a.kill_at is not None:
            time.sleep(a.kill_at)
            victim = servers[-1]
            m = victim.metrics()
            killed = {"at_s": round(time.monotonic() - t0, 2), "active": m["chatterbox_active_workers"],
                      "queued": m["chatterbox_queue_depth"]}
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        alive = [s for s in servers if s.proc.poll() is None]
        rss_after = [s.rss() for s in alive]

        ok = [r for r in results if r[4]]
        bad = [r for r in results if not r[4]]
        ttfbs = [r[3] for r in ok]
        out = {
            "instances": a.instances, "nginx": a.nginx, "clients": a.clients, "seconds": round(elapsed, 2),
            "workers_per_instance": a.workers, "queue_per_instance": a.queue,
            "requests": len(results), "ok": len(ok), "errors": len(bad),
            "throughput_rps": round(len(ok) / elapsed, 3),
            "audio_seconds_per_second": round(len(ok) * EXPECT_BYTES / 2 / 24000 / elapsed, 3),
            "ttfb_p50_s": round(percentile(ttfbs, 50), 4) if ttfbs else None,
            "ttfb_p99_s": round(percentile(ttfbs, 99), 4) if ttfbs else None,
            "rss_before_mb": [round(x / 2**20, 1) for x in rss_before],
            "rss_after_mb": [round(x / 2**20, 1) for x in rss_after],
            "rss_series_mb": rss_series,
            "error_kinds": sorted({str(r[2]) for r in bad}),
            "status_counts": {k: sum(1 for r in results if str(r[2]) == k) for k in sorted({str(r[2]) for r in results})},
        }
        if killed:
            after = [r for r in results if r[0] > killed["at_s"] + 1.0]
            out["kill"] = dict(killed, lost=len(bad), ok_after_kill=sum(1 for r in after if r[4]),
                               errors_after_kill_plus_1s=sum(1 for r in after if not r[4]))
        print(json.dumps(out, indent=1))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(out, f, indent=1)
        if a.check:
            assert out["ok"] > 0, out
            if killed is None:
                assert out["errors"] == 0, out
            else:
                # Only what the dead instance was streaming may be lost
                # (nginx resends the rest, queued ones included).
                assert out["errors"] <= a.workers, out
                assert out["kill"]["ok_after_kill"] > 0, out
                assert out["kill"]["errors_after_kill_plus_1s"] == 0, out
        return 0
    finally:
        if nginx:
            subprocess.run([nginx, "-p", tmp, "-c", conf, "-s", "stop"], capture_output=True)
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
