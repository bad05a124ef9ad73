#pragma once
// The ETSI 014 key_service of one shard: checks the SAEs against the settings, maps them to the
// store's sae_id (settings index + 1), and picks the key source of the pair:
// - every slave homed here: the node's local stream (local_source without a peer);
// - slaves homed at one neighbour (and perhaps some here): the stream of the link to it, from
//   this node's own share at once, the peer told by a batched Reserve (peer_link);
// - a slave further away, or slaves at two different neighbours: 503 until relay exists.
// dec_keys tries the stream that holds the keys; keys of a peer's master that have not
// arrived yet answer errc::pending while the caller may wait (the ETSI protocol parks the
// request and asks again), then not_found.
// Lives on: one instance per shard; the sources and links behind it are shared.
#include <cstdint>
#include <optional>
#include <vector>

#include "dataplane/etsi014/key_service.h"
#include "dataplane/node/local_source.h"
#include "dataplane/node/settings.h"
#include "engine/protocol.h"

namespace keyrail::dataplane::node {

class node_runtime;
class peer_link;

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
    // source may be null: pairs homed here get 503. runtime may be null (no links; tests).
    local_key_service(const settings& cfg, local_source* source, const clock_source& clock,
                      node_runtime* runtime = nullptr) noexcept
        : _cfg(cfg), _source(source), _clock(clock), _runtime(runtime) {}

    // Before each request: the shard it runs on (for flush messages) and whether dec_keys may
    // answer pending (false once the caller's wait is over).
    void begin_request(engine::shard_context& shard, bool may_wait) noexcept {
        _shard = &shard;
        _may_wait = may_wait;
    }

    [[nodiscard]] result<etsi014::status_info> status(std::string_view master_sae_id,
                                                      std::string_view slave_sae_id) noexcept override;
    [[nodiscard]] result<etsi014::status_info> limits(std::string_view master_sae_id,
                                                      std::string_view slave_sae_id) noexcept override;
    [[nodiscard]] result<void> enc_keys(const etsi014::enc_request& req,
                                        std::span<etsi014::key_id> ids_out,
                                        std::span<std::byte> key_bytes_out) noexcept override;
    [[nodiscard]] result<void> dec_keys(const etsi014::dec_request& req,
                                        std::span<std::byte> key_bytes_out,
                                        std::span<std::uint32_t> key_bytes_each_out) noexcept override;

private:
    [[nodiscard]] result<etsi014::status_info>
    status_of(std::string_view master_sae_id, std::string_view slave_sae_id,
              bool with_counts) noexcept;
    // The key source for keys to these slaves: the local stream, or link index's stream.
    struct route {
        local_source* source = nullptr;
        std::optional<std::size_t> link; // set for a link stream
        std::string_view target_kme;
    };
    [[nodiscard]] result<sae_id> known_sae(std::string_view id) const noexcept;
    [[nodiscard]] result<sae_id> local_sae(std::string_view id) const noexcept;
    [[nodiscard]] result<route> route_to(std::span<const sae_id> slaves) const noexcept;

    const settings& _cfg;
    local_source* _source;
    const clock_source& _clock;
    node_runtime* _runtime;
    engine::shard_context* _shard = nullptr;
    bool _may_wait = false;
};

} // namespace keyrail::dataplane::node
