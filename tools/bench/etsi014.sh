#!/usr/bin/env bash
# Suite etsi014: keyraild's ETSI 014 enc_keys against nginx serving static JSON of the same
# size over the same TLS 1.3 mutual authentication, both driven by the same keyrail-bench
# binary in the same run, so the ratio compares engines, not load tools. A second reference,
# keyrail-static (our engine serving the same bytes with no key work), splits keyraild's cost
# into the engine's (TLS, HTTP, kernel: the ceiling for an answer of that size here) and the
# key path's.
#   1 x 256-bit key per request, and 100 x 256-bit keys per request;
#   req/s and keys/s per server core (divided by the server's CPU share from /proc),
#   p50/p99/p999 latency.
# The server (keyraild with one shard, nginx with one worker, keyrail-static with one shard)
# runs on core 0,
# keyrail-bench on core 1. Everything started here is stopped by PID on exit.
# Usage: tools/bench/etsi014.sh --bin DIR --out FILE [--smoke] [--duration S]
#   (normally through tools/bench.sh etsi014)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/lib.sh

bin=build/bench/tools
out=bench/results/etsi014.json
duration=5
requests=0 # 0: bounded by --duration only
connections=8
pipeline=8
while (($#)); do
    case $1 in
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --smoke) duration=1; requests=50; connections=2; pipeline=2; shift ;;
    *) echo "etsi014.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
for tool in keyraild keyrail keyrail-bench keyrail-static; do
    [[ -x "$bin/$tool" ]] || { echo "etsi014.sh: $bin/$tool not built" >&2; exit 2; }
done
command -v nginx >/dev/null || { echo "etsi014.sh: nginx missing (tools/setup.sh)" >&2; exit 2; }

server_cpu=0
client_cpu=$(( $(nproc) > 1 ? 1 : 0 ))
bench_work=$(mktemp -d /tmp/keyrail-bench-etsi014.XXXXXX)
trap bench_cleanup EXIT
w=$bench_work

bench_start_node "$bin" "$w"
node_port=$bench_node_port
node_pid=$bench_node_pid

curl_sae() { # curl_sae URL: GET as the master SAE
    curl -sS --fail --cacert "$w/pki/ca/ca.crt" --cert "$w/pki/saes/bench-master.crt" \
        --key "$w/pki/saes/bench-master.key" "$1"
}
base="https://127.0.0.1:$node_port/api/v1/keys/bench-slave"

# nginx bodies: keyraild's own responses with every key and key_ID replaced by random values
# of the same length, so both servers send the same number of bytes and no real key is kept.
anonymise() {
    python3 -c '
import base64, json, os, sys, uuid
doc = json.load(sys.stdin)
for k in doc.get("keys", []):
    k["key_ID"] = str(uuid.uuid4())
    k["key"] = base64.b64encode(os.urandom(len(base64.b64decode(k["key"])))).decode()
sys.stdout.write(json.dumps(doc, separators=(",", ":")))'
}
for n in 1 100; do
    mkdir -p "$w/www$n"
    curl_sae "$base/status" > "$w/www$n/status.json"
    curl_sae "$base/enc_keys?number=$n&size=256" | anonymise > "$w/www$n/enc_keys.json"
done
small_bytes=$(stat -c %s "$w/www1/enc_keys.json")
large_bytes=$(stat -c %s "$w/www100/enc_keys.json")
echo "etsi014: response bodies ${small_bytes} B (1 key), ${large_bytes} B (100 keys)"

nginx_pids=()
nginx_ports=()
for n in 1 100; do
    port=$(bench_free_port)
    pid=$(bench_start_nginx "$w/nginx$n" "$port" "$w/pki/nodes/bench-kme.crt" \
        "$w/pki/nodes/bench-kme.key" "$w/pki/ca/ca.crt" "$w/www$n" "$server_cpu")
    bench_pids+=("$pid")
    nginx_pids+=("$pid")
    nginx_ports+=("$port")
    bench_wait_port "$port"
done

static_pids=()
static_ports=()
for n in 1 100; do
    port=$(bench_free_port)
    pid=$(bench_start_static "$bin" "$port" "$w/pki/nodes/bench-kme.crt" \
        "$w/pki/nodes/bench-kme.key" "$w/pki/ca/ca.crt" "$w/www$n" "$server_cpu" \
        "$w/static$n.log")
    bench_pids+=("$pid")
    static_pids+=("$pid")
    static_ports+=("$port")
    bench_wait_port "$port"
done

