// The cross-shard ring matrix on one thread: routing, order per sender, fairness, the full
// ring as backpressure, bad shards, and doorbell coalescing.
#include "engine/ring_matrix.h"

#include <poll.h>
#include <unistd.h>

#include <vector>

#include <gtest/gtest.h>

namespace keyrail::engine {
namespace {

bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
}

TEST(engine_ring_matrix, routes_each_pair_in_order) {
    auto m = ring_matrix<shard_message, 8>::create(3);
    ASSERT_TRUE(m.has_value());
    auto& matrix = **m;
    for (std::uint32_t from = 0; from < 3; ++from) {
        for (std::uint32_t to = 0; to < 3; ++to) {
            for (std::uint64_t i = 0; i < 3; ++i) {
                shard_message msg{7, from, from * 100 + to * 10 + i, i};
                ASSERT_TRUE(matrix.try_post(from, to, msg).has_value());
            }
        }
    }
    for (std::uint32_t to = 0; to < 3; ++to) {
        std::vector<std::uint64_t> next(3, 0);
        const std::size_t n = matrix.receive(to, 100, [&](const shard_message& msg) {
            EXPECT_EQ(msg.handle, msg.from_shard * 100 + to * 10 + next[msg.from_shard]);
            ++next[msg.from_shard];
        });
        EXPECT_EQ(n, 9u);
        EXPECT_EQ(next, (std::vector<std::uint64_t>{3, 3, 3}));
        EXPECT_EQ(matrix.receive(to, 100, [](const shard_message&) {}), 0u);
    }
}

TEST(engine_ring_matrix, full_ring_is_backpressure_not_loss) {
    auto m = ring_matrix<shard_message, 4>::create(2);
    ASSERT_TRUE(m.has_value());
    auto& matrix = **m;
    for (std::uint64_t i = 0; i < 4; ++i) {
        ASSERT_TRUE(matrix.try_post(0, 1, shard_message{0, 0, i, 0}).has_value());
    }
    auto full = matrix.try_post(0, 1, shard_message{0, 0, 99, 0});
    ASSERT_FALSE(full.has_value());
    EXPECT_EQ(full.error(), make_error_code(errc::ring_full));
    // Another sender's ring to the same target is independent.
    EXPECT_TRUE(matrix.try_post(1, 1, shard_message{0, 1, 50, 0}).has_value());
    std::size_t popped = matrix.receive(1, 1, [](const shard_message&) {});
    EXPECT_EQ(popped, 1u);
    EXPECT_TRUE(matrix.try_post(0, 1, shard_message{0, 0, 4, 0}).has_value());
}

TEST(engine_ring_matrix, receive_is_fair_and_respects_budget) {
    auto m = ring_matrix<shard_message, 16>::create(3);
    ASSERT_TRUE(m.has_value());
    auto& matrix = **m;
    for (std::uint64_t i = 0; i < 4; ++i) {
        ASSERT_TRUE(matrix.try_post(0, 2, shard_message{0, 0, i, 0}).has_value());
        ASSERT_TRUE(matrix.try_post(1, 2, shard_message{0, 1, i, 0}).has_value());
    }
    std::vector<std::uint32_t> froms;
    // Senders alternate, so a busy sender cannot starve another within one budget.
    EXPECT_EQ(matrix.receive(2, 4, [&](const shard_message& msg) {
        froms.push_back(msg.from_shard);
    }), 4u);
    EXPECT_EQ(froms, (std::vector<std::uint32_t>{0, 1, 0, 1}));
}

TEST(engine_ring_matrix, rejects_bad_shards) {
    auto m = ring_matrix<shard_message, 4>::create(2);
    ASSERT_TRUE(m.has_value());
    auto r = (*m)->try_post(0, 2, shard_message{});
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), make_error_code(errc::bad_shard));
    EXPECT_FALSE((ring_matrix<shard_message, 4>::create(0)).has_value());
    EXPECT_FALSE((ring_matrix<shard_message, 4>::create(limits::shards_max + 1)).has_value());
}

TEST(engine_ring_matrix, doorbell_coalesces_until_answered) {
    auto m = ring_matrix<shard_message, 16>::create(2);
    ASSERT_TRUE(m.has_value());
    auto& matrix = **m;
    doorbell& bell = matrix.doorbell_of(1);
    EXPECT_FALSE(readable(bell.fd()));
    ASSERT_TRUE(matrix.try_post(0, 1, shard_message{}).has_value());
    ASSERT_TRUE(readable(bell.fd()));
    std::uint64_t count = 0;
    ASSERT_EQ(::read(bell.fd(), &count, sizeof count), static_cast<ssize_t>(sizeof count));
    // Rung but not answered: further posts do not write the eventfd again.
    ASSERT_TRUE(matrix.try_post(0, 1, shard_message{}).has_value());
    EXPECT_FALSE(readable(bell.fd()));
    bell.answer();
    ASSERT_TRUE(matrix.try_post(0, 1, shard_message{}).has_value());
    EXPECT_TRUE(readable(bell.fd()));
    EXPECT_EQ(matrix.receive(1, 10, [](const shard_message&) {}), 3u);
}

} // namespace
} // namespace keyrail::engine
