#pragma once
// The cross-shard message matrix: N x N bounded SPSC rings plus one doorbell per shard.
// Ring (from, to) has exactly one producer (shard `from`) and one consumer (shard `to`), so
// no locks are needed. Messages are trivially copyable handles, never pointers into another
// shard's heap.
//
// Waking: a shard blocks in io_uring_submit_and_wait with no timeout, and keeps a read
// posted on its doorbell eventfd. A sender pushes, then rings the target's doorbell; the
// `_rung` flag coalesces rings so a busy sender makes at most one eventfd write per wake
// cycle of the target, instead of one per message. We chose the eventfd over polling with a
// short timeout because an idle shard then costs nothing and a message is seen within the
// wake-up latency instead of within a polling period.
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>

#include "engine/assert.h"
#include "engine/errc.h"
#include "engine/limits.h"
#include "engine/result.h"
#include "engine/spsc_ring.h"

namespace keyrail::engine {

// What shards send each other. Meanings of kind, handle and arg belong to the layer above
// (a lease grant, a reservation slot, an ack that frees the sender's slot).
struct shard_message {
    std::uint32_t kind = 0;       // chosen by the layer above
    std::uint32_t from_shard = 0; // filled in by shard_context::post
    std::uint64_t handle = 0;     // slot index, store offset, key id half, ...
    std::uint64_t arg = 0;
};
static_assert(std::is_trivially_copyable_v<shard_message>);

// An eventfd whose writes are coalesced by a flag.
// Lives on: rung by any thread, answered and read by its owner shard.
class doorbell {
public:
    doorbell() noexcept = default;
    doorbell(const doorbell&) = delete;
    doorbell& operator=(const doorbell&) = delete;
    ~doorbell() {
        if (_fd >= 0) {
            ::close(_fd);
        }
    }

    // Start-up. A blocking eventfd: io_uring polls it, and the stress test blocks in read().
    [[nodiscard]] result<void> open() noexcept {
        _fd = ::eventfd(0, EFD_CLOEXEC);
        if (_fd < 0) {
            return fail(errno_error(errno));
        }
        return {};
    }

    // Any thread, after publishing what the owner should see.
    void ring() noexcept {
        // acq_rel: the release publishes the pushes made before it to the owner's exchange in
        // answer(); the acquire orders us after the owner's last answer().
        if (!_rung.exchange(true, std::memory_order_acq_rel)) {
            const std::uint64_t one = 1;
            ssize_t n = 0;
            do {
                n = ::write(_fd, &one, sizeof one);
            } while (n < 0 && errno == EINTR);
            KEYRAIL_ASSERT(n == static_cast<ssize_t>(sizeof one), "eventfd write: %zd errno %d",
                           n, errno);
        }
    }

    // Owner only, before looking for work: later rings write the eventfd again.
    void answer() noexcept {
        // Pairs with the exchange in ring(): an RMW reads the latest value, so every push made
        // before a ring that saw `true` is visible to the owner's following drain.
        (void)_rung.exchange(false, std::memory_order_acq_rel);
    }

    [[nodiscard]] int fd() const noexcept { return _fd; }

private:
    alignas(cache_line_bytes) std::atomic<bool> _rung{false};
    int _fd = -1;
};

// N x N rings of T and N doorbells. Built at start-up, before shard threads exist.
// Lives on: shared by all shards; ring (from, to) is written by `from` and read by `to`.
template <class T, std::size_t capacity = limits::cross_shard_ring_capacity>
class ring_matrix {
    static_assert(std::is_trivially_copyable_v<T>, "rings carry handles, not objects");

public:
    using ring_type = spsc_ring<T, capacity>;

    // Start-up only: allocates shard_count^2 rings.
    [[nodiscard]] static result<std::unique_ptr<ring_matrix>> create(std::size_t shard_count) {
        if (shard_count == 0 || shard_count > limits::shards_max) {
            return fail(errc::bad_config);
        }
        auto m = std::unique_ptr<ring_matrix>(new ring_matrix(shard_count));
        for (std::size_t i = 0; i < shard_count; ++i) {
            auto opened = m->_doorbells[i].open();
            if (!opened) {
                return fail(opened.error());
            }
        }
        return m;
    }

    [[nodiscard]] std::size_t shard_count() const noexcept { return _shard_count; }

    // Shard `from` only. errc::ring_full is backpressure: the caller keeps the message and
    // retries later (it never blocks here). Rings the target's doorbell on success.
    [[nodiscard]] result<void> try_post(std::size_t from, std::size_t to, const T& message) noexcept {
        if (from >= _shard_count || to >= _shard_count) {
            return fail(errc::bad_shard);
        }
        if (!ring(from, to).try_push(message)) {
            return fail(errc::ring_full);
        }
        _doorbells[to].ring();
        return {};
    }

    // A shard to itself: pushes without ringing the doorbell (the owner looks again before it
    // sleeps; shard::post arranges that). Same errors as try_post.
    [[nodiscard]] result<void> try_post_to_self(std::size_t shard, const T& message) noexcept {
        if (shard >= _shard_count) {
            return fail(errc::bad_shard);
        }
        if (!ring(shard, shard).try_push(message)) {
            return fail(errc::ring_full);
        }
        return {};
    }

    // Shard `to` only: pops up to budget_count messages from all its inbound rings, fairly
    // (round robin over senders), and calls fn(const T&) for each. Returns how many it popped.
    template <class Fn>
    std::size_t receive(std::size_t to, std::size_t budget_count, Fn&& fn) noexcept {
        KEYRAIL_DEBUG_ASSERT(to < _shard_count, "shard %zu of %zu", to, _shard_count);
        std::size_t popped_count = 0;
        bool progress = true;
        while (progress && popped_count < budget_count) {
            progress = false;
            for (std::size_t from = 0; from < _shard_count && popped_count < budget_count;
                 ++from) {
                T message;
                if (ring(from, to).try_pop(message)) {
                    fn(message);
                    ++popped_count;
                    progress = true;
                }
            }
        }
        return popped_count;
    }

    [[nodiscard]] doorbell& doorbell_of(std::size_t shard) noexcept {
        KEYRAIL_DEBUG_ASSERT(shard < _shard_count, "shard %zu of %zu", shard, _shard_count);
        return _doorbells[shard];
    }

private:
    explicit ring_matrix(std::size_t shard_count)
        : _shard_count(shard_count),
          _rings(std::make_unique<ring_type[]>(shard_count * shard_count)),
          _doorbells(std::make_unique<doorbell[]>(shard_count)) {}

    // A consumer's inbound rings are contiguous: index to * N + from.
    [[nodiscard]] ring_type& ring(std::size_t from, std::size_t to) noexcept {
        return _rings[to * _shard_count + from];
    }

    std::size_t _shard_count;
    std::unique_ptr<ring_type[]> _rings;
    std::unique_ptr<doorbell[]> _doorbells;
};

} // namespace keyrail::engine
