#!/usr/bin/env bash
# Suite paired: the master SAE's enc_keys at node bench-a followed by the slave SAE's dec_keys
# at node bench-b for the same key IDs, over keep-alive mTLS, checking the bytes match; the two
# nodes are separate keyraild processes linked by the peer protocol (the reservation reaches
# bench-b as a batched Reserve, no round trip on enc_keys). Pairs/s under closed-loop load,
# against a single node's enc_keys rate measured in the same run; end-to-end latency
# p50/p99/p999 with one pair in flight, against one request at a time to nginx serving a static
# enc_keys answer (this machine's floor for one HTTPS round trip; a pair makes two), and
# against the same pair made to two keyrail-static servers (our engine, no key work) in the
# nodes' places.
# Placement: the reference node and nginx on core 0; bench-a on core 0 and bench-b on core 1
# (two sites), keyrail-bench on core 1 throughout. All of them run for the whole suite; the
# throughput runs alternate (reference, pair, reference, pair, ...: --rounds, default 3) and
# the medians are reported, so a slow spell of this shared machine hits both sides; so do the
# one-in-flight latency runs (nginx, pair, engine floor, ...; medians by p50).
# Usage: tools/bench/paired.sh --bin DIR --out FILE [--smoke] [--duration S] [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/bench/lib.sh

bin=build/bench/tools
out=bench/results/paired.json
duration=5
rounds=3
requests=0
connections=8
pipeline=4
while (($#)); do
    case $1 in
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --smoke) duration=1; rounds=1; requests=50; connections=2; pipeline=2; shift ;;
    *) echo "paired.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
for tool in keyraild keyrail keyrail-bench keyrail-static; do
    [[ -x "$bin/$tool" ]] || { echo "paired.sh: $bin/$tool not built" >&2; exit 2; }
done

client_cpu=$(( $(nproc) > 1 ? 1 : 0 ))
bench_work=$(mktemp -d /tmp/keyrail-bench-paired.XXXXXX)
trap bench_cleanup EXIT
w=$bench_work
mkdir -p "$w/single" "$w/pair"
bench_start_node "$bin" "$w/single"
url="https://127.0.0.1:$bench_node_port"

# run NAME REQUEST [extra args]: one keyrail-bench run into $w/NAME.json
# Server pids whose CPU time a run records in $w/NAME.cpu (clock ticks).
server_pids=()
run() {
    local name=$1 request=$2 before after pid
    local -a each_before=()
    shift 2
    before=$(bench_cpu_ticks "${server_pids[@]}")
    for pid in "${server_pids[@]}"; do
        each_before+=("$(bench_cpu_ticks "$pid")")
    done
    "$bin/keyrail-bench" --url "$url" --ca "$pki/ca/ca.crt" \
        --cert "$pki/saes/bench-master.crt" --key "$pki/saes/bench-master.key" \
        --slave-sae bench-slave --request "$request" --number 1 --size 256 \
        --connections "$connections" --pipeline "$pipeline" --threads 1 --cpus "$client_cpu" \
        --duration "$duration" $( ((requests > 0)) && echo --requests "$requests") \
        --no-progress --json "$w/$name.json" "$@" > "$w/$name.txt" || {
        echo "paired: keyrail-bench run $name failed:" >&2
        cat "$w/$name.txt" >&2
        return 1
    }
    after=$(bench_cpu_ticks "${server_pids[@]}")
    echo $((after - before)) > "$w/$name.cpu"
    # Each server's own share (for a pair: bench-a's, then bench-b's).
    local i
    : > "$w/$name.cpus"
    for i in "${!server_pids[@]}"; do
        echo $(($(bench_cpu_ticks "${server_pids[$i]}") - each_before[i])) >> "$w/$name.cpus"
    done
    echo "paired: $name: $(grep -m1 'requests' "$w/$name.txt" || true)"
}

pki=$w/single/pki
single_pki=$pki
single_url=$url
# The latency floor of this machine: one HTTPS request at a time to nginx (one worker, core 0)
# serving a static copy of a 1-key enc_keys answer (keys and IDs replaced by random bytes).
mkdir -p "$w/www"
curl -sf --cacert "$pki/ca/ca.crt" --cert "$pki/saes/bench-master.crt" \
    --key "$pki/saes/bench-master.key" "$url/api/v1/keys/bench-slave/status" > "$w/www/status.json"
curl -sf --cacert "$pki/ca/ca.crt" --cert "$pki/saes/bench-master.crt" \
    --key "$pki/saes/bench-master.key" "$url/api/v1/keys/bench-slave/enc_keys?number=1&size=256" |
    python3 -c '
