#pragma once
// A complete, valid node configuration for tests (the same example as control/README.md).
// Line numbers matter to config_test: append, never insert.
#include <string_view>

namespace keyrail::test {

inline constexpr std::string_view config_example = R"(# keyrail node configuration
node:
  id: kme-a
  sae_api: {address: 0.0.0.0, port: 8443}
  peer_api: {address: 0.0.0.0, port: 9443}
  admin_api: {address: 127.0.0.1, port: 9444}
tls:
  cert: certs/kme-a.crt
  key: certs/kme-a.key
  sae_ca: certs/sae-ca.crt
  peer_ca: certs/peer-ca.crt
  verify_depth: 2
sae_identity:
  mode: san_uri
  san_uri_prefix: "urn:keyrail:sae:"
saes:
  - {id: alice, home_node: kme-a}
  - {id: bob, home_node: kme-b}
  - {id: carol, home_node: kme-c}
remote_nodes: [kme-c]
store:
  dir: store
  master_key_file: master.key
  block_bits: 256
  durability: power
  capacity_blocks: 1048576
links:
  - id: a-b
    peer: kme-b
    peer_address: {address: 127.0.0.1, port: 9543}
    kind: qkd
    driver:
      sim:
        secret_file: secrets/a-b.hex
        rate_bps: 100000
        burst: {blocks: 16, jitter_percent: 20, seed: 7}
limits:
  key_size: 256
  min_key_size: 8
  max_key_size: 65536
  max_key_per_request: 128
  max_key_count: 100000
  max_SAE_ID_count: 0
  dec_keys_wait_ms: 50
  key_expiry_s: 300
shards: 0
)";

} // namespace keyrail::test
