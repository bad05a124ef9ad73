#pragma once
// What the request path needs from the node configuration, frozen at start-up: the KME ID,
// how an SAE ID is read from a certificate, the SAEs and where they live, and the ETSI 014
// limits. keyraild translates control::config into this (dataplane does not depend on
// control). Lives on: built on the start-up thread; then read-only, shared by every shard.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keyrail::dataplane::node {

enum class identity_mode : std::uint8_t { san_uri, cn };

enum class sae_home : std::uint8_t { local, remote };

struct sae_entry {
    std::string id;
    sae_home home = sae_home::local;
    std::string home_node; // the node id of its KME (this node's when home is local)
};

// A key link to a neighbour: its id (the same at both ends) and the neighbour's node id.
struct link_entry {
    std::string id;
    std::string peer_node;
};

struct settings {
    std::string kme_id;
    identity_mode identity = identity_mode::san_uri;
    std::string san_uri_prefix = "urn:keyrail:sae:";
    std::vector<sae_entry> saes; // index + 1 is the store's sae_id value
    std::vector<link_entry> links;
    std::uint32_t dec_keys_wait_ms = 50; // how long dec_keys waits for a peer's Reserve

    std::uint32_t key_size_bits = 256;
    std::uint32_t min_key_size_bits = 8;
    std::uint32_t max_key_size_bits = 65536;
    std::uint32_t max_key_per_request = 128;
    std::uint64_t max_key_count = 100'000;
    std::uint32_t max_sae_id_count = 0;
    std::uint64_t key_rate_bits_per_s = 0; // of the local source; 0 when there is none

    // The index of the SAE with this ID, if configured.
    [[nodiscard]] std::optional<std::size_t> find_sae(std::string_view id) const noexcept;
    // The index of the link to this neighbour node, if there is one.
    [[nodiscard]] std::optional<std::size_t> find_link_to(std::string_view node) const noexcept;
};

} // namespace keyrail::dataplane::node
