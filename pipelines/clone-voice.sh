#!/usr/bin/env bash
# Text to speech in your own voice, in one line (zero-shot cloning):
#   pipelines/clone-voice.sh MODEL_DIR ME.wav OUT.wav "Text to say."
# MODEL_DIR: as pipelines/tts.sh (t3_cfg.safetensors, s3gen.safetensors,
# tokenizer.json) plus ve.safetensors; ME.wav: a few seconds of your speech
# (anything libsndfile reads; Chatterbox-Turbo needs more than 5 s). The voice
# is computed from it once per file (chatterbox-voice ME.wav --model-dir DIR
# -o me.safetensors saves it for later). Extra bin properties from $TTS_PROPS.
set -euo pipefail
source "$(dirname "$0")/common.sh"
usage='usage: clone-voice.sh MODEL_DIR ME.wav OUT.wav "text"'
dir="${1:?$usage}"
me="${2:?$usage}"
out="${3:?$usage}"
text="${4:?$usage}"
# shellcheck disable=SC2086
printf '%s' "$text" | gst-launch-1.0 -q \
  fdsrc ! text/x-raw,format=utf8 ! chatterboxtts model-dir="$dir" voice="$me" ${TTS_PROPS:-} ! \
  audioconvert ! audio/x-raw,format=S16LE ! wavenc ! filesink location="$out"
