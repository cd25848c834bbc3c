#!/usr/bin/env bash
# Text to speech with Chatterbox's own weights:
#   pipelines/tts.sh MODEL_DIR OUT.wav "Text to say."
# MODEL_DIR holds t3_cfg.safetensors, s3gen.safetensors, tokenizer.json and
# conds.pt (ResembleAI/chatterbox), optionally vocos.safetensors (a Vocos for
# S3Gen mels). Vocoder: CHATTERBOX_USE_VOCOS=0 for HiFT. Extra bin properties
# (e.g. "hift-model=... vocoder=hift") come from $TTS_PROPS.
set -euo pipefail
source "$(dirname "$0")/common.sh"
dir="${1:?usage: tts.sh MODEL_DIR OUT.wav \"text\"}"
out="${2:?usage: tts.sh MODEL_DIR OUT.wav \"text\"}"
text="${3:?usage: tts.sh MODEL_DIR OUT.wav \"text\"}"
# shellcheck disable=SC2086
printf '%s' "$text" | gst-launch-1.0 -q \
  fdsrc ! text/x-raw,format=utf8 ! chatterboxtts model-dir="$dir" ${TTS_PROPS:-} ! \
  audioconvert ! audio/x-raw,format=S16LE ! wavenc ! filesink location="$out"
