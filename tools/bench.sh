#!/usr/bin/env bash
# Runs a benchmark suite and writes bench/results/<suite>.json:
#   {"suite", "commit", "machine", "results": [{"name", "value", "unit",
#    "reference": {"name", "value", "unit"}, "ratio"}]}
# Every reference is measured in the same run, on the same machine.
# Usage: tools/bench.sh <suite> [suite options]   run one suite (list: tools/bench.sh list)
#        tools/bench.sh plot <suite>               render bench/results/<suite>.png (gnuplot)
# Suites are the keyrail_bench_<suite> binaries (micro suites) and tools/bench/<suite>.sh
# (macro suites that start nodes and references, e.g. etsi014).
set -euo pipefail
cd "$(dirname "$0")/.."

suite=${1:-}
if [[ -z "$suite" ]]; then
    echo "usage: tools/bench.sh <suite>|list|plot <suite>" >&2
    exit 2
fi
shift

if [[ "$suite" == plot ]]; then
    exec tools/bench/plot.sh "${1:?usage: tools/bench.sh plot <suite>}"
fi

KEYRAIL_SETUP_NO_BUILD=1 tools/setup.sh >/dev/null
cmake --preset bench >/dev/null
cmake --build --preset bench -j "$(nproc)" >/dev/null

if [[ "$suite" == list ]]; then
    {
        find build/bench/bench -maxdepth 1 -name 'keyrail_bench_*' -printf '%f\n' |
            sed 's/^keyrail_bench_//'
        find tools/bench -maxdepth 1 -name '*.sh' ! -name lib.sh ! -name plot.sh -printf '%f\n' |
            sed 's/\.sh$//'
    } | sort
    exit 0
fi

mkdir -p bench/results
KEYRAIL_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
export KEYRAIL_COMMIT
out="bench/results/${suite}.json"

if [[ -x "tools/bench/${suite}.sh" ]]; then
    tools/bench/"${suite}".sh --bin build/bench/tools --out "$out" "$@"
else
    binary=build/bench/bench/keyrail_bench_${suite}
    if [[ ! -x "$binary" ]]; then
        echo "bench.sh: no suite '${suite}' (try: tools/bench.sh list)" >&2
        exit 2
    fi
    "$binary" --out "$out" "$@"
fi
echo "bench.sh: wrote $out"
