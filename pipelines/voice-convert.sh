#!/usr/bin/env bash
# Voice conversion (upstream's vc.py): the words of SRC spoken in TARGET's voice.
#   pipelines/voice-convert.sh SRC TARGET OUT.wav
#   pipelines/voice-convert.sh SRC - OUT.wav      (TARGET: the model directory's conds.pt, as vc.py)
# SRC and TARGET: anything decodebin / libsndfile read, at any rate and channel
# count (SRC is converted to 16 kHz mono for the tokenizer; TARGET as
# prepare_conditionals loads it). MODEL_DIR: $CHATTERBOX_MODEL_DIR, holding
# Chatterbox's s3gen.safetensors (its tokenizer, speaker encoder and flow) and
# conds.pt. Vocoder: VOCODER=vocos|hift (default: chatterboxvocoder's rule),
# VOCOS_MODEL, HIFT_MODEL (default: s3gen.safetensors's HiFT).
# S3TOK_PROPS / S3GEN_PROPS add element properties (e.g. chunk-tokens=25).
set -euo pipefail
source "$(dirname "$0")/common.sh"
usage='usage: voice-convert.sh SRC TARGET|- OUT.wav  (CHATTERBOX_MODEL_DIR=dir holding s3gen.safetensors)'
src="${1:?$usage}"
target="${2:?$usage}"
out="${3:?$usage}"
dir="${CHATTERBOX_MODEL_DIR:?$usage}"
s3gen="$dir/s3gen.safetensors"
[ -f "$s3gen" ] || { echo "voice-convert.sh: $dir has no s3gen.safetensors" >&2; exit 2; }
[ -f "$src" ] || { echo "voice-convert.sh: cannot read the source '$src'" >&2; exit 2; }
if [ "$target" = "-" ]; then
  target="$dir/conds.pt"
  [ -f "$target" ] || { echo "voice-convert.sh: no TARGET given and $dir has no conds.pt" >&2; exit 2; }
fi
vocoder_props="vocos-model=${VOCOS_MODEL:-$(default_vocos_model)} hift-model=${HIFT_MODEL:-$s3gen}"
[ -n "${VOCODER:-}" ] && vocoder_props="vocoder=$VOCODER $vocoder_props"
# shellcheck disable=SC2086
gst-launch-1.0 -q \
  filesrc location="$src" ! decodebin ! audioconvert ! audioresample ! \
  s3tokenizer model="$s3gen" ${S3TOK_PROPS:-} ! \
  s3genmel model="$s3gen" voice="$target" ${S3GEN_PROPS:-} ! \
  chatterboxvocoder $vocoder_props ! \
  audioconvert ! audio/x-raw,format=S16LE ! wavenc ! filesink location="$out"
