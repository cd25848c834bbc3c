#!/usr/bin/env bash
# Vocoder quality report: one command.
#
#   bench/quality/report.sh [--voice-files N] [--other-files N] [--hift S3GEN.safetensors]
#                           [--build DIR] [--work DIR] [--results DIR] [--jobs N]
#
# Installs what it needs with apt when run as root (espeak-ng, flite, sox,
# GStreamer's base/good plugins, gstreamer1.0-pocketsphinx + pocketsphinx-en-us,
# python3-numpy, python3-matplotlib), builds chatterbox-quality,
# chatterbox-griffinlim and the plugin (meson build dir, default build-quality/),
# then:
#  1. makes held-out speech with scripts/make-corpus.sh from the 20 held-out
#     sentences of scripts/corpus_sentences.txt (the same files as the
#     training corpus's heldout/: deterministic, never trained on); uses the
#     held-out voice (flite awb) for --voice-files sentences (default 20) and
#     four training voices (flite slt, rms, kal16; espeak en-us+m1) for
#     --other-files held-out sentences each (default 5);
#  2. re-synthesises every file from its S3Gen mel three ways:
#       vocos:      melspec ! vocosdec (the default model,
#                   models/vocos-s3gen-small.safetensors)
#       griffinlim: the same mel, Griffin-Lim, 32 iterations (the floor)
#       hift:       melspec ! hiftdec model=S3GEN, only with --hift: no trained
#                   HiFT weights ship here (the suite's HiFT files are tiny
#                   random-weight fixtures, whose output is noise, not quality);
#  3. compares each with the original: chatterbox-quality --json (STOI,
#     log-mel L1, MCD, MR-STFT, spectral similarity, SNR, SI-SNR);
#  4. recognises the original and every re-synthesis with pocketsphinx (en-us)
#     and scores the word error rate against the known sentence;
#  5. bench/quality/report.py writes RESULTS/report.md (tables: mean, std,
#     min-max), RESULTS/report.json (every number, the machine, the load) and
#     RESULTS/spectrograms-*.png (original | vocos | Griffin-Lim [| HiFT]).
# Default (40 files): about 10 minutes on a busy 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=build-quality
WORK=${TMPDIR:-/tmp}/chatterbox-quality-report
RESULTS=$ROOT/bench/quality/results
VOICE_FILES=20
OTHER_FILES=5
OTHER_VOICES=(fl-slt fl-rms fl-kal16 es-enus-m1)
HIFT=""
JOBS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --voice-files) VOICE_FILES=$2; shift ;;
    --other-files) OTHER_FILES=$2; shift ;;
    --hift) HIFT=$(realpath "$2"); shift ;;
    --build) BUILD=$2; shift ;;
    --work) WORK=$2; shift ;;
    --results) RESULTS=$(realpath -m "$2"); shift ;;
    --jobs) JOBS=$2; shift ;;
    -h|--help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "report.sh: unknown option $1 (--help lists them)" >&2; exit 2 ;;
  esac
  shift
done
(( VOICE_FILES >= 1 && VOICE_FILES <= 20 && OTHER_FILES >= 0 && OTHER_FILES <= 20 )) ||
  { echo "report.sh: --voice-files must be 1..20 and --other-files 0..20 (there are 20 held-out sentences)" >&2; exit 2; }
[ -z "$HIFT" ] || [ -r "$HIFT" ] || { echo "report.sh: cannot read --hift $HIFT" >&2; exit 2; }

# --- tools ---------------------------------------------------------------------
packages=(espeak-ng flite sox gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
          gstreamer1.0-pocketsphinx pocketsphinx-en-us python3-numpy python3-matplotlib)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "report.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    (apt-get install -y -q --no-install-recommends "${missing[@]}" ||
      { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; }) >&2
  else
    echo "report.sh: missing ${missing[*]}; as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" -Dbuildtype=release >&2
fi
ninja -C "$BUILD" -j"$JOBS" bench/quality/chatterbox-quality bench/quality/chatterbox-griffinlim \
  gst-plugins/libgstchatterbox.so >&2
QUALITY=$ROOT/$BUILD/bench/quality/chatterbox-quality
GRIFFINLIM=$ROOT/$BUILD/bench/quality/chatterbox-griffinlim
export GST_PLUGIN_PATH="$ROOT/$BUILD/gst-plugins${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export GST_REGISTRY="$ROOT/$BUILD/bench/quality/gst-registry.bin"
export OMP_WAIT_POLICY=PASSIVE   # spinning OpenMP threads starve each other on a shared machine
gst-inspect-1.0 vocosdec >/dev/null || { echo "report.sh: the chatterbox plugin does not load" >&2; exit 1; }

