#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/) with clang + ASan + UBSan into
# build-fuzz/ and runs each for a bounded time.
#
#   scripts/fuzz.sh [SECONDS] [HARNESS...]     (default: 60 s each, all harnesses)
#
# Corpus: seeds made from ../shared/fixtures by fuzz/make_seeds.py (small
# rewrites, nothing big copied), the regression inputs in
# tests/robustness/inputs/<harness>/, and build-fuzz/corpus/<harness>/, which
# keeps what earlier runs found. A crashing input lands in
# build-fuzz/crashes/<harness>/; turn it into a test in tests/robustness/.
# Exit status: 1 when any harness found something.
# Env: CHATTERBOX_JOBS (ninja jobs, default 2), FUZZ_FLAGS (extra libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
all=(safetensors torch_zip vocos_config vocos_yaml hift_config s3gen_config tokenizer caps)
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=("${all[@]}")

if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi
if [ ! -f build-fuzz/build.ninja ]; then
  # Tests and benchmarks are not needed here; the harnesses compile their own
  # instrumented copies of the code under test (fuzz/meson.build).
  CC=clang CXX=clang++ meson setup build-fuzz -Dfuzz=true -Dtests=false -Dbench=false -Dbuildtype=debugoptimized
fi
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz/fuzz_$h"); done
ninja -C build-fuzz -j "${CHATTERBOX_JOBS:-2}" "${targets[@]}"

rm -rf build-fuzz/seeds
python3 fuzz/make_seeds.py build-fuzz/seeds "$(pwd)/../shared/fixtures"

export OMP_NUM_THREADS=1
# GStreamer: no plugin scan (the caps harness needs only the core library).
export GST_REGISTRY_DISABLE=yes
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
found=0
printf '%-14s %10s %8s %8s %s\n' harness execs cov corpus result
for h in "${harnesses[@]}"; do
  corpus=build-fuzz/corpus/$h
  crashes=build-fuzz/crashes/$h
  log=build-fuzz/fuzz-$h.log
  mkdir -p "$corpus" "$crashes"
  dirs=("$corpus" "build-fuzz/seeds/$h")
  [ -d "tests/robustness/inputs/$h" ] && dirs+=("tests/robustness/inputs/$h")
  # GStreamer's own leaks (fuzz/lsan.supp) are only recognisable with the
  # slow unwinder, which costs too much for the LibTorch harnesses.
  extra_env=()
  [ "$h" = caps ] && extra_env=(ASAN_OPTIONS=fast_unwind_on_malloc=0 LSAN_OPTIONS=suppressions=fuzz/lsan.supp)
  # New inputs go to the first directory (the persistent corpus).
  rc=0
  env "${extra_env[@]}" build-fuzz/fuzz/fuzz_$h -max_total_time="$secs" -timeout=20 -rss_limit_mb=3072 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="$crashes/" ${FUZZ_FLAGS:-} "${dirs[@]}" >"$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
  n=$(ls "$corpus" | wc -l)
  if [ $rc -eq 0 ]; then
    res=ok
  else
    res="FOUND (rc $rc): $(ls -t "$crashes" | head -1) -- see $log"
    found=1
  fi
  printf '%-14s %10s %8s %8s %s\n' "$h" "$execs" "$cov" "$n" "$res"
done
exit $found
