// Two pinned "shard" threads exchange messages through the ring matrix and sleep on their
// doorbells when idle, as shards do (without io_uring, which TSan cannot see). Shard 0 sends
// sequence numbers carrying a slot handle from a small pool; shard 1 checks the order and
// sends each handle back, and shard 0 frees the slot: the message round trip of STYLE.md.
// A lost wake-up shows as a doorbell wait that times out while work is owed.
// KEYRAIL_STRESS_ITERATIONS sets the count (default 10^6). Clean under tsan.
#include "engine/ring_matrix.h"
#include "tests/support/env.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cstdint>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace keyrail::engine {
namespace {

constexpr std::uint32_t kind_data = 1;
constexpr std::uint32_t kind_ack = 2;
constexpr std::size_t pool_slots = 512; // more than one ring: exercises ring_full

void pin_to(unsigned cpu) {
    const unsigned cpus = std::thread::hardware_concurrency();
    if (cpus < 2) {
        return;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % cpus, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// Blocks on the doorbell until rung; false if nothing rang for 10 s (a lost wake-up).
bool sleep_on(doorbell& bell) {
    pollfd p{bell.fd(), POLLIN, 0};
    if (::poll(&p, 1, 10'000) != 1) {
        return false;
    }
    std::uint64_t count = 0;
    return ::read(bell.fd(), &count, sizeof count) == static_cast<ssize_t>(sizeof count);
}

using matrix_type = ring_matrix<shard_message, 256>;

TEST(ring_matrix_stress, round_trips_in_order_with_doorbells) {
    const std::uint64_t count = test::env_u64("KEYRAIL_STRESS_ITERATIONS", 1'000'000);
    const std::uint64_t seed = test::seed("ring_matrix_stress");
    auto created = matrix_type::create(2);
    ASSERT_TRUE(created.has_value());
    matrix_type& matrix = **created;

    std::uint64_t lost_wakeups_0 = 0;
    std::uint64_t lost_wakeups_1 = 0;
    std::uint64_t order_errors = 0;
    std::uint64_t acked = 0;

    std::thread shard1([&] {
        pin_to(1);
        std::uint64_t expected = seed;
        std::uint64_t received = 0;
        std::vector<shard_message> unsent; // acks waiting for room: backpressure, not loss
        doorbell& bell = matrix.doorbell_of(1);
        while (received < count || !unsent.empty()) {
            bell.answer();
            std::size_t work = matrix.receive(1, 64, [&](const shard_message& m) {
                if (m.kind != kind_data || m.arg != expected) {
                    ++order_errors;
                }
                expected = m.arg + 1;
                ++received;
                unsent.push_back(shard_message{kind_ack, 1, m.handle, m.arg});
            });
            std::size_t sent = 0;
            while (sent < unsent.size() && matrix.try_post(1, 0, unsent[sent]).has_value()) {
                ++sent;
            }
            unsent.erase(unsent.begin(), unsent.begin() + static_cast<std::ptrdiff_t>(sent));
            work += sent;
            if (work == 0 && !sleep_on(bell)) {
                ++lost_wakeups_1;
                break;
            }
        }
    });

    pin_to(0);
    std::vector<std::uint64_t> free_slots;
    std::vector<bool> slot_busy(pool_slots, false);
    for (std::uint64_t s = 0; s < pool_slots; ++s) {
        free_slots.push_back(s);
    }
    std::uint64_t next = 0;
    doorbell& bell = matrix.doorbell_of(0);
    while (acked < count) {
        bell.answer();
        std::size_t work = matrix.receive(0, 64, [&](const shard_message& m) {
            EXPECT_EQ(m.kind, kind_ack);
            EXPECT_TRUE(slot_busy[m.handle]);
            slot_busy[m.handle] = false;
            free_slots.push_back(m.handle);
            ++acked;
        });
        while (next < count && !free_slots.empty()) {
            const std::uint64_t slot = free_slots.back();
            if (!matrix.try_post(0, 1, shard_message{kind_data, 0, slot, seed + next})
                     .has_value()) {
                break; // ring full: wait for acks
            }
            free_slots.pop_back();
            slot_busy[slot] = true;
            ++next;
            ++work;
        }
        if (work == 0 && !sleep_on(bell)) {
            ++lost_wakeups_0;
            break;
        }
    }
    shard1.join();
    EXPECT_EQ(order_errors, 0u);
    EXPECT_EQ(lost_wakeups_0, 0u);
    EXPECT_EQ(lost_wakeups_1, 0u);
    EXPECT_EQ(acked, count);
    EXPECT_EQ(free_slots.size(), pool_slots);
}

} // namespace
} // namespace keyrail::engine
