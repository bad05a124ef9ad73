#pragma once
// Leases across shards. The home shard of a stream is its lease authority (behind the
// lease_authority interface, so a later wave can move it to etcd); each serving shard holds a
// lease_client that hands out sequence numbers from its leases without locks or messages, and
// asks for more through a bounded SPSC ring before it runs dry.
// Lives on: lease_server on the home shard; lease_client on one serving shard; a
// lease_channel is shared by exactly those two (one producer and one consumer per ring).
#include "dataplane/store/types.h"
#include "engine/result.h"
#include "engine/spsc_ring.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace keyrail::dataplane {

class stream;

class lease_authority {
public:
    virtual ~lease_authority() = default;
    // Up to block_count owned seqs; the bound is durable before this returns.
    [[nodiscard]] virtual result<lease> grant(stream_id id, std::uint64_t block_count) noexcept = 0;
    // Unused seqs of a lease, from `from` on: never handed out again.
    virtual void release(const lease& l, seq_t from) noexcept = 0;
};

// The authority for streams whose home shard is this one.
class home_lease_authority final : public lease_authority {
public:
    explicit home_lease_authority(std::span<stream* const> streams) noexcept : _streams(streams) {}
    [[nodiscard]] result<lease> grant(stream_id id, std::uint64_t block_count) noexcept override;
    void release(const lease& l, seq_t from) noexcept override;

private:
    [[nodiscard]] stream* find(stream_id id) const noexcept;
    std::span<stream* const> _streams;
};

struct lease_request {
    stream_id stream{};
    std::uint32_t block_count = 0; // 0: give back `returned`
    lease returned{};
    seq_t returned_from = 0;
};

struct lease_grant {
    lease granted{};
    int error = 0; // 0 or a dataplane::errc value
};

inline constexpr std::size_t lease_ring_capacity = 16;

struct lease_channel {
    engine::spsc_ring<lease_request, lease_ring_capacity> requests; // client -> server
    engine::spsc_ring<lease_grant, lease_ring_capacity> grants;     // server -> client
};

// Serves every channel's requests through the authority. Never blocks: a grant that does not
// fit its ring waits in a per-channel slot for the next poll.
class lease_server {
public:
    lease_server(lease_authority& authority, std::span<lease_channel> channels) noexcept;
    // Returns the number of requests handled.
    std::size_t poll() noexcept;

private:
    static constexpr std::size_t channels_max = 64;
    lease_authority& _authority;
    std::span<lease_channel> _channels;
    std::array<lease_grant, channels_max> _held{};
    std::array<bool, channels_max> _holding{};
};

// A serving shard's supply of sequence numbers for one stream.
class lease_client {
public:
    // Asks for lease_blocks at a time, and again once fewer than low_water remain.
    lease_client(lease_channel& channel, stream_id id, std::uint32_t lease_blocks,
                 std::uint32_t low_water) noexcept;

    // Next owned seq; false when none is at hand (a request is in flight; retry after poll).
    [[nodiscard]] bool next(seq_t& out) noexcept;
    // Collects grants; returns the last error the authority reported (0 if none).
    int poll() noexcept;
    [[nodiscard]] std::uint64_t remaining() const noexcept;
    // Gives back every unused seq (shutdown, rebalancing). errc::ring_full if it cannot now.
    [[nodiscard]] result<void> give_back() noexcept;

private:
    void maybe_request() noexcept;
    static constexpr std::size_t leases_max = 4;
    lease_channel& _channel;
    stream_id _stream;
    std::uint32_t _lease_blocks;
    std::uint32_t _low_water;
    std::array<lease, leases_max> _leases{};
    std::array<seq_t, leases_max> _cursor{};
    std::size_t _head = 0;
    std::size_t _count = 0;
    bool _in_flight = false;
};

} // namespace keyrail::dataplane
