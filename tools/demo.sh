#!/usr/bin/env bash
# The main job: a local keyrail network serving real ETSI GS QKD 014 requests on loopback.
#   tools/demo.sh         set up (packages, release build), generate certificates and configs,
#                         start the network, run real ETSI 014 requests with curl (master SAE
#                         enc_keys, slave SAE dec_keys with the returned IDs), show that the
#                         keys match, and leave the network running
#   tools/demo.sh stop    stop every node the demo started (by PID), exit 0 after their drain
#   tools/demo.sh status  which nodes are running
# Everything lives in build/demo/: pki/, one directory per node, network.json (nodes with their
# ETSI 014 URL and CA file, SAEs with their home node, certificate and key, links), so scripts,
# keyrail-bench and tests read the network from there instead of guessing ports and paths.
#
# Today the network has one node, kme-a, with SAEs alice and bob homed on it: keys come from
# a simulated QKD link's driver through the store. Nodes B and C, the peer protocol between
# them and relays through B arrive with the two-node work; this script grows with it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
demo=$root/build/demo
bin=$root/build/release/tools

stop_nodes() {
    local pidfile pid stopped=0
    for pidfile in "$demo"/*/keyraild.pid; do
        [[ -f "$pidfile" ]] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                echo "demo: node pid $pid did not drain in 10 s; killing it" >&2
                kill -KILL "$pid" 2>/dev/null || true
            fi
            stopped=$((stopped + 1))
        fi
        rm -f "$pidfile"
    done
    echo "demo: stopped $stopped node(s)"
}

case "${1:-start}" in
stop)
    stop_nodes
    exit 0
    ;;
status)
    for pidfile in "$demo"/*/keyraild.pid; do
        [[ -f "$pidfile" ]] || continue
        node=$(basename "$(dirname "$pidfile")")
        if kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "$node: running (pid $(cat "$pidfile"))"
        else
            echo "$node: not running"
        fi
    done
    exit 0
    ;;
start) ;;
*)
    echo "usage: tools/demo.sh [start|stop|status]" >&2
    exit 2
    ;;
esac

tools/setup.sh
mkdir -p "$demo"
stop_nodes >/dev/null

# free_port: a port on 127.0.0.1 that nothing listens on now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Certificates: one CA for SAEs and nodes (keyrail cert makes them; no openssl incantations).
if [[ ! -f "$demo/pki/ca/ca.crt" ]]; then
    "$bin/keyrail" cert ca --out "$demo/pki/ca" --cn "keyrail demo CA"
    "$bin/keyrail" cert node --ca "$demo/pki/ca" --id kme-a --out "$demo/pki/nodes"
    for sae in alice bob; do
        "$bin/keyrail" cert sae --ca "$demo/pki/ca" --id "$sae" --out "$demo/pki/saes"
    done
fi

node=kme-a
dir=$demo/$node
mkdir -p "$dir"
umask 077
[[ -f "$dir/master.key" ]] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/master.key"
[[ -f "$dir/link-a-b.hex" ]] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/link-a-b.hex"
umask 022
port=$(free_port)
cat > "$dir/node.yaml" <<YAML
# Written by tools/demo.sh.
node:
  id: $node
  sae_api: {address: 127.0.0.1, port: $port}
  peer_api: {address: 127.0.0.1, port: $(free_port)}
  admin_api: {address: 127.0.0.1, port: $(free_port)}
tls:
  cert: ../pki/nodes/$node.crt
  key: ../pki/nodes/$node.key
  sae_ca: ../pki/ca/ca.crt
  peer_ca: ../pki/ca/ca.crt
sae_identity: {mode: san_uri, san_uri_prefix: "urn:keyrail:sae:"}
saes:
  - {id: alice, home_node: $node}
  - {id: bob, home_node: $node}
store:
  dir: store
  master_key_file: master.key
  durability: power
links:
  - id: a-b
    peer: kme-b
    peer_address: {address: 127.0.0.1, port: $(free_port)}
    kind: qkd
    driver:
      sim: {secret_file: link-a-b.hex, rate_bps: 1000000, burst: {blocks: 64, jitter_percent: 20}}
limits: {key_size: 256, max_key_per_request: 128, max_key_count: 100000}
shards: 2
YAML
"$bin/keyrail" config check "$dir/node.yaml"
# Its output goes to the log: nothing of the node may hold our stdout (a pipe) open.
(cd "$dir" && exec "$bin/keyraild" --config node.yaml >>keyraild.log 2>&1) &
echo $! > "$dir/keyraild.pid"
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

cat > "$demo/network.json" <<JSON
{
  "nodes": [
    {"node_id": "$node", "etsi014_url": "https://127.0.0.1:$port", "ca_file": "$demo/pki/ca/ca.crt",
     "pid_file": "$dir/keyraild.pid", "log_file": "$dir/keyraild.log"}
  ],
  "saes": [
    {"id": "alice", "home_node": "$node", "cert": "$demo/pki/saes/alice.crt", "key": "$demo/pki/saes/alice.key"},
    {"id": "bob", "home_node": "$node", "cert": "$demo/pki/saes/bob.crt", "key": "$demo/pki/saes/bob.key"}
  ],
  "links": [
    {"id": "a-b", "nodes": ["$node", "kme-b"], "kind": "qkd", "driver": "sim", "note": "kme-b is not started yet"}
  ]
}
JSON

url=https://127.0.0.1:$port/api/v1/keys
as() { # as SAE curl-args...: a request with that SAE's certificate
    local sae=$1
    shift
    curl -sS --cacert "$demo/pki/ca/ca.crt" --cert "$demo/pki/saes/$sae.crt" \
        --key "$demo/pki/saes/$sae.key" "$@"
}
sleep 0.5 # let the simulated link deliver its first blocks
echo
echo "== alice asks her KME for the status of keys shared with bob"
as alice "$url/bob/status"
echo
echo "== alice (master) gets 2 keys of 256 bits for bob: POST enc_keys"
enc=$(as alice -d '{"number": 2, "size": 256}' "$url/bob/enc_keys")
echo "$enc"
ids=$(python3 -c 'import json,sys; print(json.dumps({"key_IDs":[{"key_ID":k["key_ID"]} for k in json.load(sys.stdin)["keys"]]}))' <<<"$enc")
echo
echo "== bob (slave) fetches the same keys by ID: POST dec_keys"
dec=$(as bob -d "$ids" "$url/alice/dec_keys")
echo "$dec"
echo
python3 - "$enc" "$dec" <<'PY'
import json, sys
enc = {k["key_ID"]: k["key"] for k in json.loads(sys.argv[1])["keys"]}
dec = {k["key_ID"]: k["key"] for k in json.loads(sys.argv[2])["keys"]}
same = enc == dec
print(f"== {len(enc)} keys: bob's keys {'equal' if same else 'DIFFER FROM'} alice's, byte for byte")
sys.exit(0 if same else 1)
PY
echo
echo "== bob asks again for the same keys: they were delivered once, so the KME refuses"
as bob -d "$ids" "$url/alice/dec_keys"
echo
echo
echo "The network is running: build/demo/network.json describes it. Stop it: tools/demo.sh stop"
