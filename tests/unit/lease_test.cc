// Leases through the SPSC rings, on one thread: grants, exhaustion, ring wrap-around, owned
// strides, giving back unused seqs.
#include "dataplane/errc.h"
#include "dataplane/store/lease.h"
#include "tests/unit/store_fixture.h"

#include <memory>
#include <set>
#include <vector>

#include <gtest/gtest.h>

namespace keyrail::dataplane {
namespace {

class lease_test : public ::testing::Test {
protected:
    void open(ownership own) {
        _config = test::small_config(_tmp.path());
        _config.capacity_blocks = 100000;
        auto s = key_store::open(_config);
        ASSERT_TRUE(s.has_value());
        _store = std::move(*s);
        auto st = _store->create_stream(stream_id{3}, own);
        ASSERT_TRUE(st.has_value());
        _s = *st;
        _streams[0] = _s;
    }
    void ingest(std::uint64_t n) {
        ASSERT_TRUE(_s->append(test::make_blocks(0, n, 32)).has_value());
    }

    test::temp_dir _tmp;
    store_config _config;
    std::unique_ptr<key_store> _store;
    stream* _s = nullptr;
    std::array<stream*, 1> _streams{};
};

TEST_F(lease_test, lease_arithmetic) {
    ownership odd{2, 1};
    EXPECT_EQ(odd.first_owned_from(0), 1u);
    EXPECT_EQ(odd.first_owned_from(1), 1u);
    EXPECT_EQ(odd.first_owned_from(2), 3u);
    ownership even{2, 0};
    EXPECT_EQ(even.first_owned_from(1), 2u);
    EXPECT_EQ(even.first_owned_from(4), 4u);
    lease l{stream_id{1}, 2, 1, 8};
    EXPECT_EQ(l.block_count(), 4u); // 1 3 5 7
}

TEST_F(lease_test, client_gets_seqs_in_order_through_rings) {
    open(ownership{});
    ingest(1000);
    home_lease_authority authority(_streams);
    auto channels = std::make_unique<lease_channel[]>(1);
    lease_server server(authority, std::span<lease_channel>(channels.get(), 1));
    lease_client client(channels[0], stream_id{3}, 16, 8);
    seq_t expected = 0;
    std::uint64_t got = 0;
    // 1000 seqs in leases of 16: ~63 grants, the rings (16 slots) wrap around several times.
    for (int round = 0; round < 10000 && got < 1000; ++round) {
        seq_t seq = 0;
        while (client.next(seq)) {
            ASSERT_EQ(seq, expected);
            ++expected;
            ++got;
        }
        server.poll();
        const int err = client.poll();
        if (got < 1000) {
            ASSERT_EQ(err, 0);
        }
    }
    EXPECT_EQ(got, 1000u);
    // Exhausted: the authority's error comes back through the ring.
    seq_t seq = 0;
    EXPECT_FALSE(client.next(seq));
    server.poll();
    EXPECT_EQ(client.poll(), static_cast<int>(errc::lease_exhausted));
}

TEST_F(lease_test, unknown_stream_is_reported) {
    open(ownership{});
    home_lease_authority authority(_streams);
    EXPECT_EQ(authority.grant(stream_id{77}, 4).error(), errc::unknown_stream);
}

TEST_F(lease_test, owned_share_only_and_give_back) {
    open(ownership{2, 1});
    ingest(200);
    home_lease_authority authority(_streams);
    auto channels = std::make_unique<lease_channel[]>(2);
    lease_server server(authority, std::span<lease_channel>(channels.get(), 2));
    lease_client a(channels[0], stream_id{3}, 10, 5);
    lease_client b(channels[1], stream_id{3}, 10, 5);
    std::set<seq_t> seen;
    for (int round = 0; round < 20; ++round) {
        for (lease_client* c : {&a, &b}) {
            seq_t seq = 0;
            for (int k = 0; k < 3 && c->next(seq); ++k) {
                EXPECT_EQ(seq % 2, 1u);
                EXPECT_TRUE(seen.insert(seq).second) << seq;
            }
            c->poll();
        }
        server.poll();
    }
    EXPECT_GT(seen.size(), 50u);
    const std::uint64_t left = a.remaining();
    ASSERT_TRUE(a.give_back().has_value());
    EXPECT_EQ(a.remaining(), 0u);
    server.poll();
    // The given-back seqs expired: they are never handed out again.
    std::uint64_t expired = 0;
    for (seq_t q = 1; q < 200; q += 2) {
        expired += _s->state_of(q) == block_state::expired ? 1 : 0;
    }
    EXPECT_EQ(expired, left);
}

} // namespace
} // namespace keyrail::dataplane
