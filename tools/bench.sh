#!/usr/bin/env bash
# Runs a benchmark suite and writes bench/results/<suite>.json:
#   {"suite", "commit", "machine", "results": [{"name", "value", "unit",
#    "reference": {"name", "value", "unit"}, "ratio"}]}
# Every reference is measured in the same run, on the same machine.
# Usage: tools/bench.sh <suite>     (suites: the keyrail_bench_<suite> binaries)
#        tools/bench.sh list
set -euo pipefail
cd "$(dirname "$0")/.."

suite=${1:-}
if [[ -z "$suite" ]]; then
    echo "usage: tools/bench.sh <suite>|list" >&2
    exit 2
fi

KEYRAIL_SETUP_NO_BUILD=1 tools/setup.sh >/dev/null
cmake --preset bench >/dev/null
cmake --build --preset bench -j "$(nproc)" >/dev/null

if [[ "$suite" == list ]]; then
    find build/bench/bench -maxdepth 1 -name 'keyrail_bench_*' -printf '%f\n' \
        | sed 's/^keyrail_bench_//' | sort
    exit 0
fi

binary=build/bench/bench/keyrail_bench_${suite}
if [[ ! -x "$binary" ]]; then
    echo "bench.sh: no suite '${suite}' (try: tools/bench.sh list)" >&2
    exit 2
fi
mkdir -p bench/results
KEYRAIL_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
export KEYRAIL_COMMIT
shift
"$binary" --out "bench/results/${suite}.json" "$@"
echo "bench.sh: wrote bench/results/${suite}.json"
