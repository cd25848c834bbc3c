#!/usr/bin/python3
"""Soak and model-sharing measurements for bench/soak.sh (GStreamer through gi).

  soak.py soak  --vocoder vocos|hift --model M --speech S.f32 --hours H --out X.csv
      Pushes H hours of audio (the speech file looped, as fast as the
      pipeline takes it) through appsrc ! melspec ! <vocoder> ! appsink in this
      process, and every --every seconds of audio writes a CSV row: audio
      seconds in and out, wall seconds, resident memory (VmRSS) in MiB. A new
      utterance (DISCONT) starts every --utterance seconds of audio, so both
      the long-stream state and the per-utterance set-up / tear-down are
      exercised. Prints a JSON summary on stdout.

  soak.py report --results DIR
      Reads DIR/soak-*.json, soak-*.csv and share-*.json, writes DIR/soak.md
      (tables) and DIR/soak.png (resident memory over audio time).

  soak.py share --model M --speech S.f32 --pipelines N
      N pipelines appsrc ! melspec ! vocosdec model=M ! fakesink in one
      process, all PLAYING at once, 2 s of audio through each; prints peak
      (ru_maxrss) and current resident memory. Run once per N in a fresh
      process; CHATTERBOX_MODEL_CACHE=0 gives the unshared baseline.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
from gi.repository import Gst, GstApp  # noqa: E402

RATE = 24000
CAPS = "audio/x-raw,format=F32LE,rate=24000,channels=1,layout=interleaved"


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def run_info():
    # Which build was measured (soak.sh sets these).
    return {"commit": os.environ.get("SOAK_COMMIT", "?"), "command": os.environ.get("SOAK_COMMAND", "?"),
            "date": time.strftime("%Y-%m-%d %H:%M")}


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def vocoder_desc(kind, model):
    if kind == "vocos":
        return "vocosdec model=%s" % model
    return "hiftdec model=%s" % model


def check_bus(pipe):
    bus = pipe.get_bus()
    while True:
        m = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.WARNING)
        if not m:
            return
        if m.type == Gst.MessageType.ERROR:
            err, dbg = m.parse_error()
            raise RuntimeError("%s: %s (%s)" % (m.src.get_name(), err.message, dbg))
        err, dbg = m.parse_warning()
        print("warning: %s: %s" % (m.src.get_name(), err.message), file=sys.stderr)


def soak(a):
    speech = np.fromfile(a.speech, dtype=np.float32)
    if speech.size == 0:
        raise SystemExit("empty speech file " + a.speech)
    pipe = Gst.parse_launch(
        "appsrc name=src format=time block=true max-bytes=%d caps=%s ! melspec ! %s ! "
        "appsink name=out sync=false emit-signals=false max-buffers=0"
        % (RATE * 4, CAPS, vocoder_desc(a.vocoder, a.model)))
    src, sink = pipe.get_by_name("src"), pipe.get_by_name("out")
    out_samples = [0]

    def on_sample(s):
        smp = s.pull_sample()
        out_samples[0] += smp.get_buffer().get_size() // 4
        return Gst.FlowReturn.OK

    sink.set_property("emit-signals", True)
    sink.connect("new-sample", on_sample)
    pipe.set_state(Gst.State.PLAYING)

    total = int(a.hours * 3600 * RATE)
    chunk = int(a.chunk * RATE)
    every = int(a.every * RATE)
    utt = int(a.utterance * RATE)
    rows = []
    load0 = loadavg()
    t0 = time.monotonic()
    pushed, pos, next_row, next_utt = 0, 0, 0, 0
    with open(a.out, "w") as csv:
        csv.write("audio_in_s,audio_out_s,wall_s,rss_mib\n")
        while pushed < total:
            if pushed >= next_row:
                check_bus(pipe)
                row = (pushed / RATE, out_samples[0] / RATE, time.monotonic() - t0, rss_mib())
                rows.append(row)
                csv.write("%.1f,%.1f,%.2f,%.2f\n" % row)
                csv.flush()
                next_row += every
            n = min(chunk, total - pushed, speech.size - pos)
            buf = Gst.Buffer.new_wrapped(speech[pos:pos + n].tobytes())
            buf.pts = pushed * Gst.SECOND // RATE
            buf.duration = n * Gst.SECOND // RATE
            if pushed >= next_utt:
                buf.set_flags(Gst.BufferFlags.DISCONT)
                next_utt += utt
            if src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                check_bus(pipe)
                raise RuntimeError("push-buffer refused")
            pushed += n
            pos = (pos + n) % speech.size
        src.emit("end-of-stream")
        bus = pipe.get_bus()
        msg = bus.timed_pop_filtered(600 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
        if msg is None or msg.type == Gst.MessageType.ERROR:
            check_bus(pipe)
            raise RuntimeError("no EOS")
        row = (pushed / RATE, out_samples[0] / RATE, time.monotonic() - t0, rss_mib())
        rows.append(row)
        csv.write("%.1f,%.1f,%.2f,%.2f\n" % row)
    pipe.set_state(Gst.State.NULL)

    audio = np.array([r[0] for r in rows])
    rss = np.array([r[3] for r in rows])
    warm = audio >= a.warmup
    slope = float(np.polyfit(audio[warm] / 3600.0, rss[warm], 1)[0]) if warm.sum() >= 3 else float("nan")
    after = rss[np.argmax(warm)] if warm.any() else float("nan")
    summary = {
        "vocoder": a.vocoder, "model": os.path.basename(a.model), "audio_h": pushed / RATE / 3600.0,
        "audio_out_h": out_samples[0] / RATE / 3600.0, "wall_s": rows[-1][2],
        "x_realtime": (pushed / RATE) / rows[-1][2], "rss_start_mib": rss[0],
        "rss_after_warmup_mib": after, "warmup_audio_s": a.warmup, "rss_end_mib": rss[-1],
        "rss_max_mib": float(rss.max()), "slope_mib_per_audio_hour": slope, "peak_rss_mib": peak_mib(),
        "samples": len(rows), "csv": os.path.basename(a.out), "load_start": load0, "load_end": loadavg(),
        **run_info(),
    }
    print(json.dumps(summary))


def share(a):
    speech = np.fromfile(a.speech, dtype=np.float32)[: 2 * RATE]
    pipes = []
    base = rss_mib()
    for i in range(a.pipelines):
        p = Gst.parse_launch("appsrc name=src format=time caps=%s ! melspec ! vocosdec model=%s ! fakesink sync=false"
                             % (CAPS, a.model))
        p.set_state(Gst.State.PLAYING)
        pipes.append(p)
    for p in pipes:
        src = p.get_by_name("src")
        src.emit("push-buffer", Gst.Buffer.new_wrapped(speech.tobytes()))
        src.emit("end-of-stream")
    for p in pipes:
        msg = p.get_bus().timed_pop_filtered(300 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
        if msg is None or msg.type == Gst.MessageType.ERROR:
            check_bus(p)
            raise RuntimeError("no EOS")
    # All N still hold their models here (PLAYING, at EOS).
    now = rss_mib()
    for p in pipes:
        p.set_state(Gst.State.NULL)
    print(json.dumps({"pipelines": a.pipelines, "cache": os.environ.get("CHATTERBOX_MODEL_CACHE", "1") != "0",
                      "model": os.path.basename(a.model), "model_bytes": os.path.getsize(a.model),
                      "rss_before_mib": base, "rss_all_playing_mib": now, "peak_rss_mib": peak_mib(),
                      "load": loadavg(), **run_info()}))


def report(a):
    import glob
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    d = a.results
    soaks = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(d, "soak-*.json")))]
    shares = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(d, "share-*.json")))]
    meta = json.load(open(os.path.join(d, "meta-soak.json"))) if os.path.exists(os.path.join(d, "meta-soak.json")) else {}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for sm in soaks:
        rows = np.loadtxt(os.path.join(d, sm["csv"]), delimiter=",", skiprows=1, ndmin=2)
        ax.plot(rows[:, 0] / 60.0, rows[:, 3], label="%s (%s)" % (sm["vocoder"], sm["model"]))
    ax.set_xlabel("audio pushed (minutes)")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Soak: melspec ! vocoder, one process")
    fig.tight_layout()
    fig.savefig(os.path.join(d, "soak.png"), dpi=100)
    out = ["# Soak and model sharing (bench/soak.sh)", ""]
    for k in ("date", "machine"):
        if k in meta:
            out.append("- %s: %s" % (k, meta[k]))
    out.append("- OMP_WAIT_POLICY=PASSIVE, OMP_NUM_THREADS=2; full-size models with seeded random weights")
    runs = {}
    for x in soaks + shares:
        runs.setdefault((x.get("commit", "?"), x.get("command", "?")), []).append(x.get("vocoder", "sharing"))
    for (commit, command), what in runs.items():
        out.append("- %s: `%s`, build %s" % (", ".join(sorted(set(what))), command, commit))
    out += ["", "## Soak: resident memory over one process's lifetime", "",
            "| pipeline | audio | wall | x real time | load start / end | RSS start | RSS after warm-up | RSS end | max | slope after warm-up |",
            "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for sm in soaks:
        out.append("| melspec ! %s (%s) | %.2f h | %.0f s | %.1f | %s / %s | %.1f MiB | %.1f MiB (at %.0f s) | %.1f MiB | %.1f MiB | %+.2f MiB/h |" % (
            {"vocos": "vocosdec", "hift": "hiftdec"}[sm["vocoder"]], sm["model"], sm["audio_h"], sm["wall_s"],
            sm["x_realtime"], sm.get("load_start", "?").split()[0], sm.get("load_end", "?").split()[0],
            sm["rss_start_mib"], sm["rss_after_warmup_mib"], sm["warmup_audio_s"],
            sm["rss_end_mib"], sm["rss_max_mib"], sm["slope_mib_per_audio_hour"]))
    out += ["", "![RSS over audio time](soak.png)", ""]
    if shares:
        out += ["## Model sharing: N vocosdec pipelines on one model file, one process", "",
                "| pipelines | model cache | RSS with all playing | peak RSS | per extra pipeline |",
                "|---:|---|---:|---:|---:|"]
        one = {s_["cache"]: s_ for s_ in shares if s_["pipelines"] == 1}
        for sh in sorted(shares, key=lambda x: (not x["cache"], x["pipelines"])):
            base = one.get(sh["cache"])
            extra = ((sh["rss_all_playing_mib"] - base["rss_all_playing_mib"]) / (sh["pipelines"] - 1)
                     if base and sh["pipelines"] > 1 else float("nan"))
            out.append("| %d | %s | %.1f MiB | %.1f MiB | %s |" % (
                sh["pipelines"], "shared" if sh["cache"] else "off (CHATTERBOX_MODEL_CACHE=0: a copy each)",
                sh["rss_all_playing_mib"], sh["peak_rss_mib"], "%.1f MiB" % extra if extra == extra else "-"))
        out.append("")
        out.append("Model file: %s, %.1f MiB." % (shares[0]["model"], shares[0]["model_bytes"] / 2**20))
    open(os.path.join(d, "soak.md"), "w").write("\n".join(out) + "\n")
    print("\n".join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("soak")
    s.add_argument("--vocoder", choices=["vocos", "hift"], required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--speech", required=True, help="mono float32 24 kHz raw samples")
    s.add_argument("--hours", type=float, default=1.0)
    s.add_argument("--every", type=float, default=60.0, help="seconds of audio between RSS samples")
    s.add_argument("--utterance", type=float, default=60.0, help="seconds of audio per utterance (DISCONT)")
    s.add_argument("--chunk", type=float, default=0.1, help="seconds per input buffer")
    s.add_argument("--warmup", type=float, default=300.0, help="seconds of audio before the slope is fitted")
    s.add_argument("--out", required=True)
    h = sub.add_parser("share")
    h.add_argument("--model", required=True)
    h.add_argument("--speech", required=True)
    h.add_argument("--pipelines", type=int, default=10)
    r = sub.add_parser("report")
    r.add_argument("--results", required=True)
    a = ap.parse_args()
    if a.cmd == "report":
        return report(a)
    Gst.init(None)
    soak(a) if a.cmd == "soak" else share(a)


if __name__ == "__main__":
    main()
