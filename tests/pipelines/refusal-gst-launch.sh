#!/usr/bin/env bash
# gst-launch-1.0 itself, with both cores busy: a vocoder whose model cannot
# take the offered mel layout must end the pipeline at once, every time, with
# our ERROR naming the fields. (gst-launch-1.0 1.22 quits its main loop from
# the bus sync handler: an ERROR posted before the loop runs is lost and the
# tool hangs. Failing in set_state() itself, as our elements now do when
# upstream can never fit, cannot hit that: 17 of 40 runs hung before.)
#   refusal-gst-launch.sh [runs]
set -euo pipefail
runs="${1:-40}"
fixtures="${CHATTERBOX_FIXTURES:?}"
tmp="$(mktemp -d)"
spinners=()
cleanup() {
  for p in "${spinners[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
head -c 64000 /dev/zero > "$tmp/mel.f32"
for _ in 1 2; do
  (while :; do :; done) &
  spinners+=($!)
done
hung=0 unexplained=0
for i in $(seq "$runs"); do
  rc=0
  timeout 10 gst-launch-1.0 -q filesrc location="$tmp/mel.f32" ! \
    audio/x-mel-spectrogram,n-mels=80,rate=24000,hop-length=480 ! \
    vocosdec model="$fixtures/vocos/tiny_center.safetensors" ! fakesink > "$tmp/log" 2>&1 || rc=$?
  if [ "$rc" = 124 ]; then
    hung=$((hung + 1))
    echo "run $i: hung (killed after 10 s)"
  elif [ "$rc" = 0 ] || ! grep -q "ERROR: from element /GstPipeline:pipeline0/GstVocosDec:vocosdec0: The vocos model cannot vocode the mel features upstream offers: model expects n-mels=100, upstream offers 80; model expects hop-length=256, upstream offers 480" "$tmp/log"; then
    unexplained=$((unexplained + 1))
    echo "run $i: rc $rc without our ERROR:"
    cat "$tmp/log"
  fi
done
echo "$runs runs under load: $hung hung, $unexplained without our ERROR"
[ "$hung" = 0 ] && [ "$unexplained" = 0 ]
