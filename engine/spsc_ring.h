#pragma once
// Bounded single-producer single-consumer ring of trivially copyable handles.
// Lives on: one producer shard, one consumer shard. Never blocks, never allocates;
// waiting when full or empty is the caller's policy.
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace keyrail::engine {

inline constexpr std::size_t cache_line_bytes = 64;

template <class T, std::size_t capacity, template <class> class Atomic = std::atomic>
class spsc_ring {
    static_assert(std::has_single_bit(capacity), "capacity must be a power of two");
    static_assert(std::is_trivially_copyable_v<T>, "rings carry handles, not objects");

public:
    // Producer shard only. False when full.
    [[nodiscard]] bool try_push(const T& value) noexcept {
        const std::uint64_t tail = _tail.load(std::memory_order_relaxed); // own variable
        if (tail - _head_seen == capacity) {
            // Pairs with the release store of _head in try_pop: the slot we are about to
            // overwrite has been read by the consumer.
            _head_seen = _head.load(std::memory_order_acquire);
            if (tail - _head_seen == capacity) {
                return false;
            }
        }
        _slots[tail & mask] = value;
        // Pairs with the acquire load of _tail in try_pop: publishes the slot.
        _tail.store(tail + 1, std::memory_order_release);
        return true;
    }

    // Consumer shard only. False when empty.
    [[nodiscard]] bool try_pop(T& out) noexcept {
        const std::uint64_t head = _head.load(std::memory_order_relaxed); // own variable
        if (head == _tail_seen) {
            // Pairs with the release store of _tail in try_push.
            _tail_seen = _tail.load(std::memory_order_acquire);
            if (head == _tail_seen) {
                return false;
            }
        }
        out = _slots[head & mask];
        // Pairs with the acquire load of _head in try_push: the slot may be reused.
        _head.store(head + 1, std::memory_order_release);
        return true;
    }

    // Approximate; exact only when called from the consumer with the producer idle.
    [[nodiscard]] std::size_t size_approx() const noexcept {
        return static_cast<std::size_t>(_tail.load(std::memory_order_acquire) -
                                        _head.load(std::memory_order_acquire));
    }

    static constexpr std::size_t capacity_count = capacity;

private:
    static constexpr std::uint64_t mask = capacity - 1;

    alignas(cache_line_bytes) Atomic<std::uint64_t> _tail{0}; // producer writes, release
    alignas(cache_line_bytes) std::uint64_t _head_seen{0};    // producer's copy of _head
    alignas(cache_line_bytes) Atomic<std::uint64_t> _head{0}; // consumer writes, release
    alignas(cache_line_bytes) std::uint64_t _tail_seen{0};    // consumer's copy of _tail
    alignas(cache_line_bytes) std::array<T, capacity> _slots{};
};

} // namespace keyrail::engine
