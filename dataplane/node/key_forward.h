#pragma once
// Key calls that travel between shards. Every local_source lives on the key shard (shard 0,
// which also runs their timers, holds the peer connections and makes the group commit), so
// nothing locks them. An ETSI 014 request that lands on another shard has its key calls
// (enc_keys, dec_keys, the counts of status) carried there and back by shard messages:
//
//   calling shard: fills a forward_call of its forward_pool, posts msg_forward (the call's
//     index), parks the connection;
//   key shard:     executes the call on the source; after the group commit that makes its
//     result durable (engine shard_hooks::before_output) posts msg_forward_done;
//   calling shard: records the result and wakes the connection; the request is handled
//     again and finds it (local_key_service, "forwarded calls").
//
// A call belongs to one shard at a time: the calling shard until it posts, the key shard
// until it posts back. The rings' release and acquire order its memory; nothing in it is ever
// touched by two threads at once, and no pointer crosses: messages carry the call's index.
// Lives on: a forward_pool per calling shard, owned by node_runtime; its calls as above.
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <system_error>
#include <vector>

#include "dataplane/etsi014/uuid.h"
#include "dataplane/node/local_source.h"
#include "dataplane/store/types.h"

namespace keyrail::dataplane::node {

// The sizes of one request's key material (etsi014::workspace_limits): every call buffer
// holds a whole request's.
struct forward_limits {
    std::size_t keys_max = 0;
    std::size_t key_bytes_max = 0;
};

inline constexpr std::uint32_t no_link = ~std::uint32_t{0};

struct forward_call {
    enum class op : std::uint8_t { counts, enc, dec };
    // In: filled by the calling shard.
    op what = op::counts;
    std::uint32_t link = no_link; // counts, enc: the link's stream, or no_link: the local one
    std::uint32_t key_bits = 0;   // enc
    std::uint32_t number = 0;     // enc: keys; dec: key IDs in ids
    sae_id master{};
    sae_id caller{}; // dec
    std::array<sae_id, slaves_max> slaves{};
    std::uint32_t slave_count = 0; // enc
    bool may_wait = false;         // dec: the key shard may answer pending
    std::size_t key_room = 0;      // dec: key bytes the answer can carry
    // Out: filled by the key shard.
    std::error_code error; // an etsi014::errc value; none: done
    source_counts counts{};
    // In and out: allocated once by the calling shard (forward_limits), wiped after use.
    std::unique_ptr<etsi014::key_id[]> ids;
    std::unique_ptr<std::byte[]> bytes;
    std::unique_ptr<std::uint32_t[]> sizes;
    std::size_t bytes_used = 0; // key bytes written: wiped on release
};

// A calling shard's calls. Grows on demand to calls_max (each call holds one request's
// buffers); a connection holds at most one, and a call whose connection closed while it was
// away is freed when it comes back.
// Lives on: its shard (the calls themselves travel, see above).
class forward_pool {
public:
    static constexpr std::size_t calls_max = 1024;

    // Allocates the table of calls_max entries (not the calls).
    explicit forward_pool(const forward_limits& limits);
    ~forward_pool();
    forward_pool(const forward_pool&) = delete;
    forward_pool& operator=(const forward_pool&) = delete;

    // A free call with its buffers; nullopt when calls_max are in use (or no memory).
    [[nodiscard]] std::optional<std::uint32_t> acquire() noexcept;
    // Wipes the key material the call held and frees it.
    void release(std::uint32_t index) noexcept;
    // Any thread that holds call index (the key shard, between the messages).
    [[nodiscard]] forward_call& at(std::uint32_t index) noexcept { return *_calls[index]; }
    // Whether index names a call handed out (the key shard checks a message's index).
    [[nodiscard]] bool valid(std::uint64_t index) const noexcept {
        return index < calls_max && _calls[index] != nullptr;
    }
    [[nodiscard]] const forward_limits& limits() const noexcept { return _limits; }

private:
    forward_limits _limits;
    // calls_max entries, filled on demand and never moved: the key shard reads an entry while
    // this shard adds others. An entry is written before its first post, which publishes it.
    std::unique_ptr<std::unique_ptr<forward_call>[]> _calls;
    std::uint32_t _made = 0;
    std::vector<std::uint32_t> _free;
};

} // namespace keyrail::dataplane::node
