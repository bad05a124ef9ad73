#include "engine/spsc_ring.h"

#include <cstddef>
#include <cstdint>

#include <gtest/gtest.h>

namespace keyrail::engine {
namespace {

using ring8 = spsc_ring<std::uint64_t, 8>;

TEST(spsc_ring, empty_pop_fails) {
    ring8 ring;
    std::uint64_t out = 42;
    EXPECT_FALSE(ring.try_pop(out));
    EXPECT_EQ(out, 42u);
    EXPECT_EQ(ring.size_approx(), 0u);
}

TEST(spsc_ring, fills_to_capacity_then_refuses) {
    ring8 ring;
    for (std::uint64_t i = 0; i < 8; ++i) {
        ASSERT_TRUE(ring.try_push(i)) << i;
    }
    EXPECT_FALSE(ring.try_push(99));
    EXPECT_EQ(ring.size_approx(), 8u);
    for (std::uint64_t i = 0; i < 8; ++i) {
        std::uint64_t out = 0;
        ASSERT_TRUE(ring.try_pop(out));
        EXPECT_EQ(out, i);
    }
    std::uint64_t out = 0;
    EXPECT_FALSE(ring.try_pop(out));
}

TEST(spsc_ring, one_from_full_accepts_exactly_one) {
    ring8 ring;
    for (std::uint64_t i = 0; i < 7; ++i) {
        ASSERT_TRUE(ring.try_push(i));
    }
    EXPECT_TRUE(ring.try_push(7));
    EXPECT_FALSE(ring.try_push(8));
    std::uint64_t out = 0;
    ASSERT_TRUE(ring.try_pop(out));
    EXPECT_EQ(out, 0u);
    EXPECT_TRUE(ring.try_push(8));
    EXPECT_FALSE(ring.try_push(9));
}

TEST(spsc_ring, many_wrap_arounds_keep_order) {
    ring8 ring;
    std::uint64_t next_in = 0;
    std::uint64_t next_out = 0;
    // Varying fill levels so head and tail wrap the slot array many times at every offset.
    for (int round = 0; round < 10000; ++round) {
        const int pushes = 1 + round % 8;
        for (int i = 0; i < pushes; ++i) {
            if (!ring.try_push(next_in)) {
                break;
            }
            ++next_in;
        }
        const int pops = 1 + (round * 7) % 8;
        for (int i = 0; i < pops; ++i) {
            std::uint64_t out = 0;
            if (!ring.try_pop(out)) {
                break;
            }
            ASSERT_EQ(out, next_out);
            ++next_out;
        }
    }
    EXPECT_GT(next_out, 10000u);
}

struct handle {
    std::uint32_t slot;
    std::uint32_t generation;
};

TEST(spsc_ring, carries_trivially_copyable_handles) {
    spsc_ring<handle, 2> ring;
    ASSERT_TRUE(ring.try_push({3, 9}));
    handle out{};
    ASSERT_TRUE(ring.try_pop(out));
    EXPECT_EQ(out.slot, 3u);
    EXPECT_EQ(out.generation, 9u);
}

} // namespace
} // namespace keyrail::engine
