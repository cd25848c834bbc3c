#!/usr/bin/env bash
# Live voice conversion: the microphone (autoaudiosrc) re-spoken in TARGET's
# voice on the speakers (autoaudiosink), streamed in chunks:
#   pipelines/voice-convert-live.sh TARGET|-
# MODEL_DIR: $CHATTERBOX_MODEL_DIR as voice-convert.sh. Latency is about
# (chunk + lookahead) x 40 ms for the tokenizer (1.4 s here), then s3genmel's
# chunk (window mode, left-context: bounded cost however long the stream runs)
# and the vocoder's lookahead, plus compute (README: measured latency).
set -euo pipefail
source "$(dirname "$0")/common.sh"
target="${1:?usage: voice-convert-live.sh TARGET|-  (CHATTERBOX_MODEL_DIR=dir holding s3gen.safetensors)}"
dir="${CHATTERBOX_MODEL_DIR:?CHATTERBOX_MODEL_DIR must name the model directory}"
s3gen="$dir/s3gen.safetensors"
[ "$target" = "-" ] && target="$dir/conds.pt"
vocoder_props="vocos-model=${VOCOS_MODEL:-$(default_vocos_model)} hift-model=${HIFT_MODEL:-$s3gen}"
[ -n "${VOCODER:-}" ] && vocoder_props="vocoder=$VOCODER $vocoder_props"
# shellcheck disable=SC2086
gst-launch-1.0 \
  ${LIVE_SRC:-autoaudiosrc} ! audioconvert ! audioresample ! \
  s3tokenizer model="$s3gen" chunk-tokens=${CHUNK_TOKENS:-25} context-tokens=100 lookahead-tokens=10 ! \
  s3genmel model="$s3gen" voice="$target" chunk-tokens=${CHUNK_TOKENS:-25} left-context=${LEFT_CONTEXT:-50} ! \
  chatterboxvocoder $vocoder_props ! audioconvert ! audioresample ! queue ! ${LIVE_SINK:-autoaudiosink}
