// Two threads pass sequence numbers through the ring; the consumer checks each is the
// previous plus one, and both sides agree on a checksum. Pinned to different cores when there
// are two. KEYRAIL_STRESS_ITERATIONS sets the count (default 10^7). Clean under tsan.
#include "engine/spsc_ring.h"
#include "tests/support/env.h"

#include <pthread.h>
#include <sched.h>

#include <cstdint>
#include <thread>

#include <gtest/gtest.h>

namespace keyrail::engine {
namespace {

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

TEST(spsc_ring_stress, passes_sequence_in_order) {
    const std::uint64_t count = test::env_u64("KEYRAIL_STRESS_ITERATIONS", 10'000'000);
    const std::uint64_t seed = test::seed("spsc_ring_stress");
    static spsc_ring<std::uint64_t, 1024> ring;
    std::uint64_t produced_sum = 0;
    std::thread producer([&] {
        pin_to(0);
        for (std::uint64_t i = 0; i < count; ++i) {
            const std::uint64_t value = seed + i;
            while (!ring.try_push(value)) {
                std::this_thread::yield();
            }
            produced_sum += value * 0x9e3779b97f4a7c15ull;
        }
    });
    pin_to(1);
    std::uint64_t consumed_sum = 0;
    std::uint64_t expected = seed;
    std::uint64_t errors = 0;
    for (std::uint64_t i = 0; i < count; ++i) {
        std::uint64_t value = 0;
        while (!ring.try_pop(value)) {
            std::this_thread::yield();
        }
        if (value != expected) {
            ++errors;
        }
        expected = value + 1;
        consumed_sum += value * 0x9e3779b97f4a7c15ull;
    }
    producer.join();
    EXPECT_EQ(errors, 0u);
    EXPECT_EQ(consumed_sum, produced_sum);
    std::uint64_t extra = 0;
    EXPECT_FALSE(ring.try_pop(extra));
}

} // namespace
} // namespace keyrail::engine
