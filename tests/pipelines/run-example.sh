#!/usr/bin/env bash
# Runs one example from pipelines/ on generated speech and checks its output:
# the wav exists and has the sample count the recipe implies.
#   run-example.sh copy-synthesis-vocos|copy-synthesis-hift|mel-to-wav|speak-sentence|tts|tts-turbo|tts-mtl|
#                  voice-convert|voice-convert-default|voice-convert-chunked|clone-voice
set -euo pipefail
root="${CHATTERBOX_SOURCE_ROOT:?}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
samples() { soxi -s "$1"; }
# 1.5 s of speech at 24 kHz: 36000 samples = 75 frames of hop 480.
espeak-ng -v en-us -s 170 -w "$tmp/speech22k.wav" "Testing one two three, testing."
sox "$tmp/speech22k.wav" -r 24000 "$tmp/in.wav"
n=$(samples "$tmp/in.wav")
expect=$(( n / 480 * 480 ))
case "$1" in
  copy-synthesis-vocos) bash "$root/pipelines/copy-synthesis.sh" "$tmp/in.wav" "$tmp/out.wav" vocos ;;
  copy-synthesis-hift) bash "$root/pipelines/copy-synthesis.sh" "$tmp/in.wav" "$tmp/out.wav" hift ;;
  speak-sentence)
    bash "$root/pipelines/speak-sentence.sh" "$tmp/out.wav" "Testing one two three, testing."
    espeak-ng -v en-us -s 160 -w "$tmp/s.wav" "Testing one two three, testing."
    sox "$tmp/s.wav" -r 24000 "$tmp/s24.wav"
    expect=$(( $(samples "$tmp/s24.wav") / 480 * 480 )) ;;
  mel-to-wav)
    # 75 frames of a constant quiet mel.
    python3 -c "import struct,sys; sys.stdout.buffer.write(struct.pack('<6000f', *([-8.0]*6000)))" > "$tmp/mel.f32"
    bash "$root/pipelines/mel-to-wav.sh" "$tmp/mel.f32" "$tmp/out.wav"
    expect=$(( 75 * 480 )) ;;
  tts)
    # The tiny random-weight fixtures as a model directory (plumbing only):
    # greedy T3 gives 15 valid tokens for this sentence -> 30 frames.
    fx="${CHATTERBOX_FIXTURES:?}"
    mkdir "$tmp/model"
    ln -s "$fx/t3/t3_tiny.safetensors" "$tmp/model/t3_cfg.safetensors"
    ln -s "$fx/t3/tokenizer_tiny.json" "$tmp/model/tokenizer.json"
    ln -s "$fx/t3/conds_tiny.pt" "$tmp/model/conds.pt"
    ln -s "$fx/s3gen/flow_tiny.safetensors" "$tmp/model/s3gen.safetensors"
    TTS_PROPS="greedy=true vocoder=hift hift-model=$fx/hift/hift_tiny.safetensors" \
      bash "$root/pipelines/tts.sh" "$tmp/model" "$tmp/out.wav" "the little robot counted stones by the river"
    expect=$(( 30 * 480 )) ;;
  tts-turbo)
    # A Turbo model directory from the tiny fixtures (plumbing only; the
    # tiny T3's text vocabulary is the tiny BPE's 576 tokens). On the Turbo
    # fixture's voice and text, greedy T3 gives the reference's 21 tokens;
    # mean-flow S3Gen appends 3 silence tokens as ChatterboxTurboTTS.generate:
    # 24 tokens -> 48 frames.
    python3 "$root/tests/pipelines/make-turbo-model-dir.py" "${CHATTERBOX_FIXTURES:?}" "$root/tests/s3gen" "$tmp/model"
    TTS_PROPS="greedy=true vocoder=hift hift-model=$CHATTERBOX_FIXTURES/hift/hift_tiny.safetensors" \
      bash "$root/pipelines/tts-turbo.sh" "$tmp/model" "$tmp/out.wav" \
      "oh, the little robot counted every stone [chuckle] by the river…"
    expect=$(( 48 * 480 )) ;;
  voice-convert|voice-convert-default|voice-convert-chunked)
    # The tiny fixtures as a model directory (plumbing only). The source at
    # 16 kHz (audioresample passes it through, so the count is exact): F =
    # n // 160 mel frames -> ceil(F / 4) tokens -> 2 mel frames per token ->
    # 480 samples per frame. Target: the clone fixture's recording (24 kHz),
    # or the directory's conds.pt.
    python3 "$root/tests/pipelines/make-voice-model-dir.py" "${CHATTERBOX_FIXTURES:?}" "$tmp/model"
    sox "$tmp/speech22k.wav" -r 16000 -c 2 "$tmp/src16.wav"   # stereo: audioconvert downmixes
    n16=$(samples "$tmp/src16.wav")
    target="$CHATTERBOX_FIXTURES/clone/ref_24k.wav"
    [ "$1" = voice-convert-default ] && target=-
    props=""
    [ "$1" = voice-convert-chunked ] && props="chunk-tokens=10 context-tokens=25 lookahead-tokens=5"
    CHATTERBOX_MODEL_DIR="$tmp/model" VOCODER=hift HIFT_MODEL="$CHATTERBOX_FIXTURES/hift/hift_tiny.safetensors" \
      S3TOK_PROPS="$props" bash "$root/pipelines/voice-convert.sh" "$tmp/src16.wav" "$target" "$tmp/out.wav"
    expect=$(( 2 * ((n16 / 160 + 3) / 4) * 480 )) ;;
  clone-voice)
    # chatterboxtts voice=recording on the tiny fixtures, checked against the
    # two-step route: chatterbox-voice writes the voice file, tts.sh speaks
    # with it as conds.pt; the wavs must be identical. Greedy T3 gives 50
    # tokens here (measured, deterministic) -> 100 frames.
    fx="${CHATTERBOX_FIXTURES:?}"
    python3 "$root/tests/pipelines/make-voice-model-dir.py" "$fx" "$tmp/model"
    props="greedy=true vocoder=hift hift-model=$fx/hift/hift_tiny.safetensors"
    text="the little robot counted stones by the river"
    TTS_PROPS="$props" bash "$root/pipelines/clone-voice.sh" "$tmp/model" "$fx/clone/ref_24k.wav" "$tmp/out.wav" "$text"
    "${CHATTERBOX_BUILD_DIR:?}/elements/voice/chatterbox-voice" "$fx/clone/ref_24k.wav" --model-dir "$tmp/model" \
      -o "$tmp/me.safetensors"
    mkdir "$tmp/model2"
    for f in s3gen.safetensors ve.safetensors t3_cfg.safetensors tokenizer.json; do ln -s "$tmp/model/$f" "$tmp/model2/$f"; done
    ln -s "$tmp/me.safetensors" "$tmp/model2/conds.pt"
    TTS_PROPS="$props" bash "$root/pipelines/tts.sh" "$tmp/model2" "$tmp/two-step.wav" "$text"
    cmp "$tmp/out.wav" "$tmp/two-step.wav"
    expect=$(( 100 * 480 )) ;;
  tts-mtl)
    # A Chatterbox Multilingual model directory from the tiny fixtures
    # (plumbing only: the tiny T3 with the 2454-row text table, the tiny
    # made-up multilingual vocabulary), French through t3 language=fr.
    # Greedy T3 gives 12 valid tokens here; ChatterboxMultilingualTTS.generate drops the last token's
    # audio: 11 tokens -> 22 frames.
    python3 "$root/tests/pipelines/make-mtl-model-dir.py" "${CHATTERBOX_FIXTURES:?}" "$root/tests/t3/mtl" "$tmp/model"
    TTS_PROPS="greedy=true language=fr vocoder=hift hift-model=$CHATTERBOX_FIXTURES/hift/hift_tiny.safetensors" \
      bash "$root/pipelines/tts.sh" "$tmp/model" "$tmp/out.wav" "Bonjour le monde, ça va très bien."
    expect=$(( 22 * 480 )) ;;
  *) echo "unknown example $1" >&2; exit 2 ;;
esac
got=$(samples "$tmp/out.wav")
echo "$1: $got samples (expected $expect)"
[ "$got" = "$expect" ]
