#pragma once
// What the ETSI 014 shim needs from the rest of the node. The node implements it over the
// key store, the SAE registry and routing; tests implement it in memory
// (dataplane/etsi014/fake_key_service.h). SAE IDs passed in are already validated
// (sae_id.h); the caller's ID always comes from its TLS certificate.
// Lives on: each shard (one instance per shard, called only from that shard's thread).
// Any call but limits() may answer errc::pending: the answer is on its way (the node forwards
// key calls to the shard that owns the keys); the handler then writes nothing and the caller
// handles the request again later, when the service makes the same calls in the same order.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "dataplane/etsi014/errc.h"
#include "dataplane/etsi014/uuid.h"
#include "engine/result.h"

namespace keyrail::dataplane::etsi014 {

// The Status of ETSI 014 (sizes in bits), plus the refill rate for 503 messages. The views
// must stay valid until the handler returns (a config snapshot is fine).
struct status_info {
    std::string_view source_kme_id;
    std::string_view target_kme_id;
    std::string_view master_sae_id;
    std::string_view slave_sae_id;
    std::uint64_t key_size_bits = 0; // default size of enc_keys
    std::uint64_t stored_key_count = 0;
    std::uint64_t max_key_count = 0;
    std::uint64_t max_key_per_request = 0;
    std::uint64_t max_key_size_bits = 0;
    std::uint64_t min_key_size_bits = 0;
    std::uint64_t max_sae_id_count = 0; // 0: no multicast
    std::uint64_t key_rate_per_s = 0;   // not in the Status JSON; quoted in 503 messages
};

struct enc_request {
    std::string_view master_sae_id; // the caller, from its certificate
    std::string_view slave_sae_id;  // from the path
    std::span<const std::string_view> additional_slave_sae_ids;
    std::uint32_t number = 1;    // >= 1, <= status max_key_per_request
    std::uint32_t size_bits = 0; // multiple of 8, within status min/max
};

struct dec_request {
    std::string_view slave_sae_id;  // the caller, from its certificate
    std::string_view master_sae_id; // from the path
    std::span<const key_id> ids;    // distinct, at least one
};

class key_service {
public:
    virtual ~key_service() = default;

    // Status of the pair (master, slave). The handler calls it with the caller as master for
    // status and enc_keys. Errors: unauthorized, unknown_sae, unavailable.
    [[nodiscard]] virtual result<status_info> status(std::string_view master_sae_id,
                                                     std::string_view slave_sae_id) noexcept = 0;

    // What enc_keys checks a request against: status() without the counts (stored_key_count
    // is 0), which a node may only get exactly by taking in what its device delivered. The
    // handler calls it for every enc_keys. Errors: as status().
    [[nodiscard]] virtual result<status_info> limits(std::string_view master_sae_id,
                                                     std::string_view slave_sae_id) noexcept {
        return status(master_sae_id, slave_sae_id);
    }

    // Reserves req.number keys of req.size_bits / 8 bytes each for the master, the slave and
    // every additional slave, all or nothing. Writes key i's ID to ids_out[i] (a fresh UUIDv4,
    // never derived from the key) and its bytes to key_bytes_out[i * size, (i + 1) * size).
    // Errors: exhausted (the handler then calls status() for the counts it quotes),
    // unauthorized, unknown_sae, size_unsupported, number_unsupported, too_many_slaves,
    // unavailable.
    [[nodiscard]] virtual result<void> enc_keys(const enc_request& req, std::span<key_id> ids_out,
                                                std::span<std::byte> key_bytes_out) noexcept = 0;

    // Delivers the keys req.ids that the master reserved for this slave, all or nothing; they
    // then leave the pool. Writes them packed in request order into key_bytes_out and each
    // key's size in bytes to key_bytes_each_out[i]. Errors: not_found (unknown or already
    // delivered), unauthorized (the caller is not a slave named when they were reserved),
    // buffer_too_small, unavailable.
    [[nodiscard]] virtual result<void>
    dec_keys(const dec_request& req, std::span<std::byte> key_bytes_out,
             std::span<std::uint32_t> key_bytes_each_out) noexcept = 0;
};

} // namespace keyrail::dataplane::etsi014
