#pragma once
// What the per-shard parts of a node share: for each shard, its ETSI 014 and peer protocol
// instances (registered on that shard's thread when the engine makes them) and how many
// dec_keys wait there; the key links. Cross-shard work goes through the engine's rings as
// shard messages (kinds below), never by touching another shard's objects.
// Lives on: created before the server runs; slots are written by their own shard only.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "dataplane/node/key_forward.h"
#include "dataplane/node/peer_link.h"
#include "engine/protocol.h"

namespace keyrail::dataplane::node {

class etsi_protocol;
class local_key_service;
class peer_protocol;

struct shard_slot {
    etsi_protocol* etsi = nullptr; // written once on the slot's shard
    peer_protocol* peer = nullptr;
    local_key_service* service = nullptr; // the ETSI protocol's (forwarded key calls)
    std::atomic<std::uint32_t> dec_waiters{0}; // dec_keys parked on this shard
};

class node_runtime {
public:
    // Shard message kinds (engine::shard_message::kind).
    static constexpr std::uint32_t msg_flush_link = 0x6b720001; // handle: link index
    static constexpr std::uint32_t msg_wake_dec = 0x6b720002;
    static constexpr std::uint32_t msg_forward = 0x6b720003;      // handle: call index
    static constexpr std::uint32_t msg_forward_done = 0x6b720004; // handle: call index
    // The shard where every key source lives: their timers, the peer connections, the group
    // commit, and every source call (other shards forward theirs, key_forward.h).
    static constexpr std::size_t key_shard = 0;

    // forward: the buffers of one request's keys, for each shard's forward_pool.
    node_runtime(std::size_t shard_count, std::vector<peer_link*> links,
                 const forward_limits& forward = {})
        : _slots(std::make_unique<shard_slot[]>(shard_count)), _shard_count(shard_count),
          _links(std::move(links)),
          _pools(std::make_unique<std::unique_ptr<forward_pool>[]>(shard_count)) {
        for (std::size_t i = 0; i < shard_count; ++i) {
            _pools[i] = std::make_unique<forward_pool>(forward);
        }
    }

    [[nodiscard]] shard_slot& slot(std::size_t shard) noexcept { return _slots[shard]; }
    [[nodiscard]] std::size_t shard_count() const noexcept { return _shard_count; }
    [[nodiscard]] const std::vector<peer_link*>& links() const noexcept { return _links; }
    // Shard `shard`'s forwarded calls (key_forward.h). Owned here, not by the shard's
    // protocol, so a call the key shard still holds outlives a shard that stopped first.
    [[nodiscard]] forward_pool& pool(std::size_t shard) noexcept { return *_pools[shard]; }

    // From any shard: the shard that holds link's connection sends its queued notices soon
    // (one message per batch of requests). Nothing happens while the link is down: the
    // notices go out when it comes back.
    void request_flush(engine::shard_context& from, std::size_t link) noexcept {
        peer_link& l = *_links[link];
        const link_endpoint at = l.endpoint();
        if (!at.attached || l.flush_queued.exchange(true, std::memory_order_acq_rel)) {
            return;
        }
        engine::shard_message m;
        m.kind = msg_flush_link;
        m.handle = link;
        if (!from.post(at.shard, m)) {
            // Ring full: the connection shard's periodic flush picks the notices up.
            l.flush_queued.store(false, std::memory_order_release);
        }
    }

    // From any shard: every shard with parked dec_keys retries them (new keys arrived).
    void wake_dec_waiters(engine::shard_context& from) noexcept {
        for (std::size_t s = 0; s < _shard_count; ++s) {
            if (_slots[s].dec_waiters.load(std::memory_order_acquire) == 0) {
                continue;
            }
            engine::shard_message m;
            m.kind = msg_wake_dec;
            (void)from.post(s, m); // a full ring: the waiters' own deadline answers them
        }
    }

private:
    std::unique_ptr<shard_slot[]> _slots;
    std::size_t _shard_count;
    std::vector<peer_link*> _links;
    std::unique_ptr<std::unique_ptr<forward_pool>[]> _pools;
};

} // namespace keyrail::dataplane::node