START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 1. held-out speech ----------------------------------------------------------
# make-corpus.sh holds out the last HELDOUT_SENTENCES lines for every voice:
# a one-line head (never used) plus the 20 held-out sentences gives exactly
# the corpus's held-out files, numbered 001..020 here.
mkdir -p "$WORK"/{vocos,griffinlim,hift,metrics,asr}
SENT=$WORK/sentences.txt
{ echo "This line only fills the training slot and is never used."
  grep -v '^[[:space:]]*$' scripts/corpus_sentences.txt | tail -n 20; } > "$SENT"
HELDOUT_SENTENCES=20 scripts/make-corpus.sh "$WORK/corpus" "$SENT" 2> "$WORK/make-corpus.log" ||
  { cat "$WORK/make-corpus.log" >&2; exit 1; }
mapfile -t LINES < "$SENT"

MANIFEST=$WORK/manifest.tsv
: > "$MANIFEST"
add() {  # set voice index
  local id; id=$2-$(printf '%03d' "$3")
  [ -s "$WORK/corpus/heldout/$id.wav" ] || { echo "report.sh: $WORK/corpus/heldout/$id.wav is missing" >&2; exit 1; }
  printf '%s\t%s\t%s\t%s\n' "$id" "$1" "$2" "${LINES[$3]}" >> "$MANIFEST"
}
for (( i = 1; i <= VOICE_FILES; i++ )); do add heldout-voice fl-awb "$i"; done
for v in "${OTHER_VOICES[@]}"; do
  for (( i = 1; i <= OTHER_FILES; i++ )); do add heldout-sentences "$v" "$i"; done
done
SYSTEMS=(vocos griffinlim)
[ -n "$HIFT" ] && SYSTEMS+=(hift)
echo "report.sh: $(wc -l < "$MANIFEST") files, systems: ${SYSTEMS[*]}" >&2

# --- 2-4. re-synthesis, metrics, recognition -----------------------------------------
recognise() {  # wav out.txt
  gst-launch-1.0 -q filesrc location="$1" ! wavparse ! audioconvert ! audioresample ! \
    audio/x-raw,format=S16LE,rate=16000,channels=1 ! pocketsphinx ! filesink location="$2" >/dev/null 2>&1 ||
    { echo "report.sh: pocketsphinx failed on $1" >&2; exit 1; }
}
vocode() {  # element-with-properties in.wav out.wav
  # shellcheck disable=SC2086
  gst-launch-1.0 -q filesrc location="$2" ! wavparse ! audioconvert ! audioresample ! melspec ! $1 ! \
    audioconvert ! wavenc ! filesink location="$3" > "$WORK/gst.log" 2>&1 ||
    { cat "$WORK/gst.log" >&2; echo "report.sh: $1 failed on $2" >&2; exit 1; }
}
n=0
while IFS=$'\t' read -r id set voice sentence; do
  orig=$WORK/corpus/heldout/$id.wav
  t0=$(date +%s.%N)
  vocode vocosdec "$orig" "$WORK/vocos/$id.wav"
  t1=$(date +%s.%N)
  "$GRIFFINLIM" --iterations 32 "$orig" "$WORK/griffinlim/$id.wav"
  t2=$(date +%s.%N)
  [ -z "$HIFT" ] || vocode "hiftdec model=$HIFT" "$orig" "$WORK/hift/$id.wav"
  for s in "${SYSTEMS[@]}"; do
    "$QUALITY" --json "$orig" "$WORK/$s/$id.wav" > "$WORK/metrics/$id.$s.json"
  done
  recognise "$orig" "$WORK/asr/$id.original.txt"
  for s in "${SYSTEMS[@]}"; do recognise "$WORK/$s/$id.wav" "$WORK/asr/$id.$s.txt"; done
  awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "{\"vocos_s\": %.3f, \"griffinlim_s\": %.3f}\n", b - a, c - b }' \
    > "$WORK/metrics/$id.time.json"
  n=$((n + 1))
  echo "report.sh: $n/$(wc -l < "$MANIFEST") $id ($(( $(date +%s) - START )) s)" >&2
done < "$MANIFEST"

# --- 5. tables and images ------------------------------------------------------------
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
exec /usr/bin/python3 "$ROOT/bench/quality/report.py" --work "$WORK" --results "$RESULTS" \
  --systems "${SYSTEMS[*]}" --machine "$CPU, $(nproc) cores" --load-start "$LOAD_START" --load-end "$LOAD_END" \
  --seconds $(( $(date +%s) - START )) ${HIFT:+--hift "$HIFT"}
