#pragma once
// The ETSI 014 key_service of one shard for SAE pairs homed on this node: checks the SAEs
// against the settings, maps them to the store's sae_id (settings index + 1), and reserves and
// delivers keys on the node's local_source. A pair whose slave is homed elsewhere is answered
// 503 "Error on server side" until relay to other nodes exists.
// Lives on: one instance per shard; the local_source behind it is shared (see its comment).
#include <array>
#include <cstdint>

#include "dataplane/etsi014/key_service.h"
#include "dataplane/node/local_source.h"
#include "dataplane/node/settings.h"

namespace keyrail::dataplane::node {

// Where "now" comes from: the shard's loop clock on a shard, a fake in tests.
class clock_source {
public:
    virtual ~clock_source() = default;
    [[nodiscard]] virtual std::uint64_t now_ns() const noexcept = 0;
};

// CLOCK_MONOTONIC, the clock the engine's shards and the block source's start time use.
class monotonic_clock final : public clock_source {
public:
    [[nodiscard]] std::uint64_t now_ns() const noexcept override;
};

class local_key_service final : public etsi014::key_service {
public:
    // source may be null: the node has no local key source, every key request gets 503.
    local_key_service(const settings& cfg, local_source* source,
                      const clock_source& clock) noexcept
        : _cfg(cfg), _source(source), _clock(clock) {}

    [[nodiscard]] result<etsi014::status_info> status(std::string_view master_sae_id,
                                                      std::string_view slave_sae_id) noexcept override;
    [[nodiscard]] result<void> enc_keys(const etsi014::enc_request& req,
                                        std::span<etsi014::key_id> ids_out,
                                        std::span<std::byte> key_bytes_out) noexcept override;
    [[nodiscard]] result<void> dec_keys(const etsi014::dec_request& req,
                                        std::span<std::byte> key_bytes_out,
                                        std::span<std::uint32_t> key_bytes_each_out) noexcept override;

private:
    // The pair's store ids, or unknown_sae / unauthorized / unavailable.
    [[nodiscard]] result<sae_id> local_sae(std::string_view id) const noexcept;

    const settings& _cfg;
    local_source* _source;
    const clock_source& _clock;
};

} // namespace keyrail::dataplane::node
