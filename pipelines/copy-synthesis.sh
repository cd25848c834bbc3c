#!/usr/bin/env bash
# Copy-synthesis: a wav file -> S3Gen log-mel (melspec) -> vocoder -> wav.
#   pipelines/copy-synthesis.sh IN.wav OUT.wav [vocos|hift]
# Models: VOCOS_MODEL (default: the embedded default model), HIFT_MODEL
# (e.g. Chatterbox's s3gen.safetensors). The vocoder is chosen by the third
# argument, else by CHATTERBOX_USE_VOCOS (chatterboxvocoder's rule).
set -euo pipefail
source "$(dirname "$0")/common.sh"
in="${1:?usage: copy-synthesis.sh IN.wav OUT.wav [vocos|hift]}"
out="${2:?usage: copy-synthesis.sh IN.wav OUT.wav [vocos|hift]}"
kind="${3:-}"
vocos_model="${VOCOS_MODEL:-$(default_vocos_model)}"
hift_model="${HIFT_MODEL:-$FIXTURES/hift/hift_tiny.safetensors}"
vocoder_props="vocos-model=$vocos_model hift-model=$hift_model"
[ -n "$kind" ] && vocoder_props="vocoder=$kind $vocoder_props"
gst-launch-1.0 -q \
  filesrc location="$in" ! wavparse ! audioconvert ! audioresample ! \
  melspec ! chatterboxvocoder $vocoder_props ! \
  audioconvert ! audio/x-raw,format=S16LE ! wavenc ! filesink location="$out"