# run NAME PORT NUMBER SERVER_PID: one keyrail-bench run; writes $w/NAME.json and $w/NAME.cpu
run() {
    local name=$1 port=$2 number=$3 pid=$4
    local before after
    before=$(bench_cpu_ticks "$pid")
    "$bin/keyrail-bench" --url "https://127.0.0.1:$port" --ca "$w/pki/ca/ca.crt" \
        --cert "$w/pki/saes/bench-master.crt" --key "$w/pki/saes/bench-master.key" \
        --slave-sae bench-slave --request enc_keys --number "$number" --size 256 \
        --connections "$connections" --pipeline "$pipeline" --threads 1 --cpus "$client_cpu" \
        --duration "$duration" $( ((requests > 0)) && echo --requests "$requests") \
        --no-progress --json "$w/$name.json" > "$w/$name.txt" || {
        echo "etsi014: keyrail-bench run $name failed:" >&2
        cat "$w/$name.txt" >&2
        return 1
    }
    after=$(bench_cpu_ticks "$pid")
    echo $((after - before)) > "$w/$name.cpu"
    echo "etsi014: $name: $(grep -m1 -iE 'req/s|requests' "$w/$name.txt" || true)"
}

run nginx_1 "${nginx_ports[0]}" 1 "${nginx_pids[0]}"
run static_1 "${static_ports[0]}" 1 "${static_pids[0]}"
run keyrail_1 "$node_port" 1 "$node_pid"
run nginx_100 "${nginx_ports[1]}" 100 "${nginx_pids[1]}"
run static_100 "${static_ports[1]}" 100 "${static_pids[1]}"
run keyrail_100 "$node_port" 100 "$node_pid"

python3 - "$w" "$out" "$(getconf CLK_TCK)" "$small_bytes" "$large_bytes" <<'PY'
import json, os, subprocess, sys
work, out, clk_tck = sys.argv[1], sys.argv[2], int(sys.argv[3])
small, large = sys.argv[4], sys.argv[5]

def load(name):
    doc = json.load(open(f"{work}/{name}.json"))
    cpu_s = int(open(f"{work}/{name}.cpu").read()) / clk_tck
    doc["server_cpu_s"] = cpu_s
    doc["server_cores"] = cpu_s / doc["elapsed_s"] if doc["elapsed_s"] > 0 else 0
    if doc["errors"]:
        sys.exit(f"etsi014: run {name} had {doc['errors']} errors: {doc['errors_by_kind']}")
    return doc

def per_core(doc, field):
    return doc[field] / doc["server_cores"] if doc["server_cores"] > 0 else 0.0

rows = []
def row(name, value, unit, ref_name, ref_value):
    rows.append({"name": name, "value": value, "unit": unit,
                 "reference": {"name": ref_name, "value": ref_value, "unit": unit},
                 "ratio": value / ref_value if ref_value else 0.0})

for n, body in ((1, small), (100, large)):
    k, g = load(f"keyrail_{n}"), load(f"nginx_{n}")
    ref = f"nginx_static_{body}B"
    row(f"enc_keys_{n}x256_req_per_s_per_core", per_core(k, "requests_per_s"), "req/s",
        ref, per_core(g, "requests_per_s"))
    row(f"enc_keys_{n}x256_keys_per_s_per_core", per_core(k, "keys_per_s"), "keys/s",
        ref, per_core(g, "keys_per_s"))
    row(f"enc_keys_{n}x256_req_per_s", k["requests_per_s"], "req/s", ref, g["requests_per_s"])
    for p in ("p50", "p99", "p999"):
        row(f"enc_keys_{n}x256_latency_{p}", k["latency_ms"][p] * 1000.0, "us",
            ref, g["latency_ms"][p] * 1000.0)
    row(f"enc_keys_{n}x256_server_cores", k["server_cores"], "cores", ref, g["server_cores"])
    # The same answers from our engine with no key work: keyraild over it is the share of a
    # core left after the key path; it over nginx compares the engines alone.
    e = load(f"static_{n}")
    floor = f"keyrail_static_{body}B"
    row(f"enc_keys_{n}x256_keys_per_s_per_core_vs_engine", per_core(k, "keys_per_s"), "keys/s",
        floor, per_core(e, "keys_per_s"))
    row(f"engine_static_{n}x256_keys_per_s_per_core", per_core(e, "keys_per_s"), "keys/s",
        ref, per_core(g, "keys_per_s"))
    row(f"engine_static_{n}x256_server_cores", e["server_cores"], "cores", ref, g["server_cores"])

cpu = "unknown cpu"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
doc = {"suite": "etsi014", "commit": os.environ.get("KEYRAIL_COMMIT", "unknown"),
       "machine": f"{cpu}, {os.cpu_count()} cpus", "results": rows}
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
for r in rows:
    print(f'{r["name"]:48s} {r["value"]:14.1f} {r["unit"]:7s} ref {r["reference"]["value"]:14.1f}'
          f'  ratio {r["ratio"]:.3f}')
PY
