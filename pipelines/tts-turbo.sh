#!/usr/bin/env bash
# Text to speech with Chatterbox-Turbo's or Chatterbox-Nano's own weights:
#   pipelines/tts-turbo.sh MODEL_DIR OUT.wav "Text to say [laugh] with tags."
# MODEL_DIR holds t3_turbo_v1.safetensors (or t3_nano_v1.safetensors),
# s3gen_meanflow.safetensors, the tokenizer (tokenizer.json, or vocab.json +
# merges.txt + added_tokens.json) and conds.pt (ResembleAI/chatterbox-turbo or
# -nano). chatterboxtts detects the GPT-2 T3 and runs S3Gen as mean flow.
# Paralinguistic tags ([laugh], [chuckle], [clear throat], ...) go in the text.
# Extra bin properties (e.g. "vocoder=hift") come from $TTS_PROPS.
set -euo pipefail
source "$(dirname "$0")/common.sh"
usage='usage: tts-turbo.sh MODEL_DIR OUT.wav "text"'
dir="${1:?$usage}"
out="${2:?$usage}"
text="${3:?$usage}"
if [ ! -f "$dir/t3_turbo_v1.safetensors" ] && [ ! -f "$dir/t3_nano_v1.safetensors" ]; then
  echo "tts-turbo.sh: $dir holds neither t3_turbo_v1.safetensors nor t3_nano_v1.safetensors" \
       "(for Chatterbox's t3_cfg.safetensors use pipelines/tts.sh)" >&2
  exit 2
fi
# shellcheck disable=SC2086
printf '%s' "$text" | gst-launch-1.0 -q \
  fdsrc ! text/x-raw,format=utf8 ! chatterboxtts model-dir="$dir" ${TTS_PROPS:-} ! \
  audioconvert ! audio/x-raw,format=S16LE ! wavenc ! filesink location="$out"
