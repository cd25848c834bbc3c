#!/usr/bin/env bash
# Installs the Debian 12 packages gst-chatterbox builds, tests and runs with.
# Needs root (or sudo). Safe to run again.
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
packages=(
  build-essential meson ninja-build pkg-config
  libtorch-dev libopenblas0-pthread            # OpenBLAS: Debian's libtorch is ~20x slower on netlib BLAS
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  libboost-test-dev nlohmann-json3-dev libyaml-cpp-dev libicu-dev
  espeak-ng sox                                # test speech and audio checks
  libkakasi2-dev kakasi-dic                    # Japanese readings for t3 language=ja (optional, -Dkakasi=auto; GPL-2+)
  libsoxr-dev libsndfile1-dev libebur128-dev   # voice cloning: librosa's soxr_hq resampler, soundfile's reader, Turbo's loudness (elements/voice)
  clang libclang-rt-14-dev valgrind            # sanitizer build, fuzzers, leak check (scripts/test.sh)
  libsoup-3.0-dev                              # chatterbox-server: HTTP/1.1 + WebSocket on the GLib main loop
  nginx-light curl                             # the server's scale-out test (nginx as load balancer) and examples
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
