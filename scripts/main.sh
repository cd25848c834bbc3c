#!/usr/bin/env bash
# The README's main command: install, build, and run the main job: speak a
# sentence through melspec -> vocosdec and write chatterbox-demo.wav.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
bash pipelines/speak-sentence.sh "${1:-chatterbox-demo.wav}" ${2:+"$2"}
