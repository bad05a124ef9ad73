// The lease path across threads: a home-shard thread owns the stream (ingests, serves lease
// requests, reserves, group-commits) and three serving-shard threads take seqs from their
// leases and ask the home shard to reserve them, all through SPSC rings. Every seq must be
// reserved exactly once, every acknowledgement must come after its commit, and the key bytes
// must be the ingested ones. KEYRAIL_STRESS_ITERATIONS sets the block count. Clean under tsan.
#include "dataplane/errc.h"
#include "dataplane/store/lease.h"
#include "engine/spsc_ring.h"
#include "tests/support/env.h"
#include "tests/unit/store_fixture.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace keyrail::dataplane {
namespace {

constexpr std::size_t clients = 3;
constexpr std::size_t outstanding_max = 256;
constexpr std::array<sae_id, 1> slaves{sae_id{2}};

struct reserve_msg {
    key_id id;
    seq_t seq = 0;
};

struct reserve_ack {
    key_id id;
    seq_t seq = 0;
    int error = 0;
    std::uint64_t ticket = 0;
    std::uint64_t committed = 0;
    std::array<std::byte, 32> key{}; // a test shortcut; real acks carry a slot handle
};

struct client_rings {
    engine::spsc_ring<reserve_msg, 1024> requests; // client -> home
    engine::spsc_ring<reserve_ack, 1024> acks;     // home -> client
};

TEST(lease_stress, seqs_reserved_exactly_once_across_shards) {
    const std::uint64_t total = test::env_u64("KEYRAIL_STRESS_ITERATIONS", 20000);
    (void)test::seed("lease_stress");
    test::temp_dir tmp;
    store_config config = test::small_config(tmp.path());
    config.segment_chunks = 64;
    config.capacity_blocks = total + 10000;
    config.reservations_max = static_cast<std::uint32_t>(total + 16);
    config.lease_headroom = 256;
    auto store = key_store::open(config);
    ASSERT_TRUE(store.has_value());
    auto created = (*store)->create_stream(stream_id{5}, ownership{});
    ASSERT_TRUE(created.has_value());
    stream& s = **created;
    std::array<stream*, 1> streams{&s};

    auto lease_channels = std::make_unique<lease_channel[]>(clients);
    auto rings = std::make_unique<client_rings[]>(clients);
    std::atomic<bool> stop{false};
    std::vector<std::vector<seq_t>> got(clients);
    std::atomic<std::uint64_t> errors{0};

    auto client = [&](std::size_t c) {
        lease_client lc(lease_channels[c], stream_id{5}, 64, 32);
        std::size_t outstanding = 0;
        bool have = false;
        reserve_msg msg;
        // Pairs with the release store in the home thread once every seq is reserved.
        while (!stop.load(std::memory_order_acquire) || outstanding > 0) {
            lc.poll();
            if (!have && outstanding < outstanding_max) {
                seq_t seq = 0;
                if (lc.next(seq)) {
                    auto id = random_key_id();
                    msg = reserve_msg{*id, seq};
                    have = true;
                }
            }
            if (have && rings[c].requests.try_push(msg)) {
                have = false;
                ++outstanding;
            }
            reserve_ack ack;
            while (rings[c].acks.try_pop(ack)) {
                --outstanding;
                if (ack.error != 0 || ack.committed < ack.ticket) {
                    errors.fetch_add(1, std::memory_order_relaxed);
                    continue;
                }
                std::array<std::byte, 32> want{};
                test::fill_block(ack.seq, want.data(), want.size());
                if (want != ack.key) {
                    errors.fetch_add(1, std::memory_order_relaxed);
                }
                got[c].push_back(ack.seq);
            }
            if (!have && outstanding == 0) {
                std::this_thread::yield();
            }
        }
    };

    std::thread home([&] {
        home_lease_authority authority(streams);
        lease_server server(authority, std::span<lease_channel>(lease_channels.get(), clients));
        std::vector<std::vector<reserve_ack>> pending(clients);
        std::uint64_t reserved = 0;
        while (reserved < total) {
            const std::uint64_t ingested = s.status().ingested;
            if (ingested < total) {
                const std::uint64_t n = std::min<std::uint64_t>(128, total - ingested);
                auto r = s.append(test::make_blocks(ingested, n, 32));
                if (!r) {
                    errors.fetch_add(1, std::memory_order_relaxed);
                }
            }
            server.poll();
            bool any = false;
            for (std::size_t c = 0; c < clients; ++c) {
                reserve_msg m;
                while (rings[c].requests.try_pop(m)) {
                    any = true;
                    reserve_ack ack;
                    ack.id = m.id;
                    ack.seq = m.seq;
                    auto t = s.reserve_specific(m.id, {256, sae_id{1}, slaves},
                                                std::span<const seq_t>(&m.seq, 1), ack.key);
                    if (t) {
                        ack.ticket = *t;
                        ++reserved;
                    } else {
                        ack.error = t.error().value();
                    }
                    pending[c].push_back(ack);
                }
            }
            if (any || s.has_pending()) {
                // Group commit, then acknowledge everything it covered.
                auto committed = s.commit();
                if (!committed) {
                    errors.fetch_add(1, std::memory_order_relaxed);
                    break;
                }
                for (std::size_t c = 0; c < clients; ++c) {
                    for (auto& ack : pending[c]) {
                        ack.committed = *committed;
                        while (!rings[c].acks.try_push(ack)) {
                            std::this_thread::yield();
                        }
                    }
                    pending[c].clear();
                }
            }
        }
        // Pairs with the acquire loads in the clients.
        stop.store(true, std::memory_order_release);
    });
    std::vector<std::thread> threads;
    for (std::size_t c = 0; c < clients; ++c) {
        threads.emplace_back(client, c);
    }
    home.join();
    for (auto& t : threads) {
        t.join();
    }
    EXPECT_EQ(errors.load(), 0u);
    std::vector<std::uint8_t> seen(total, 0);
    std::uint64_t count = 0;
    for (const auto& v : got) {
        for (seq_t q : v) {
            ASSERT_LT(q, total);
            EXPECT_EQ(seen[q], 0) << "seq " << q << " reserved twice";
            seen[q] = 1;
            ++count;
        }
    }
    EXPECT_EQ(count, total);
    EXPECT_EQ(s.status().reservations, total);
}

} // namespace
} // namespace keyrail::dataplane
