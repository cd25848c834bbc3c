#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer build of the unit suites that
# exercise untrusted input (checkpoint readers, module loader, mel front end,
# the robustness replays), in build-asan/, then runs them.
#
#   scripts/sanitize.sh [--elements] [extra meson test names...]
#   scripts/sanitize.sh --valgrind [BUILD_DIR]
#
# --elements also builds the GStreamer plugin with the sanitizers and runs
# the element suites (much longer: every model translation unit is rebuilt).
# --valgrind runs the copy-synthesis example (pipelines/copy-synthesis.sh,
# 1 s of audio, tiny fixture models, vocos and hift) under valgrind memcheck
# with the plugin of BUILD_DIR (default build/, a normal build) and fails on
# any "definitely lost" block or memory error not in scripts/valgrind.supp.
# Env: CHATTERBOX_JOBS (ninja jobs, default 2).
#
# Runtime settings (see docs/robustness.md):
#  - UBSan halts on the first report, so a report fails the test.
#  - LeakSanitizer stays on for the plain suites. For GStreamer processes it
#    is off (detect_leaks=0): GLib/GStreamer keep one-time allocations (type
#    system, quarks, the registry, plugin feature caches) reachable only
#    through pointers LeakSanitizer cannot see, which reads as leaks; leaks
#    are checked there with valgrind instead (--valgrind).
#  - GST_REGISTRY_FORK=no: the plugin is scanned in the test process itself,
#    whose ASan runtime is loaded first (the forked gst-plugin-scanner is not
#    instrumented and refuses an ASan plugin).
set -euo pipefail
cd "$(dirname "$0")/.."
elements=0
if [ "${1:-}" = "--elements" ]; then elements=1; shift; fi

if [ "${1:-}" = "--valgrind" ]; then
  build=$(cd "${2:-build}" && pwd)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir "$work/bin"
  # The example script runs gst-launch-1.0 from PATH: a shim puts it under
  # memcheck, so the pipeline is exactly the documented one.
  cat >"$work/bin/gst-launch-1.0" <<SHIM
#!/bin/sh
exec valgrind --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \\
  --suppressions=$(pwd)/scripts/valgrind.supp --num-callers=40 --error-exitcode=3 \\
  --log-file=$work/memcheck-%p.log $(command -v gst-launch-1.0) "\$@"
SHIM
  chmod +x "$work/bin/gst-launch-1.0"
  export GST_REGISTRY=$work/registry.bin CHATTERBOX_BUILD_DIR=$build
  export G_SLICE=always-malloc G_DEBUG=gc-friendly OMP_NUM_THREADS=2
  gst-launch-1.0 -q audiotestsrc num-buffers=24 samplesperbuffer=1000 freq=220 ! \
    audio/x-raw,rate=24000,channels=1 ! audioconvert ! wavenc ! filesink location="$work/in.wav"
  rc=0
  for kind in vocos hift; do
    start=$(date +%s)
    PATH=$work/bin:$PATH bash pipelines/copy-synthesis.sh "$work/in.wav" "$work/out-$kind.wav" $kind 2>/dev/null || rc=1
    log=$(ls -t "$work"/memcheck-*.log | head -1)
    echo "== $kind ($(( $(date +%s) - start )) s): $(grep -o 'definitely lost: .*' "$log" || echo 'definitely lost: 0 bytes'); $(grep -o 'ERROR SUMMARY: .*' "$log")"
    if grep -q 'definitely lost in' "$log" || ! grep -q 'ERROR SUMMARY: 0 errors' "$log"; then
      cp "$log" "${TMPDIR:-/tmp}/chatterbox-memcheck-$kind.log"
      echo "   details: ${TMPDIR:-/tmp}/chatterbox-memcheck-$kind.log"
      rc=1
    fi
  done
  exit $rc
fi
if [ ! -f build-asan/build.ninja ]; then
  # b_lundef=false: the plugin module cannot be linked with -Wl,--no-undefined
  # under the sanitizers (their runtime symbols come from the executable).
  # clang: g++ 12 takes ~10x longer on a LibTorch translation unit with
  # -fsanitize=undefined. UBSan's vptr check is off: it inspects LibTorch's
  # polymorphic types, built without the sanitizer, and only misfires there.
  CC=${CC:-clang} CXX=${CXX:-clang++} meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbench=false -Dbuildtype=debugoptimized -Dcpp_args=-fno-sanitize=vptr
fi
tests=(checkpoint torch_zip mel robustness)
targets=(tests/core/test_checkpoint tests/core/test_torch_zip tests/mel/test_mel tests/robustness/test_robustness)
if [ $elements = 1 ]; then
  tests+=(elements_vocoder elements_melspec t3_element s3genmel_element)
  targets+=(tests/elements/test_elements_vocoder tests/elements/test_elements_melspec tests/t3/test_t3_element
            tests/s3genmel/test_s3genmel_element gst-plugins/libgstchatterbox.so)
fi
tests+=("$@")
start=$(date +%s)
ninja -C build-asan -j "${CHATTERBOX_JOBS:-2}" "${targets[@]}"
built=$(date +%s)

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=0
export LSAN_OPTIONS=suppressions=$(pwd)/scripts/lsan.supp
export GST_REGISTRY_FORK=no
rc=0
# Element suites run GStreamer: leaks are valgrind's job there (see above).
for t in "${tests[@]}"; do
  case $t in
    elements_*|*_element|pipelines*|tts*) env ASAN_OPTIONS=detect_leaks=0 meson test -C build-asan --no-rebuild --print-errorlogs "$t" || rc=1 ;;
    robustness) env ASAN_OPTIONS=$ASAN_OPTIONS:fast_unwind_on_malloc=0 \
                  meson test -C build-asan --no-rebuild --print-errorlogs "$t" || rc=1 ;;
    *) meson test -C build-asan --no-rebuild --print-errorlogs "$t" || rc=1 ;;
  esac
done
end=$(date +%s)
echo "sanitize.sh: build $((built - start)) s, tests $((end - built)) s, rc $rc"
exit $rc
