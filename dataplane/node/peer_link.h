#pragma once
// One key link to a neighbour node, as every shard sees it: the link's stream (a shared
// local_source), whether the link secret has been confirmed with the peer, and which shard
// holds the peer connection now. The per-shard pieces (etsi_protocol, peer_protocol) meet
// here and in node_runtime.
//
// Trust: a link serves keys only once key confirmation at Hello has passed, in this run or
// an earlier one (a marker file in the store directory holds the confirmation value, which
// reveals nothing about the secret). A mismatch at Hello stops serving and removes the marker,
// so a wrong secret fails loudly instead of as keys that differ at the two ends.
// Lives on: created at start-up; then shared by every shard (atomics and one small mutex).
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "dataplane/node/local_source.h"
#include "engine/protocol.h"

namespace keyrail::dataplane::node {

enum class link_trust : std::uint8_t { unconfirmed, confirmed, mismatch };

struct link_endpoint {
    bool attached = false;
    std::size_t shard = 0;
    engine::connection_id id{};
};

class peer_link {
public:
    // confirmation: the driver's key-confirmation value (equal at both ends if and only if the
    // secrets agree); marker: the file that remembers a passed confirmation across restarts.
    peer_link(std::string link_id, std::string self_node, std::string peer_node,
              std::uint64_t rate_bps, local_source& source,
              std::span<const std::uint8_t> confirmation, std::filesystem::path marker);
    ~peer_link();
    peer_link(const peer_link&) = delete;
    peer_link& operator=(const peer_link&) = delete;

    [[nodiscard]] const std::string& id() const noexcept { return _id; }
    [[nodiscard]] const std::string& self_node() const noexcept { return _self; }
    [[nodiscard]] const std::string& peer_node() const noexcept { return _peer; }
    [[nodiscard]] std::uint64_t rate_bps() const noexcept { return _rate_bps; }
    [[nodiscard]] local_source& source() noexcept { return _source; }
    [[nodiscard]] const local_source& source() const noexcept { return _source; }

    // HMAC-SHA-256 keyed by the confirmation value over "keyrail-link-confirm" || 0 ||
    // link id || 0 || sender node id || 0 || sender nonce || session, where session is the
    // connection's TLS exporter value: a Hello replayed on another connection fails.
    [[nodiscard]] std::array<std::byte, 32> confirm_value(
        std::string_view sender_node, std::span<const std::byte, 16> nonce,
        std::span<const std::byte, 32> session) const noexcept;

    [[nodiscard]] link_trust trust() const noexcept {
        return _trust.load(std::memory_order_acquire);
    }
    [[nodiscard]] bool serving() const noexcept { return trust() == link_trust::confirmed; }
    // Hello passed: serve, and remember it (the marker is written once).
    void confirmed() noexcept;
    // Hello failed: stop serving until a Hello passes again.
    void mismatched() noexcept;

    // The connection that carries the link: attach after Hello, detach on close (false when
    // another connection has replaced it since).
    void attach(std::size_t shard, engine::connection_id id) noexcept;
    bool detach(std::size_t shard, engine::connection_id id) noexcept;
    [[nodiscard]] link_endpoint endpoint() const noexcept;

    // Set by whoever asks the connection's shard to flush, cleared by the flush: at most one
    // flush message in flight per link.
    std::atomic<bool> flush_queued{false};

private:
    std::string _id;
    std::string _self;
    std::string _peer;
    std::uint64_t _rate_bps = 0;
    local_source& _source;
    std::array<std::uint8_t, 32> _confirm_key{};
    std::size_t _confirm_key_bytes = 0;
    std::filesystem::path _marker;
    std::string _marker_text; // hex of the confirmation value
    std::atomic<link_trust> _trust{link_trust::unconfirmed};
    mutable std::mutex _endpoint_lock;
    link_endpoint _endpoint;
};

} // namespace keyrail::dataplane::node
