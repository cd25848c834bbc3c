#!/usr/bin/env bash
# Soak and model-sharing benchmark (not CI: it takes most of an hour).
#
#   bench/soak.sh [--build DIR] [--no-build] [--vocos-hours H] [--hift-hours H] [--every S] [--no-share] [--only-share]
#
# 1. Soak: H hours of speech (an espeak-ng paragraph at 24 kHz, looped; a new
#    utterance every 60 s of audio) through `appsrc ! melspec ! vocosdec` and
#    `appsrc ! melspec ! hiftdec`, each in its own process, as fast as the
#    pipeline runs, sampling the process's resident memory every S seconds of
#    audio (default 60). Full-size models with seeded random weights (Vocos in
#    the S3Gen layout: dim 512, 8 layers; HiFT as Chatterbox builds it), the
#    same files bench/run.sh writes.
# 2. Sharing: peak and current RSS of one process running 1 and 10
#    `melspec ! vocosdec` pipelines on the same model file, with the model
#    cache (default) and without it (CHATTERBOX_MODEL_CACHE=0: what every
#    element cost before the cache).
# Writes bench/results/soak-*.csv, soak-*.json, share-*.json, meta-soak.json,
# soak.md and soak.png (bench/soak.py report). The plugin and libchatterbox.so
# are copied aside first, so rebuilding DIR meanwhile does not change what is
# measured (--no-build: skip the ninja step). Defaults: 1 h each; on a busy
# 2-core machine the Vocos hour takes ~15-25 min, the HiFT hour longer (HiFT
# runs ~3x real time there): pass --hift-hours 0.25 and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export SOAK_COMMAND="bench/soak.sh $*"
BUILD=build-bench
VOCOS_H=1
HIFT_H=1
EVERY=60
SHARE=1
SOAK=1
NOBUILD=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift ;;
    --no-build) NOBUILD=1 ;;
    --vocos-hours) VOCOS_H=$2; shift ;;
    --hift-hours) HIFT_H=$2; shift ;;
    --every) EVERY=$2; shift ;;
    --no-share) SHARE=0 ;;
    --only-share) SOAK=0 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
RES=$ROOT/bench/results
mkdir -p "$RES"

if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" -Dbench=true -Dbuildtype=release >&2
fi
[ "$NOBUILD" = 1 ] || ninja -C "$BUILD" -j1 bench/bench_api gst-plugins/libgstchatterbox.so >&2
SNAP=$ROOT/$BUILD/bench/soak-snapshot
rm -rf "$SNAP" && mkdir -p "$SNAP"
cp "$BUILD/gst-plugins/libgstchatterbox.so" "$SNAP/"
cp -P "$BUILD"/libchatterbox.so "$BUILD"/libchatterbox.so.[0-9]* "$SNAP/" 2>/dev/null || cp "$BUILD/libchatterbox.so" "$SNAP/"
export GST_PLUGIN_PATH="$SNAP" GST_PLUGIN_SYSTEM_PATH_1_0=/usr/lib/x86_64-linux-gnu/gstreamer-1.0
export LD_LIBRARY_PATH="$SNAP${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"  # before the plugin's RUNPATH
export GST_REGISTRY="$SNAP/gst-registry.bin"
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

MODELS=$ROOT/$BUILD/bench/models
if [ ! -f "$MODELS/vocos-s3gen.safetensors" ] || [ ! -f "$MODELS/hift.safetensors" ]; then
  mkdir -p "$MODELS"
  "$BUILD/bench/bench_api" models --dir "$MODELS" >&2
fi

# Speech: an espeak-ng paragraph, resampled to 24 kHz mono float32.
SPEECH=$ROOT/$BUILD/bench/soak-speech.f32
if [ ! -s "$SPEECH" ]; then
  espeak-ng -w "$SPEECH.wav" "The quick brown fox jumps over the lazy dog. A long running media application \
keeps its pipelines alive for days, so every buffer must leave the memory where it found it. \
Numbers, names and questions: is it twenty past four in Reykjavik, or half past nine in Tokyo?"
  gst-launch-1.0 -q filesrc location="$SPEECH.wav" ! wavparse ! audioconvert ! audioresample ! \
    audio/x-raw,format=F32LE,rate=24000,channels=1 ! filesink location="$SPEECH"
  rm -f "$SPEECH.wav"
fi

# The build measured: HEAD, plus a note when the tree has uncommitted changes.
SOAK_COMMIT="$(git log -1 --format='%h %s' | cut -c1-72)"
git diff --quiet HEAD -- elements gst-plugins 2>/dev/null || SOAK_COMMIT="$SOAK_COMMIT (+ uncommitted changes)"
export SOAK_COMMIT
/usr/bin/python3 - "$RES/meta-soak.json" <<'EOF'
import json, os, platform, sys, time
cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
json.dump({"date": time.strftime("%Y-%m-%d %H:%M"),
           "machine": "%s, %d cores, %s" % (cpu[0] if cpu else "?", os.cpu_count(), platform.platform())},
          open(sys.argv[1], "w"))
EOF

if [ "$SOAK" = 1 ]; then
  for v in vocos hift; do
    hours=$VOCOS_H; model=$MODELS/vocos-s3gen.safetensors
    if [ "$v" = hift ]; then hours=$HIFT_H; model=$MODELS/hift.safetensors; fi
    [ "$hours" = 0 ] && continue
    echo "soak: $v, $hours h of audio" >&2
    /usr/bin/python3 bench/soak.py soak --vocoder $v --model "$model" --speech "$SPEECH" --hours "$hours" \
      --every "$EVERY" --out "$RES/soak-$v.csv" > "$RES/soak-$v.json"
    cat "$RES/soak-$v.json" >&2
  done
fi

if [ "$SHARE" = 1 ]; then
  for cache in 1 0; do
    for n in 1 10; do
      echo "share: $n pipelines, cache=$cache" >&2
      CHATTERBOX_MODEL_CACHE=$cache /usr/bin/python3 bench/soak.py share --model "$MODELS/vocos-s3gen.safetensors" \
        --speech "$SPEECH" --pipelines $n > "$RES/share-$n-cache$cache.json"
      cat "$RES/share-$n-cache$cache.json" >&2
    done
  done
fi

/usr/bin/python3 bench/soak.py report --results "$RES"
