#!/usr/bin/env bash
# The main job: speak a sentence with espeak-ng, then re-synthesise it through
# melspec -> vocosdec (the embedded default model) and write a wav.
#   pipelines/speak-sentence.sh [OUT.wav] ["sentence"]
set -euo pipefail
here="$(dirname "$0")"
out="${1:-chatterbox-demo.wav}"
text="${2:-GStreamer pipelines can now run neural vocoders, one buffer at a time.}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
espeak-ng -v en-us -s 160 -w "$tmp/espeak.wav" "$text"
bash "$here/copy-synthesis.sh" "$tmp/espeak.wav" "$out" vocos
echo "wrote $out ($(soxi -D "$out" 2>/dev/null || echo '?') s)"
