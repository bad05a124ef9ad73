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

# run_preset PRESET LABELS TARGET [ctest args]: build TARGET ('all' or a tier_<label> target)
# of the preset, then run the tests whose label matches LABELS.
run_preset() {
    local preset=$1 labels=$2 target=$3
    shift 3
    echo "== test.sh: preset ${preset}, labels ${labels}"
    cmake --preset "${preset}" >/dev/null
    cmake --build --preset "${preset}" -j "${jobs}" --target "${target}"
    ctest --preset "${preset}" -L "${labels}" -j "${jobs}" --no-tests=error "$@"
}

start=$(date +%s)
# debug builds everything, so every target compiles under ASan + UBSan.
run_preset debug '^(unit|integration|fuzz|sim)$' all "$@"
run_preset tsan '^stress$' tier_stress "$@"
run_preset release '^bench_smoke$' all "$@"
echo "== test.sh: all tiers passed in $(( $(date +%s) - start ))s"
