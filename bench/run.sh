#!/usr/bin/env bash
# gst-chatterbox vocoder benchmark: one command.
#
#   bench/run.sh [--quick] [--no-reference] [--build DIR] [--jobs N]
#
# Builds what it needs (meson build dir, default build-bench/: the bench
# programs bench_api / bench_element and the GStreamer plugin), installs the
# missing Debian tools with apt when run as root (gnuplot-nox for the plots,
# python3-torch for the PyTorch reference), then runs the whole benchmark and
# writes bench/results/bench.md (tables), bench/results/bench.json (every
# number, the machine, the load average of every step) and
# bench/results/*.png.
#
# What it measures (full-size models, seeded random weights):
#   Vocos in the S3Gen layout (80 mels, hop 480, dim 512, 8 layers, 1536),
#   Vocos in the charactr layout (100 mels, hop 256), HiFT as Chatterbox
#   builds it (base 512); inputs of 1, 10 and 60 s; 1 and 2 threads:
#   - times real-time through the model API (median, min-max over repeats)
#     and through the element (appsrc ! vocosdec/hiftdec ! appsink), the
#     Vocos/HiFT ratio, peak RSS of a process running each model;
#   - streamed-vs-whole error (rel-L2, max abs) at lookahead 0,1,2,4,8,default;
#   - first-audio latency of a live pipeline at those lookaheads;
#   - our time / PyTorch reference time (bench/reference_*.py on Debian's
#     python3-torch 1.13, /usr/bin/python3);
#   - CUDA when the library has it and a GPU is visible (else noted as skipped).
# Then the cost per audio second against buffer size through the elements
# (bench/run_buffers.py -> bench/results/buffers.{json,md}: 1/10/50/whole
# frames, 1 and 2 threads, per chunk-frames mode, with the other core busy).
# Then T3 and text-to-audio (bench/run_t3.py -> bench/results/t3.{json,md}):
#   original (Llama 0.5B), Turbo (GPT-2 medium) and Nano (GPT-2 small) T3
#   decode per precision and thread count, accuracy of bf16/int8, text ->
#   audio per family, and upstream's T3 loop in PyTorch on the same
#   checkpoint as a ratio (--no-t3 skips this part; --t3-only runs only it).
# Default run: ~35 min on a quiet 2-core machine (vocoders ~6, buffers ~7, T3 ~22);
# --quick: a few minutes (1 and 10 s,
# fewer repeats). OMP_WAIT_POLICY=PASSIVE for every child unless --omp-active.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=build-bench
JOBS=1
T3=yes
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick|--no-reference|--omp-active) ARGS+=("$1") ;;
    --no-t3) T3=no ;;
    --t3-only) T3=only ;;
    --build) BUILD=$2; shift ;;
    --jobs) JOBS=$2; shift ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# Tools from Debian, when missing (apt needs root; otherwise say what to install).
need=()
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
/usr/bin/python3 -c 'import torch' 2>/dev/null || need+=(python3-torch)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${need[*]}" >&2
    (apt-get install -y "${need[@]}" || { apt-get update && apt-get install -y "${need[@]}"; }) >&2 \
      || echo "apt-get install ${need[*]} failed: continuing without (noted in the results)" >&2
  else
    echo "missing ${need[*]} (not root: apt-get install ${need[*]}); continuing without" >&2
  fi
fi

# Build only what the benchmark runs.
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" -Dbench=true -Dbuildtype=release >&2
fi
targets=(bench/bench_api bench/bench_t3 bench/bench_kernels)
if grep -q 'bench/bench_element:' "$BUILD/build.ninja"; then
  targets+=(bench/bench_element gst-plugins/libgstchatterbox.so)
fi
ninja -C "$BUILD" -j"$JOBS" "${targets[@]}" >&2

export GST_PLUGIN_PATH="$ROOT/$BUILD/gst-plugins${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export GST_REGISTRY="$ROOT/$BUILD/bench/gst-registry.bin"  # no stale registry from elsewhere
if [ "$T3" != only ]; then
  /usr/bin/python3 "$ROOT/bench/run_bench.py" --build "$ROOT/$BUILD" --results "$ROOT/bench/results" "${ARGS[@]}"
  /usr/bin/python3 "$ROOT/bench/run_buffers.py" --build "$ROOT/$BUILD"
fi
if [ "$T3" != no ]; then
  quick=()
  [[ " ${ARGS[*]-} " == *" --quick "* ]] && quick=(--quick)
  /usr/bin/python3 "$ROOT/bench/run_t3.py" --build "$ROOT/$BUILD" "${quick[@]}"
fi
