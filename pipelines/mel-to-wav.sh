#!/usr/bin/env bash
# A raw mel file (float32, frame-major, 80 values per frame: what s3genmel or
# melspec emit) -> vocosdec -> wav. The capsfilter names only three fields; the
# rest are completed from the model's own feature layout during negotiation.
#   pipelines/mel-to-wav.sh MEL.f32 OUT.wav [MODEL]
set -euo pipefail
source "$(dirname "$0")/common.sh"
mel="${1:?usage: mel-to-wav.sh MEL.f32 OUT.wav [MODEL]}"
out="${2:?usage: mel-to-wav.sh MEL.f32 OUT.wav [MODEL]}"
model="${3:-$(default_vocos_model)}"
gst-launch-1.0 -q \
  filesrc location="$mel" ! audio/x-mel-spectrogram,n-mels=80,rate=24000,hop-length=480 ! \
  vocosdec model="$model" ! wavenc ! filesink location="$out"
