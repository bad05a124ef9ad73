#!/usr/bin/env bash
# The main job: a local keyrail network serving real ETSI GS QKD 014 requests on loopback.
#   tools/demo.sh         set up (packages, release build), generate certificates, link secrets
#                         and configs, start three nodes, wait for link a-b, run real ETSI 014
#                         requests with curl (alice at kme-a enc_keys for bob, bob at kme-b
#                         dec_keys with the returned IDs; alice and dave both at kme-a), show
#                         that the keys match byte for byte, and leave the network running
#   tools/demo.sh stop    stop every node the demo started (by PID), exit 0 after their drain
#   tools/demo.sh status  which nodes are running
#
# The network: kme-a --(link a-b)-- kme-b --(link b-c)-- kme-c, all keyraild on 127.0.0.1.
# SAEs: alice and dave homed at kme-a, bob at kme-b, carol at kme-c (for relays through kme-b);
# every node's config lists every SAE with its home node. One demo CA signs the node and SAE
# certificates and serves as both tls.sae_ca and tls.peer_ca (fine for a demo; a deployment
# keeps them apart). Ports are fixed: node i (0, 1, 2) listens on BASE+10i+1 (SAE API), +2
# (peer API), +3 (admin API), BASE = $KEYRAIL_DEMO_PORT_BASE or 18400; a busy port is replaced
# by a free one.
#
# Everything lives in build/demo/: pki/ (ca/, nodes/, saes/), links/<link>.hex (one secret per
# link, named by both ends' configs), one directory per node (node.yaml, master.key, store/,
# keyraild.log with the previous run's in keyraild.log.prev, keyraild.pid), and network.json
# (nodes with their ETSI 014 URL, peer address, CA, PID and log files; SAEs with their home
# node, certificate and key; links), so scripts, keyrail-bench and tests read the network from
# there instead of guessing ports and paths. A re-run stops the old network, keeps valid
# certificates, secrets and stores, and reissues or recreates what is missing or stale (a new
# link secret or master key wipes the stores it fed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
demo=$root/build/demo
bin=$root/build/release/tools

nodes=(kme-a kme-b kme-c)
link_ids=(a-b b-c)
declare -A link_ends=([a-b]="kme-a kme-b" [b-c]="kme-b kme-c")
saes=(alice bob carol dave)
declare -A sae_home=([alice]=kme-a [bob]=kme-b [carol]=kme-c [dave]=kme-a)

# is_keyraild PID: PID is a live keyraild (a stale PID file never stops another process).
is_keyraild() {
    local state
    [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == keyraild ]] &&
        read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null && [[ $state != Z ]]
}