import base64, json, os, sys, uuid
doc = json.load(sys.stdin)
for k in doc["keys"]:
    k["key_ID"] = str(uuid.uuid4())
    k["key"] = base64.b64encode(os.urandom(len(base64.b64decode(k["key"])))).decode()
sys.stdout.write(json.dumps(doc, separators=(",", ":")))' > "$w/www/enc_keys.json"
nginx_port=$(bench_free_port)
nginx_pid=$(bench_start_nginx "$w/nginx" "$nginx_port" "$w/single/pki/nodes/bench-kme.crt" \
    "$w/single/pki/nodes/bench-kme.key" "$pki/ca/ca.crt" "$w/www" 0)
bench_pids+=("$nginx_pid")
bench_wait_port "$nginx_port"
nginx_url="https://127.0.0.1:$nginx_port"

bench_start_pair "$bin" "$w/pair" 0 "$client_cpu"
pair_pki=$w/pair/pki
pair_args=(--master-sae bench-master --slave-url "https://127.0.0.1:$bench_b_port"
    --slave-cert "$pair_pki/saes/bench-slave.crt" --slave-key "$pair_pki/saes/bench-slave.key")
for ((r = 1; r <= rounds; ++r)); do
    pki=$single_pki url=$single_url
    server_pids=("$bench_node_pid")
    run "enc_keys_$r" enc_keys
    # Its keys expire unfetched 1 s later (key_expiry_s): let that work finish before the pair
    # runs, so neither side pays for the other.
    sleep 2
    pki=$pair_pki url="https://127.0.0.1:$bench_a_port"
    server_pids=("$bench_a_pid" "$bench_b_pid")
    run "paired_$r" paired "${pair_args[@]}"
    sleep 1
done

# The floor of a pair on this machine and placement: keyrail-static (our engine, no key work,
# no peer notice) in place of each node, on the same cores, serving the static 1-key answer
# for both enc_keys and dec_keys; the same client, one pair in flight.
static_ports=()
static_pids=()
for name in bench-a bench-b; do
    cpu=0
    [[ $name == bench-b ]] && cpu=$client_cpu
    port=$(bench_free_port)
    pid=$(bench_start_static "$bin" "$port" "$pair_pki/nodes/$name.crt" \
        "$pair_pki/nodes/$name.key" "$pair_pki/ca/ca.crt" "$w/www" "$cpu" \
        "$w/static-$name.log")
    bench_pids+=("$pid")
    static_pids+=("$pid")
    static_ports+=("$port")
    bench_wait_port "$port"
done
# One request or pair in flight: nginx, the pair, the engine floor, in turn for --rounds rounds
# (medians by p50), so a slow spell of the machine hits all three.
for ((r = 1; r <= rounds; ++r)); do
    pki=$single_pki url=$nginx_url server_pids=("$nginx_pid")
    run "nginx_one_at_a_time_$r" enc_keys --connections 1 --pipeline 1
    pki=$pair_pki url="https://127.0.0.1:$bench_a_port" server_pids=("$bench_a_pid" "$bench_b_pid")
    run "paired_one_at_a_time_$r" paired "${pair_args[@]}" --connections 1 --pipeline 1
    url="https://127.0.0.1:${static_ports[0]}" server_pids=("${static_pids[@]}")
    run "engine_floor_one_at_a_time_$r" paired --master-sae bench-master \
        --slave-url "https://127.0.0.1:${static_ports[1]}" \
        --slave-cert "$pair_pki/saes/bench-slave.crt" \
        --slave-key "$pair_pki/saes/bench-slave.key" --connections 1 --pipeline 1
done

python3 - "$w" "$out" "$(getconf CLK_TCK)" "$rounds" <<'PY'
import json, os, sys
work, out, hz, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def cpu_s(name):
    return int(open(f"{work}/{name}.cpu").read()) / hz
def load(name):
    doc = json.load(open(f"{work}/{name}.json"))
    if doc["errors"]:
        sys.exit(f"paired: run {name} had {doc['errors']} errors: {doc['errors_by_kind']}")
    return doc
