#!/usr/bin/env bash
# The README's test command: install, build, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
rc=0
rm -f build/meson-logs/testlog*.json
meson test -C build --print-errorlogs --num-processes 2 "$@" || rc=$?
# The model and element suites again as other machines run them (test setups
# in tests/meson.build): the lowest kernel path (no hand-written SIMD, ATen's
# scalar kernels, OpenBLAS's generic ones) and the AVX2 path (what AMD Zen
# and Intel CPUs without AVX-512 take). A bound fitted to this CPU's
# summation order fails here. Their results count in the closing line.
for setup in lowest avx2; do
  echo "== meson test --setup $setup"
  meson test -C build --print-errorlogs --num-processes 2 --setup "$setup" --no-suite stress --no-suite pipelines --no-suite server "$@" ||
    rc=$?
done
# (The server suites are CPU-independent plumbing: run once, above.)
# Hardening checks (docs/robustness.md), each counted as one test: the
# untrusted-input suites under ASan+UBSan, the copy-synthesis pipelines under
# valgrind memcheck, and 20 s of each libFuzzer harness.
# CHATTERBOX_QUICK_TESTS=1 skips them (for quick local runs).
extra_ok=0
extra_fail=0
if [ "${CHATTERBOX_QUICK_TESTS:-0}" != 1 ]; then
  for check in "scripts/sanitize.sh" "scripts/sanitize.sh --valgrind build" "scripts/fuzz.sh 60"; do
    echo "== $check"
    if FUZZ_FLAGS="-seed=1 -runs=30000" bash $check; then extra_ok=$((extra_ok + 1)); else extra_fail=$((extra_fail + 1)); rc=1; fi
  done
fi
# One plain closing line for CI: "N passed, N failed".
EXTRA_OK=$extra_ok EXTRA_FAIL=$extra_fail python3 - <<'PY'
import json, os
ok, fail, skip = int(os.environ["EXTRA_OK"]), int(os.environ["EXTRA_FAIL"]), 0
import glob
for log in sorted(glob.glob("build/meson-logs/testlog*.json")):
    for line in open(log):
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"): ok += 1
        elif r == "SKIP": skip += 1
        else: fail += 1
print(f"{ok} passed, {fail} failed" + (f", {skip} skipped" if skip else ""))
PY
exit $rc
