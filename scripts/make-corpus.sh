#!/usr/bin/env bash
# Deterministic speech corpus for training a Vocos on S3Gen features, made
# only from Debian TTS voices (no download): espeak-ng voices/variants at a few
# speeds and the flite voices that are packaged. Every file is 24 kHz mono
# 16-bit PCM (sox, no dither), so vocos-train reads it as is.
#
#   scripts/make-corpus.sh OUT_DIR [SENTENCES_FILE]
#
# Layout:
#   OUT_DIR/train/<voice>-<NNN>.wav      training voices x training sentences
#   OUT_DIR/heldout/<voice>-<NNN>.wav    training voices x held-out sentences,
#                                        and the held-out voice x held-out sentences
#   OUT_DIR/train.list                   paths relative to OUT_DIR, sorted
#   OUT_DIR/heldout.list                 every held-out file
#   OUT_DIR/heldout-voice.list           the held-out voice only
#   OUT_DIR/voices.txt                   voices, engines and options used
#
# Held out: the last HELDOUT_SENTENCES sentences (default 20) for all voices,
# and the voice HELDOUT_VOICE (default flite awb when flite has it, else
# espeak en-gb-scotland) for everything.
#
# Same command -> same files: the synthesizers are deterministic, sox is told
# not to dither, and the order of work is fixed. Needs: espeak-ng, sox
# (apt install espeak-ng sox); flite optional (apt install flite).
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
  exit $([[ $# -lt 1 ]] && echo 2 || echo 0)
fi
OUT=$1
HERE=$(cd "$(dirname "$0")" && pwd)
SENTENCES=${2:-$HERE/corpus_sentences.txt}
HELDOUT_SENTENCES=${HELDOUT_SENTENCES:-20}

for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || { echo "make-corpus: '$tool' is missing (apt install $tool)" >&2; exit 1; }
done
[[ -r "$SENTENCES" ]] || { echo "make-corpus: cannot read sentences file '$SENTENCES'" >&2; exit 1; }
mapfile -t LINES < <(grep -v '^[[:space:]]*$' "$SENTENCES")
N=${#LINES[@]}
(( N > HELDOUT_SENTENCES )) || { echo "make-corpus: need more than $HELDOUT_SENTENCES sentences, got $N" >&2; exit 1; }
FIRST_HELDOUT=$(( N - HELDOUT_SENTENCES ))

# Voices: name|engine|options. espeak-ng options: voice+variant, speed (wpm),
# pitch (0-99). Different variants give different pitch ranges and timbres.
VOICES=(
  "es-enus-m1|espeak|-v en-us+m1 -s 150 -p 45"
  "es-enus-f2|espeak|-v en-us+f2 -s 165 -p 60"
  "es-engb-m3|espeak|-v en-gb+m3 -s 140 -p 40"
  "es-engb-f4|espeak|-v en-gb+f4 -s 175 -p 70"
  "es-enrp-m7|espeak|-v en-gb-x-rp+m7 -s 160 -p 30"
  "es-en029-f1|espeak|-v en-029+f1 -s 145 -p 55"
  "es-enscot-m2|espeak|-v en-gb-scotland+m2 -s 155 -p 50"
)
HAVE_FLITE=0
if command -v flite >/dev/null; then
  HAVE_FLITE=1
  FLITE_VOICES=$(flite -lv 2>/dev/null | tr ' ' '\n')
  for v in kal16 slt rms awb; do
    if grep -qx "$v" <<<"$FLITE_VOICES"; then VOICES+=("fl-$v|flite|$v"); fi
  done
else
  echo "make-corpus: flite not found; espeak-ng voices only (apt install flite for more natural voices)" >&2
fi
if [[ -z "${HELDOUT_VOICE:-}" ]]; then
  HELDOUT_VOICE=es-enscot-m2
  for v in "${VOICES[@]}"; do [[ ${v%%|*} == fl-awb ]] && HELDOUT_VOICE=fl-awb; done
fi

mkdir -p "$OUT/train" "$OUT/heldout"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

synth() {  # engine options text out.wav
  local engine=$1 opts=$2 text=$3 out=$4 raw=$TMP/raw.wav
  case $engine in
    espeak) # shellcheck disable=SC2086
            espeak-ng $opts -w "$raw" -- "$text" ;;
    flite)  flite -voice "$opts" -t "$text" -o "$raw" ;;
  esac
  # Trim leading/trailing silence below -50 dB, keep 0.15 s of it, peak-normalise
  # to -3 dBFS, resample to 24 kHz mono 16-bit without dither.
  sox -D -V1 "$raw" -r 24000 -c 1 -b 16 -e signed-integer "$out" \
    silence 1 0.02 -50d reverse silence 1 0.02 -50d reverse pad 0.15 0.15 gain -n -3 rate -v 24000
}

: > "$OUT/voices.txt"
for entry in "${VOICES[@]}"; do
  IFS='|' read -r name engine opts <<<"$entry"
  echo "$name $engine $opts$([[ $name == "$HELDOUT_VOICE" ]] && echo ' (held out)')" >> "$OUT/voices.txt"
  for (( i = 0; i < N; i++ )); do
    id=$(printf '%03d' "$i")
    if [[ $name == "$HELDOUT_VOICE" ]]; then
      (( i >= FIRST_HELDOUT )) || continue
      dest=heldout
    elif (( i >= FIRST_HELDOUT )); then
      dest=heldout
    else
      dest=train
    fi
    f="$OUT/$dest/$name-$id.wav"
    [[ -s "$f" ]] || synth "$engine" "$opts" "${LINES[$i]}" "$f"
  done
  echo "make-corpus: $name done" >&2
done

(cd "$OUT" && find train -name '*.wav' | LC_ALL=C sort > train.list)
(cd "$OUT" && find heldout -name '*.wav' | LC_ALL=C sort > heldout.list)
(cd "$OUT" && grep "/$HELDOUT_VOICE-" heldout.list > heldout-voice.list || true)
echo "make-corpus: $(wc -l < "$OUT/train.list") training files, $(wc -l < "$OUT/heldout.list") held out" \
     "(voice $HELDOUT_VOICE) in $OUT" >&2
