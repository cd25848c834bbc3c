#!/usr/bin/env bash
# Configures (once) and builds into ./build. Extra arguments go to meson setup,
# e.g. scripts/build.sh -Dtorch_dir=/path/to/libtorch
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  # Debian packages first; a wrap in subprojects/ is used only if one is
  # missing and its source is already there (nothing is downloaded).
  meson setup build --wrap-mode=nodownload "$@"
fi
# One LibTorch translation unit needs ~1.2 GB and ~30 s; two jobs fit 2 cores.
ninja -C build -j "${CHATTERBOX_JOBS:-2}"
