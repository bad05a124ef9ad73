#!/usr/bin/env bash
# tools/bench.sh plot <suite>: renders bench/results/<suite>.png from bench/results/<suite>.json
# with gnuplot: one panel of throughput metrics, one of latency metrics (units ending in "us"
# or "ms"), each metric beside its same-run reference, on a log scale.
set -euo pipefail
suite=$1
json=bench/results/${suite}.json
png=bench/results/${suite}.png
if [[ ! -f "$json" ]]; then
    echo "bench.sh plot: no $json; run tools/bench.sh $suite first" >&2
    exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$json" "$work" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
out = sys.argv[2]
def is_latency(r):
    return r["unit"] in ("us", "ms", "ns", "s", "us/op", "ns/op")
with open(f"{out}/throughput.dat", "w") as t, open(f"{out}/latency.dat", "w") as l:
    for r in doc["results"]:
        f = l if is_latency(r) else t
        name = r["name"]
        f.write(f'"{name} ({r["unit"]})" {r["value"]} {r["reference"]["value"]}\n')
with open(f"{out}/title", "w") as f:
    f.write(f'{doc["suite"]} @ {doc["commit"]}, {doc["machine"]}')
PY

title=$(cat "$work/title")
panels=0
[[ -s "$work/throughput.dat" ]] && panels=$((panels + 1))
[[ -s "$work/latency.dat" ]] && panels=$((panels + 1))
{
    echo "set terminal pngcairo size 1200,$((450 * panels)) font ',10' noenhanced"
    echo "set output '$png'"
    echo "set multiplot layout $panels,1 title '$title'"
    echo "set style data histogram; set style histogram clustered gap 1"
    echo "set style fill solid 0.8 border -1; set boxwidth 0.9"
    echo "set logscale y; set grid ytics; set xtics rotate by -20; set key top left"
    if [[ -s "$work/throughput.dat" ]]; then
        echo "set title 'throughput (higher is better)'"
        echo "plot '$work/throughput.dat' using 2:xtic(1) title 'keyrail', '' using 3 title 'reference'"
    fi
    if [[ -s "$work/latency.dat" ]]; then
        echo "set title 'latency (lower is better)'"
        echo "plot '$work/latency.dat' using 2:xtic(1) title 'keyrail', '' using 3 title 'reference'"
    fi
    echo "unset multiplot"
} > "$work/plot.gp"
gnuplot "$work/plot.gp"
echo "bench.sh plot: wrote $png"
