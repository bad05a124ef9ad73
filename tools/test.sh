#!/usr/bin/env bash
# The test command (README, .ci/run): set-up if needed, then every test tier.
#   debug preset (ASan + UBSan): labels unit, integration, fuzz (standalone driver), sim
#   tsan preset: label stress
#   release preset: label bench_smoke (every benchmark suite on tiny inputs)
# Extra arguments go to every ctest call (for example -R store).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

KEYRAIL_SETUP_NO_BUILD=1 tools/setup.sh

run_preset() {
    local preset=$1 labels=$2
    shift 2
    echo "== test.sh: preset ${preset}, labels ${labels}"
    cmake --preset "${preset}" >/dev/null
    cmake --build --preset "${preset}" -j "${jobs}"
    ctest --preset "${preset}" -L "${labels}" -j "${jobs}" --no-tests=error "$@"
}

start=$(date +%s)
run_preset debug '^(unit|integration|fuzz|sim)$' "$@"
run_preset tsan '^stress$' "$@"
run_preset release '^bench_smoke$' "$@"
echo "== test.sh: all tiers passed in $(( $(date +%s) - start ))s"