stop_nodes() {
    local pidfile pid stopped=0 pids=()
    for pidfile in "$demo"/*/keyraild.pid; do
        [[ -f "$pidfile" ]] || continue
        pid=$(cat "$pidfile")
        if is_keyraild "$pid"; then
            kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
        fi
        rm -f "$pidfile"
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do
            is_keyraild "$pid" || break
            sleep 0.1
        done
        if is_keyraild "$pid"; then
            echo "demo: node pid $pid did not drain in 10 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        stopped=$((stopped + 1))
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
        if is_keyraild "$(cat "$pidfile")"; then
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

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- ports -----------------------------------------------------------------------------------
# port_free PORT: nothing listens on 127.0.0.1:PORT (SO_REUSEADDR, as keyraild binds).
port_free() {
    python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
PY
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
base=${KEYRAIL_DEMO_PORT_BASE:-18400}
if ! [[ "$base" =~ ^[0-9]+$ ]] || ((base < 1024 || base > 65500)); then
    echo "demo: KEYRAIL_DEMO_PORT_BASE must be 1024..65500, got '$base'" >&2
    exit 2
fi
declare -A sae_port peer_port admin_port
used=" "
pick_port() { # pick_port WANTED: WANTED if free, else a free port; never one picked before
    local p=$1
    if ! port_free "$p" || [[ "$used" == *" $p "* ]]; then
        p=$(free_port)
        while [[ "$used" == *" $p "* ]]; do p=$(free_port); done
        echo "demo: port $1 is busy; using $p" >&2
    fi
    echo "$p"
}
i=0
for n in "${nodes[@]}"; do
    sae_port[$n]=$(pick_port $((base + 10 * i + 1)))
    used+="${sae_port[$n]} "
    peer_port[$n]=$(pick_port $((base + 10 * i + 2)))
    used+="${peer_port[$n]} "
    admin_port[$n]=$(pick_port $((base + 10 * i + 3)))
    used+="${admin_port[$n]} "
    i=$((i + 1))
done

# --- certificates: one CA for SAEs and nodes (keyrail cert makes them) ------------------------
pki=$demo/pki
# cert_ok BASE: BASE.crt and BASE.key exist, BASE.crt chains to the demo CA and is valid for a day.
cert_ok() {
    [[ -f "$1.crt" && -f "$1.key" ]] &&
        openssl verify -CAfile "$pki/ca/ca.crt" "$1.crt" >/dev/null 2>&1 &&
        openssl x509 -checkend 86400 -noout -in "$1.crt" >/dev/null 2>&1
}
issued=()
if ! [[ -f "$pki/ca/ca.key" ]] || ! cert_ok "$pki/ca/ca"; then
    "$bin/keyrail" cert ca --out "$pki/ca" --cn "keyrail demo CA" >/dev/null
    issued+=(CA)
fi
for n in "${nodes[@]}"; do
    if ! cert_ok "$pki/nodes/$n"; then
        "$bin/keyrail" cert node --ca "$pki/ca" --id "$n" --out "$pki/nodes" >/dev/null
        issued+=("$n")
    fi
done
for s in "${saes[@]}"; do
    if ! cert_ok "$pki/saes/$s"; then
        "$bin/keyrail" cert sae --ca "$pki/ca" --id "$s" --out "$pki/saes" >/dev/null
        issued+=("$s")
    fi
done
((${#issued[@]} == 0)) || echo "demo: certificates issued in build/demo/pki: ${issued[*]}"

# --- secrets: a master key per node, a shared secret per link ---------------------------------
hex32() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
for n in "${nodes[@]}"; do mkdir -p "$demo/$n"; done
mkdir -p "$demo/links"
umask 077
for n in "${nodes[@]}"; do
    rm -f "$demo/$n/link-a-b.hex" # the one-node demo's link secret; links/ holds them now
    if [[ ! -s "$demo/$n/master.key" ]]; then
        hex32 >"$demo/$n/master.key"
        rm -rf "$demo/$n/store" # sealed under a key that is gone
    fi
done
for l in "${link_ids[@]}"; do
    if [[ ! -s "$demo/links/$l.hex" ]]; then
        hex32 >"$demo/links/$l.hex"
        for n in ${link_ends[$l]}; do
            rm -rf "$demo/$n/store" # holds key material of the old secret
        done
    fi
done
umask 022

# --- configs --------------------------------------------------------------------------------
write_config() { # write_config NODE
    local n=$1 l a b peer h remote=()
    cat <<YAML
# Written by tools/demo.sh.
node:
  id: $n
  sae_api: {address: 127.0.0.1, port: ${sae_port[$n]}}
  peer_api: {address: 127.0.0.1, port: ${peer_port[$n]}}
  admin_api: {address: 127.0.0.1, port: ${admin_port[$n]}}
tls:
  cert: ../pki/nodes/$n.crt
  key: ../pki/nodes/$n.key
  sae_ca: ../pki/ca/ca.crt   # one demo CA for SAEs and nodes
  peer_ca: ../pki/ca/ca.crt
sae_identity: {mode: san_uri, san_uri_prefix: "urn:keyrail:sae:"}
saes:
YAML
    for s in "${saes[@]}"; do
        echo "  - {id: $s, home_node: ${sae_home[$s]}}"
    done
    local neighbours=" $n "
    for l in "${link_ids[@]}"; do
        read -r a b <<<"${link_ends[$l]}"
        [[ $a == "$n" ]] && neighbours+="$b "
        [[ $b == "$n" ]] && neighbours+="$a "
    done
    for h in "${nodes[@]}"; do
        [[ "$neighbours" == *" $h "* ]] || remote+=("$h")
    done
    if ((${#remote[@]} > 0)); then
        echo "remote_nodes: [$(
            IFS=,
            echo "${remote[*]}"
        )]"
    fi
    cat <<YAML
store:
  dir: store
  master_key_file: master.key
  durability: power
links:
YAML
    for l in "${link_ids[@]}"; do
        read -r a b <<<"${link_ends[$l]}"
        if [[ $a == "$n" ]]; then
            peer=$b
        elif [[ $b == "$n" ]]; then
            peer=$a
        else
            continue
        fi
        cat <<YAML
  - id: $l
    peer: $peer
    peer_address: {address: 127.0.0.1, port: ${peer_port[$peer]}}
    kind: qkd
    driver:
      sim:
        secret_file: ../links/$l.hex   # the same file at both ends
        rate_bps: 1000000
        burst: {blocks: 64, jitter_percent: 20}
YAML
    done
    cat <<YAML
limits: {key_size: 256, max_key_per_request: 128, max_key_count: 100000, max_SAE_ID_count: 2}
shards: 2
YAML
}
for n in "${nodes[@]}"; do
    write_config "$n" >"$demo/$n/node.yaml"
    "$bin/keyrail" config check "$demo/$n/node.yaml" >/dev/null
done

# --- start ----------------------------------------------------------------------------------
log_tail() { # log_tail NODE...: the last lines of these nodes' logs, to stderr
    local n
    for n in "$@"; do
        echo "--- $n: last lines of $demo/$n/keyraild.log" >&2
        tail -n 15 "$demo/$n/keyraild.log" >&2 || true
    done
}
for n in "${nodes[@]}"; do
    dir=$demo/$n
    [[ -f "$dir/keyraild.log" ]] && mv -f "$dir/keyraild.log" "$dir/keyraild.log.prev"
    # Its output goes to the log: nothing of the node may hold our stdout (a pipe) open.
    (cd "$dir" && exec "$bin/keyraild" --config node.yaml >keyraild.log 2>&1) &
    echo $! >"$dir/keyraild.pid"
    for _ in $(seq 100); do # until the subshell has become keyraild (or is gone)
        if is_keyraild $! || ! kill -0 $! 2>/dev/null; then break; fi
        sleep 0.01
    done
done

# network.json now, so a failed start below can be inspected with it.
{
    echo '{'
    echo '  "nodes": ['
    sep=
    for n in "${nodes[@]}"; do
        printf '%s    {"node_id": "%s", "etsi014_url": "https://127.0.0.1:%s",\n' \
            "$sep" "$n" "${sae_port[$n]}"
        printf '     "peer_address": {"address": "127.0.0.1", "port": %s},\n' "${peer_port[$n]}"
        printf '     "admin_address": {"address": "127.0.0.1", "port": %s},\n' "${admin_port[$n]}"
        printf '     "ca_file": "%s", "config_file": "%s",\n' "$pki/ca/ca.crt" "$demo/$n/node.yaml"
        printf '     "pid_file": "%s", "log_file": "%s"}' \
            "$demo/$n/keyraild.pid" "$demo/$n/keyraild.log"
        sep=$',\n'
    done
    printf '\n  ],\n  "saes": [\n'
    sep=
    for s in "${saes[@]}"; do
        printf '%s    {"id": "%s", "home_node": "%s", "cert": "%s", "key": "%s"}' "$sep" "$s" \
            "${sae_home[$s]}" "$pki/saes/$s.crt" "$pki/saes/$s.key"
        sep=$',\n'
    done
    printf '\n  ],\n  "links": [\n'
    sep=
    for l in "${link_ids[@]}"; do
        read -r a b <<<"${link_ends[$l]}"
        printf '%s    {"id": "%s", "nodes": ["%s", "%s"], "kind": "qkd", "driver": "sim",\n' \
            "$sep" "$l" "$a" "$b"
        printf '     "secret_file": "%s"}' "$demo/links/$l.hex"
        sep=$',\n'
    done
    printf '\n  ]\n}\n'
} >"$demo/network.json"
python3 -m json.tool "$demo/network.json" >/dev/null

all_alive() { # every node runs, or the demo says which exited and why
    local n
    for n in "${nodes[@]}"; do
        if ! is_keyraild "$(cat "$demo/$n/keyraild.pid")"; then
            echo "demo: $n exited" >&2
            log_tail "$n"
            exit 1
        fi
    done
}
# Each node's SAE API accepts connections (10 s), or the demo shows why not.
for n in "${nodes[@]}"; do
    for _ in $(seq 100); do
        all_alive
        (exec 3<>"/dev/tcp/127.0.0.1/${sae_port[$n]}") 2>/dev/null && continue 2
        sleep 0.1
    done
    echo "demo: $n's SAE API (127.0.0.1:${sae_port[$n]}) accepts no connection after 10 s" >&2
    log_tail "$n"
    exit 1
done
echo "demo: kme-a, kme-b, kme-c started;" \
    "SAE APIs on 127.0.0.1 ports ${sae_port[kme-a]}, ${sae_port[kme-b]}, ${sae_port[kme-c]}"

# Link a-b is up once both ends log it ("link 'a-b' to kme-b up", "link 'a-b' from kme-a up").
link_up() { # link_up LINK NODE: NODE's log says LINK is up
    grep -Eq "link '$1'( [^ ]+){0,3} up\b" "$demo/$2/keyraild.log"
}
up=0
for _ in $(seq 75); do
    all_alive
    if link_up a-b kme-a && link_up a-b kme-b; then
        up=1
        break
    fi
    sleep 0.2
done
if ((up == 0)); then
    echo "demo: link a-b did not come up within 15 s (the nodes are still running;" \
        "tools/demo.sh stop)" >&2
    log_tail kme-a kme-b
    exit 1
fi
bc="not up yet"
link_up b-c kme-b && link_up b-c kme-c && bc=up
echo "demo: link a-b up (kme-a <-> kme-b); link b-c $bc"

# --- real ETSI 014 requests -----------------------------------------------------------------
# req SAE NODE PATH [JSON]: an ETSI 014 request to NODE's SAE API with SAE's certificate (a POST
# when JSON is given); sets body and code (the HTTP status, 000 when curl failed).
req() {
    local sae=$1 node=$2 path=$3
    local args=(-sS --max-time 10 --cacert "$pki/ca/ca.crt" --cert "$pki/saes/$sae.crt"
        --key "$pki/saes/$sae.key" -o "$tmp/body" -w '%{http_code}')
    (($# >= 4)) && args+=(-H 'Content-Type: application/json' -d "$4")
    rm -f "$tmp/body"
    code=$(curl "${args[@]}" "https://127.0.0.1:${sae_port[$node]}/api/v1/keys/$path") || code=000
    body=$(cat "$tmp/body" 2>/dev/null || true)
}
expect() { # expect HTTP_STATUS WHAT: the last req answered HTTP_STATUS, or the demo fails
    if [[ "$code" != "$1" ]]; then
        echo "demo: $2: HTTP $code, expected $1: $body" >&2
        exit 1
    fi
}
json() { # json EXPR: EXPR evaluated on the last body as j
    python3 -c "import json,sys; j=json.loads(sys.argv[1]); print($1)" "$body"
}
# pair MASTER MASTER_NODE SLAVE SLAVE_NODE: enc_keys at the master's KME, dec_keys at the
# slave's with the returned IDs, keys compared byte for byte.
pair() {
    local m=$1 mn=$2 s=$3 sn=$4 enc ids
    echo
    echo "== $mn: $m (master) gets 2 keys of 256 bits for $s: POST enc_keys"
    req "$m" "$mn" "$s/enc_keys" '{"number": 2, "size": 256}'
    echo "$body"
    expect 200 "$m enc_keys at $mn"
    enc=$body
    ids=$(json 'json.dumps({"key_IDs": [{"key_ID": k["key_ID"]} for k in j["keys"]]})')
    echo
    echo "== $sn: $s (slave) fetches the same keys by ID: POST dec_keys"
    req "$s" "$sn" "$m/dec_keys" "$ids"
    echo "$body"
    expect 200 "$s dec_keys at $sn"
    echo
    python3 - "$enc" "$body" "$m@$mn" "$s@$sn" <<'PY'
import json, sys
enc = {k["key_ID"]: k["key"] for k in json.loads(sys.argv[1])["keys"]}
dec = {k["key_ID"]: k["key"] for k in json.loads(sys.argv[2])["keys"]}
same = len(enc) == 2 and enc == dec
print(f"== {'MATCH' if same else 'MISMATCH'}: {len(enc)} keys of {sys.argv[4]} "
      f"{'equal' if same else 'differ from'} {sys.argv[3]}'s, byte for byte")
sys.exit(0 if same else 1)
PY
    last_ids=$ids
}

# Key material on link a-b at kme-a: poll alice->bob's status (10 s) until 2 keys are stored.
for _ in $(seq 50); do
    req alice kme-a bob/status
    if [[ $code == 200 && $(json 'int(j.get("stored_key_count", 0) >= 2)' 2>/dev/null) == 1 ]]; then
        break
    fi
    sleep 0.2
done
echo
echo "== kme-a: alice asks for the status of keys shared with bob (homed at kme-b): GET status"
echo "$body"
expect 200 "alice status for bob at kme-a"
target=$(json 'j["target_KME_ID"]')
echo "   target_KME_ID: $target"
if [[ $target != kme-b ]]; then
    echo "demo: target_KME_ID is '$target', expected kme-b (bob's KME)" >&2
    exit 1
fi

pair alice kme-a bob kme-b
echo
echo "== kme-b: bob asks again for the same keys: they were delivered once, so the KME refuses"
req bob kme-b alice/dec_keys "$last_ids"
echo "$body"
expect 400 "bob's second dec_keys at kme-b"

pair alice kme-a dave kme-a

echo
echo "The network is running (3 nodes, build/demo/network.json). Stop it: tools/demo.sh stop"
