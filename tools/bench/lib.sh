# Shared pieces of the benchmark suites (sourced by tools/bench/<suite>.sh).
# Every process a suite starts is recorded and stopped by PID on exit; nothing is killed by name.

bench_pids=()

bench_cleanup() {
    local pid
    for pid in "${bench_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${bench_pids[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -n "${bench_work:-}" && "${KEYRAIL_BENCH_KEEP:-0}" != 1 ]]; then
        rm -rf "$bench_work"
    fi
}

# bench_free_port: an unused TCP port on 127.0.0.1 (bound and released by the kernel's choice).
bench_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# bench_wait_port PORT: waits up to 10 s for a listener on 127.0.0.1:PORT.
bench_wait_port() {
    local port=$1
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench: nothing listens on 127.0.0.1:$port after 10 s" >&2
    return 1
}

# bench_cpu_ticks PID...: user+system clock ticks of the processes and their direct children
# (all threads included), from /proc/<pid>/stat fields 14 and 15.
bench_cpu_ticks() {
    local total=0 pid child
    local pids=("$@")
    for pid in "$@"; do
        for child in $(pgrep -P "$pid" 2>/dev/null); do
            pids+=("$child")
        done
    done
    for pid in "${pids[@]}"; do
        if [[ -r /proc/$pid/stat ]]; then
            # The command name (field 2) may contain spaces; cut after its closing parenthesis.
            local rest
            rest=$(sed 's/^.*) //' "/proc/$pid/stat")
            set -- $rest
            total=$((total + ${12} + ${13}))
        fi
    done
    echo "$total"
}

# bench_start_nginx DIR PORT CERT KEY CA BODY_DIR CPU: nginx with TLS 1.3 and mandatory client
# certificates, one worker pinned to CPU, serving BODY_DIR/status.json for .../status and
# BODY_DIR/enc_keys.json for .../enc_keys. Prints the master PID.
bench_start_nginx() {
    local dir=$1 port=$2 cert=$3 key=$4 ca=$5 body=$6 cpu=$7
    mkdir -p "$dir/tmp" "$dir/logs"
    local mask
    mask=$(python3 -c "print(format(1 << $cpu, 'b'))")
    cat > "$dir/nginx.conf" <<CONF
user root;
worker_processes 1;
worker_cpu_affinity $mask;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    default_type application/json;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_protocols TLSv1.3;
        ssl_certificate $cert;
        ssl_certificate_key $key;
        ssl_client_certificate $ca;
        ssl_verify_client on;
        ssl_verify_depth 2;
        root $body;
        location ~ /status\$ { try_files /status.json =404; }
        location ~ /enc_keys\$ { try_files /enc_keys.json =404; }
    }
}
CONF
    # stdout goes to a file: the caller reads our stdout through $(...), which would otherwise
    # wait for nginx to exit.
    nginx -c "$dir/nginx.conf" -p "$dir" -g 'daemon off;' >"$dir/logs/stdout.log" 2>&1 &
    echo $!
}

# bench_start_static BIN PORT CERT KEY CA BODY_DIR CPU LOG: keyrail-static (the engine serving
# BODY_DIR's files, no key work) on core CPU, with TLS 1.3 and mandatory client certificates
# from CA, stderr to LOG. Prints its PID.
bench_start_static() {
    local bin=$1 port=$2 cert=$3 key=$4 ca=$5 body=$6 cpu=$7 log=$8
    # stdout to /dev/null: the caller reads ours through $(...), which would otherwise wait.
    taskset -c "$cpu" "$bin/keyrail-static" --port "$port" --cert "$cert" --key "$key" \
        --ca "$ca" --body-dir "$body" >/dev/null 2>"$log" &
    echo $!
}

# bench_start_node BIN DIR: certificates (one CA for the node, nginx and the SAEs
# bench-master and bench-slave, both homed on the node), a master key, a link secret, a
# one-shard node config and a running keyraild in DIR, its store filled for 2 s.
# Sets bench_node_port and bench_node_pid.
bench_start_node() {
    local bin=$1 w=$2 node_port node_pid
    "$bin/keyrail" cert ca --out "$w/pki/ca" >/dev/null
    "$bin/keyrail" cert node --ca "$w/pki/ca" --id bench-kme --out "$w/pki/nodes" >/dev/null
    for sae in bench-master bench-slave; do
        "$bin/keyrail" cert sae --ca "$w/pki/ca" --id "$sae" --out "$w/pki/saes" >/dev/null
    done
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$w/master.key"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$w/link.hex"
    chmod 600 "$w/master.key" "$w/link.hex"

    node_port=$(bench_free_port)
    cat > "$w/node.yaml" <<YAML
node:
  id: bench-kme
  sae_api: {address: 127.0.0.1, port: $node_port}
  peer_api: {address: 127.0.0.1, port: $(bench_free_port)}
  admin_api: {address: 127.0.0.1, port: $(bench_free_port)}
tls:
  cert: pki/nodes/bench-kme.crt
  key: pki/nodes/bench-kme.key
  sae_ca: pki/ca/ca.crt
  peer_ca: pki/ca/ca.crt
saes:
  - {id: bench-master, home_node: bench-kme}
  - {id: bench-slave, home_node: bench-kme}
remote_nodes: [bench-peer]
store:
  dir: store
  master_key_file: master.key
  durability: process
  capacity_blocks: 8388608
  reservations_max: 4194304
links:
  - id: bench-link
    peer: bench-peer
    peer_address: {address: 127.0.0.1, port: $(bench_free_port)}
    kind: qkd
    driver:
      sim: {secret_file: link.hex, rate_bps: 4000000000, burst: {blocks: 4096}}
limits:
  max_key_per_request: 128
  max_key_count: 4000000
  # enc_keys alone reserves keys that no slave fetches: let them expire quickly.
  key_expiry_s: 1
shards: 1
YAML

    "$bin/keyraild" --config "$w/node.yaml" 2>"$w/keyraild.log" &
    node_pid=$!
    bench_pids+=("$node_pid")
    bench_wait_port "$node_port" || { cat "$w/keyraild.log" >&2; exit 1; }
    # Let the simulated link fill the store before measuring.
    bench_wait_filled "$w/pki" bench-master bench-slave "$node_port"
    bench_node_port=$node_port
    bench_node_pid=$node_pid
}