def median_run(prefix):
    """The round whose rate is the median (its latency and CPU go with it)."""
    docs = sorted(((load(f"{prefix}_{r}"), f"{prefix}_{r}") for r in range(1, rounds + 1)),
                  key=lambda d: d[0]["requests_per_s"])
    for doc, name in docs:
        print(f"paired: {name}: {doc['requests_per_s']:.1f} req/s", file=sys.stderr)
    return docs[len(docs) // 2]
def median_p50(prefix):
    """The round whose p50 is the median (its p99 and p999 go with it)."""
    docs = sorted((load(f"{prefix}_{r}") for r in range(1, rounds + 1)),
                  key=lambda d: d["latency_ms"]["p50"])
    print(f"paired: {prefix} p50 by round: "
          + ", ".join(f"{d['latency_ms']['p50'] * 1000:.1f}" for d in docs) + " us",
          file=sys.stderr)
    return docs[len(docs) // 2]
(enc, enc_name), (pair, pair_name) = median_run("enc_keys"), median_run("paired")
floor, pair1 = median_p50("nginx_one_at_a_time"), median_p50("paired_one_at_a_time")
engine_floor = median_p50("engine_floor_one_at_a_time")
rows = []
def row(name, value, unit, ref_name, ref_value, ref_unit=None):
    rows.append({"name": name, "value": value, "unit": unit,
                 "reference": {"name": ref_name, "value": ref_value, "unit": ref_unit or unit},
                 "ratio": value / ref_value if ref_value else 0.0})
row("paired_pairs_per_s", pair["requests_per_s"], "pairs/s",
    "single_node_enc_keys_req_per_s", enc["requests_per_s"], "req/s")
# The same per second of server CPU (both nodes' for a pair): what a pair costs the KMEs
# against what one enc_keys costs, whatever the client and the core sharing did.
# A short run (--smoke) can take less than one clock tick of server CPU: no row then.
if cpu_s(pair_name) > 0 and cpu_s(enc_name) > 0:
    row("paired_pairs_per_server_cpu_s", pair["successes"] / cpu_s(pair_name), "pairs/cpu-s",
        "enc_keys_per_server_cpu_s", enc["successes"] / cpu_s(enc_name), "req/cpu-s")
else:
    print("paired: runs too short to measure server CPU; no per-CPU row", file=sys.stderr)
# Two sites, each node on a core of its own (the deployment this models; here bench-b shares
# core 1 with keyrail-bench): pairs/s are bounded by the busier node, so pairs per CPU-second
# of the busier node against enc_keys per CPU-second of the single node.
node_cpu = [int(x) / hz for x in open(f"{work}/{pair_name}.cpus").read().split()]
if len(node_cpu) == 2 and min(node_cpu) > 0 and cpu_s(enc_name) > 0:
    busiest = max(node_cpu)
    row("paired_pairs_per_busiest_node_cpu_s", pair["successes"] / busiest, "pairs/cpu-s",
        "enc_keys_per_server_cpu_s", enc["successes"] / cpu_s(enc_name), "req/cpu-s")
    row("paired_master_node_cpu_s", node_cpu[0], "cpu-s", "slave_node_cpu_s", node_cpu[1])
# Latency with one pair in flight (the targets), against one request at a time to nginx: the
# floor of this machine for a single HTTPS round trip; a pair is two of them.
for p in ("p50", "p99", "p999"):
    row(f"paired_latency_{p}", pair1["latency_ms"][p] * 1000.0, "us",
        f"nginx_one_request_latency_{p}", floor["latency_ms"][p] * 1000.0)
# Against the same pair of requests to two keyrail-static servers in the nodes' places: what
# the key work on both nodes and the peer notice add to the engine's two round trips.
for p in ("p50", "p99", "p999"):
    row(f"paired_latency_{p}_vs_engine_floor", pair1["latency_ms"][p] * 1000.0, "us",
        f"engine_static_pair_latency_{p}", engine_floor["latency_ms"][p] * 1000.0)
# Latency under the closed-loop load of the throughput run (queueing included).
for p in ("p50", "p99", "p999"):
    row(f"paired_loaded_latency_{p}", pair["latency_ms"][p] * 1000.0, "us",
        f"enc_keys_loaded_latency_{p}", enc["latency_ms"][p] * 1000.0)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
            if l.startswith("model name")), "unknown cpu")
doc = {"suite": "paired", "commit": os.environ.get("KEYRAIL_COMMIT", "unknown"),
       "machine": f"{cpu}, {os.cpu_count()} cpus",
       "placement": "reference node and nginx on core 0; master node bench-a on core 0, "
                    "slave node bench-b on core 1; keyrail-bench on core 1; all running "
                    "throughout; for the engine floor, keyrail-static on core 0 and core 1 "
                    "in bench-a's and bench-b's places",
       "rounds": f"{rounds} alternating reference/pair throughput runs, medians",
       "results": rows}
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
for r in rows:
    print(f'{r["name"]:40s} {r["value"]:12.1f} {r["unit"]:8s} ref {r["reference"]["value"]:12.1f}'
          f' {r["reference"]["unit"]:6s} ratio {r["ratio"]:.3f}')
PY
