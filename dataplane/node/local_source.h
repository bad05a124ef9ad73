#pragma once
// The local key source of a node whose master and slave SAEs are both homed here: one key
// store stream that only this node uses (ownership stride 1), fed by a block_source (the sim
// driver) at its configured rate, and the reservation and delivery of keys on it.
//
// Lives on: shared by every shard, behind one mutex. This is a deliberate, temporary exception
// to STYLE.md's "no mutex on the data plane": a store stream may only be touched by one thread
// at a time, the engine cannot park a connection while another shard answers a message, and
// a slave's dec_keys may land on any shard. See dataplane/node/README.md for the way out
// (a shard-safe read path in the store, or deferred responses in the engine).
//
// Pumping: the engine has no timer, so blocks are pulled from the source lazily, before each
// status, enc_keys and dec_keys: the source computes what arrived by `now` (it is
// clock-injected), so the counts and the keys are the same as with a periodic pump.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "dataplane/etsi014/uuid.h"
#include "dataplane/store/stream.h"
#include "engine/result.h"

namespace keyrail::dataplane::node {

// A device that produces key blocks over time (drivers/sim's sim_link behind an adapter, so
// dataplane does not depend on drivers). Lives on: its local_source's lock.
class block_source {
public:
    virtual ~block_source() = default;
    // Writes up to max_blocks blocks that arrived by now_ns into out; returns how many.
    [[nodiscard]] virtual std::size_t produce(std::uint64_t now_ns, std::span<std::uint8_t> out,
                                              std::size_t max_blocks) noexcept = 0;
    [[nodiscard]] virtual std::uint64_t next_sequence() const noexcept = 0;
};

struct source_counts {
    std::uint64_t available_blocks = 0; // ready to reserve
    std::uint32_t block_bytes = 0;
};

struct reserve_args {
    std::uint32_t key_bits = 0;
    std::uint32_t number = 0;
    sae_id master{};
    std::span<const sae_id> slaves; // 1..slaves_max
};

class local_source {
public:
    // ingest_cap_blocks: the source pauses once this many blocks are available (the device
    // keeps them; they arrive later), so max_key_count bounds what the store holds.
    local_source(stream& s, std::unique_ptr<block_source> source,
                 std::uint64_t ingest_cap_blocks) noexcept;
    ~local_source();
    local_source(const local_source&) = delete;
    local_source& operator=(const local_source&) = delete;

    [[nodiscard]] source_counts counts(std::uint64_t now_ns) noexcept;

    // All or nothing: number keys of key_bits, IDs into ids_out, bytes packed into bytes_out.
    // Durable (committed) before it returns. Errors are etsi014::errc values: exhausted,
    // size_unsupported, unavailable.
    [[nodiscard]] result<void> reserve(std::uint64_t now_ns, const reserve_args& args,
                                       std::span<etsi014::key_id> ids_out,
                                       std::span<std::byte> bytes_out) noexcept;

    // All or nothing: the keys ids reserved by master for caller, packed into bytes_out, each
    // size into sizes_out. Durable before it returns. Errors (etsi014::errc): not_found,
    // unauthorized, buffer_too_small, unavailable.
    [[nodiscard]] result<void> deliver(std::uint64_t now_ns, sae_id master, sae_id caller,
                                       std::span<const etsi014::key_id> ids,
                                       std::span<std::byte> bytes_out,
                                       std::span<std::uint32_t> sizes_out) noexcept;

    // Makes every staged change durable (drain, shutdown).
    [[nodiscard]] result<void> commit() noexcept;

private:
    void pump_locked(std::uint64_t now_ns) noexcept;
    [[nodiscard]] result<void> commit_locked() noexcept;

    static constexpr std::size_t pump_batch_blocks = 256;

    std::mutex _lock;
    stream& _stream;
    std::unique_ptr<block_source> _source;
    std::uint64_t _ingest_cap_blocks;
    std::vector<std::uint8_t> _batch; // pump_batch_blocks blocks, wiped after each append
    bool _full_logged = false;
};

} // namespace keyrail::dataplane::node