# bench_start_pair BIN DIR CPU_A CPU_B: two one-shard nodes, bench-a on core CPU_A (home of
# bench-master) and bench-b on core CPU_B (home of bench-slave), linked by a simulated QKD link
# (both ends derive the same blocks from one secret), certificates from one CA, both stores
# filled for 2 s and the link confirmed before it returns. Sets bench_a_port, bench_b_port.
bench_start_pair() {
    local bin w=$2 cpu_a=$3 cpu_b=$4 name pid
    bin=$(cd "$1" && pwd)
    "$bin/keyrail" cert ca --out "$w/pki/ca" >/dev/null
    for name in bench-a bench-b; do
        "$bin/keyrail" cert node --ca "$w/pki/ca" --id "$name" --out "$w/pki/nodes" >/dev/null
    done
    for name in bench-master bench-slave; do
        "$bin/keyrail" cert sae --ca "$w/pki/ca" --id "$name" --out "$w/pki/saes" >/dev/null
    done
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$w/link.hex"
    chmod 600 "$w/link.hex"
    local sae_a sae_b peer_a peer_b
    sae_a=$(bench_free_port); sae_b=$(bench_free_port)
    peer_a=$(bench_free_port); peer_b=$(bench_free_port)
    bench_pair_node "$w" bench-a "$sae_a" "$peer_a" bench-b "$peer_b"
    bench_pair_node "$w" bench-b "$sae_b" "$peer_b" bench-a "$peer_a"
    for name in bench-a bench-b; do
        local cpu=$cpu_a
        [[ $name == bench-b ]] && cpu=$cpu_b
        (cd "$w/$name" && exec taskset -c "$cpu" "$bin/keyraild" --config node.yaml \
            2>keyraild.log) &
        pid=$!
        bench_pids+=("$pid")
        eval "bench_${name#bench-}_pid=$pid"
    done
    bench_wait_port "$sae_a" || { cat "$w/bench-a/keyraild.log" >&2; exit 1; }
    bench_wait_port "$sae_b" || { cat "$w/bench-b/keyraild.log" >&2; exit 1; }
    for _ in $(seq 100); do
        grep -q "link 'bench-link' to bench-b up" "$w/bench-a/keyraild.log" && break
        sleep 0.1
    done
    grep -q "link 'bench-link' to bench-b up" "$w/bench-a/keyraild.log" || {
        echo "bench: link bench-a - bench-b not up after 10 s" >&2
        tail -5 "$w/bench-a/keyraild.log" "$w/bench-b/keyraild.log" >&2
        exit 1
    }
    bench_a_port=$sae_a
    bench_b_port=$sae_b
    # Measure only once both nodes' stores are full: ingest at 4 Gbit/s takes a few seconds.
    bench_wait_filled "$w/pki" "bench-master" "bench-slave" "$sae_a"
    bench_wait_filled "$w/pki" "bench-slave" "bench-master" "$sae_b"
}

# bench_wait_filled PKI MASTER SLAVE PORT: polls MASTER's status for SLAVE until
# stored_key_count stops growing (at most 30 s).
bench_wait_filled() {
    local pki=$1 master=$2 slave=$3 port=$4 last=-1 now
    for _ in $(seq 100); do
        now=$(curl -sf --cacert "$pki/ca/ca.crt" --cert "$pki/saes/$master.crt" \
            --key "$pki/saes/$master.key" \
            "https://127.0.0.1:$port/api/v1/keys/$slave/status" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_key_count"])' ||
            echo -2)
        [[ $now == "$last" && $now -gt 0 ]] && return 0
        last=$now
        sleep 0.3
    done
    echo "bench: $master's key count for $slave still changing after 30 s" >&2
}

# bench_pair_node DIR ID SAE_PORT PEER_PORT NEIGHBOUR NEIGHBOUR_PEER_PORT: one node's config.
bench_pair_node() {
    local w=$1 id=$2 sae_port=$3 peer_port=$4 other=$5 other_peer=$6
    mkdir -p "$w/$id"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$w/$id/master.key"
    chmod 600 "$w/$id/master.key"
    cat > "$w/$id/node.yaml" <<YAML
node:
  id: $id
  sae_api: {address: 127.0.0.1, port: $sae_port}
  peer_api: {address: 127.0.0.1, port: $peer_port}
  admin_api: {address: 127.0.0.1, port: 0}
tls:
  cert: ../pki/nodes/$id.crt
  key: ../pki/nodes/$id.key
  sae_ca: ../pki/ca/ca.crt
  peer_ca: ../pki/ca/ca.crt
saes:
  - {id: bench-master, home_node: bench-a}
  - {id: bench-slave, home_node: bench-b}
store:
  dir: store
  master_key_file: master.key
  durability: process
  capacity_blocks: 8388608
  reservations_max: 1048576
links:
  - id: bench-link
    peer: $other
    peer_address: {address: 127.0.0.1, port: $other_peer}
    kind: qkd
    driver:
      sim: {secret_file: ../link.hex, rate_bps: 4000000000, burst: {blocks: 4096}}
limits:
  max_key_per_request: 128
  max_key_count: 4000000
  key_expiry_s: 5
shards: 1
YAML
}
