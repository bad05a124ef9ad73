// Key calls forwarded between shards (dataplane/node/key_forward.h), without the engine: two
// fake shard contexts carry the messages by hand, so each step of a call's round trip, and
// each way it can go wrong, is driven and checked in turn: the answer replays the key shard's
// bytes exactly, a closed connection's call is freed when it comes back, a full ring answers
// 503 at once, a failed commit answers unavailable with the key bytes wiped.
#include "dataplane/etsi014/errc.h"
#include "dataplane/node/local_key_service.h"
#include "dataplane/node/local_source.h"
#include "dataplane/node/node_runtime.h"
#include "dataplane/store/key_store.h"
#include "tests/unit/store_fixture.h"

#include <array>
#include <cstring>
#include <deque>
#include <memory>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace keyrail::dataplane::node {
namespace {

using etsi014::errc;

constexpr stream_id local_id{0x4000'0000u};

// Every block is ready at once and differs from every other.
class counting_source final : public block_source {
public:
    std::size_t produce(std::uint64_t, std::span<std::uint8_t> out,
                        std::size_t max_blocks) noexcept override {
        for (std::size_t i = 0; i < max_blocks * 32; ++i) {
            out[i] = static_cast<std::uint8_t>((_next * 32 + i) * 0x9d + 7);
        }
        _next += max_blocks;
        return max_blocks;
    }
    std::uint64_t next_sequence() const noexcept override { return _next; }

private:
    std::uint64_t _next = 0;
};

class fixed_clock final : public clock_source {
public:
    std::uint64_t now_ns() const noexcept override { return 1'000'000'000; }
};

// A shard whose posts land in an outbox (or fail while `full`), and whose wakes are counted.
class fake_shard final : public engine::shard_context {
public:
    explicit fake_shard(std::size_t index) noexcept : _index(index) {}
    std::size_t shard_index() const noexcept override { return _index; }
    std::size_t shard_count() const noexcept override { return 2; }
    std::uint64_t now_ns() const noexcept override { return 0; }
    result<void> post(std::size_t to, engine::shard_message m) noexcept override {
        if (full) {
            return fail(engine::errc::ring_full);
        }
        m.from_shard = static_cast<std::uint32_t>(_index);
        outbox.push_back({to, m});
        return {};
    }
    bool wake(engine::connection_id id, std::uint64_t) noexcept override {
        woken.push_back(id.slot);
        return true;
    }
    struct sent {
        std::size_t to;
        engine::shard_message message;
    };
    std::deque<sent> outbox;
    std::vector<std::uint32_t> woken;
    bool full = false;

private:
    std::size_t _index;
};

class forward_test : public ::testing::Test {
protected:
    void SetUp() override {
        _config = test::small_config(_tmp.path());
        auto s = key_store::open(_config);
        ASSERT_TRUE(s.has_value()) << s.error().message();
        _store = std::move(*s);
        auto st = _store->create_stream(local_id, ownership{1, 0});
        ASSERT_TRUE(st.has_value()) << st.error().message();
        local_source_options o;
        o.ingest_cap_blocks = 600;
        o.reservations_max = _config.reservations_max;
        o.commit_at_barrier = true; // as keyraild: the barrier commits
        _source = std::make_unique<local_source>(**st, std::make_unique<counting_source>(), o);
        (void)_source->pump(0, 600);
        ASSERT_GT(_source->counts(0).available_blocks, 0u);
        _cfg.kme_id = "kme-a";
        _cfg.saes = {{"alice", sae_home::local, "kme-a"}, {"bob", sae_home::local, "kme-a"}};
        _cfg.key_rate_bits_per_s = 1'000'000;
        _runtime = std::make_unique<node_runtime>(2, std::vector<peer_link*>{},
                                                  forward_limits{128, 64 * 1024});
        _key = std::make_unique<local_key_service>(_cfg, _source.get(), _clock, _runtime.get(),
                                                   0);
        _other = std::make_unique<local_key_service>(_cfg, _source.get(), _clock,
                                                     _runtime.get(), 1);
    }

    // The key shard takes every message shard 1 posted, executes it, commits (or fails to),
    // and answers; shard 1 takes the answers.
    void round_trip(bool committed = true) {
        while (!_shard1.outbox.empty()) {
            const auto s = _shard1.outbox.front();
            _shard1.outbox.pop_front();
            ASSERT_EQ(s.to, 0u);
            ASSERT_EQ(s.message.kind, node_runtime::msg_forward);
            _key->execute_forward(_shard0, s.message.from_shard,
                                  static_cast<std::uint32_t>(s.message.handle));
        }
        if (committed) {
            ASSERT_TRUE(_source->commit_due().has_value());
        }
        _key->settle_forwards(committed);
        ASSERT_TRUE(_key->post_forwards(_shard0));
        while (!_shard0.outbox.empty()) {
            const auto s = _shard0.outbox.front();
            _shard0.outbox.pop_front();
            ASSERT_EQ(s.to, 1u);
            ASSERT_EQ(s.message.kind, node_runtime::msg_forward_done);
            _other->on_forward_done(_shard1, static_cast<std::uint32_t>(s.message.handle));
        }
    }

    result<void> enc(std::uint32_t number, std::span<etsi014::key_id> ids,
                     std::span<std::byte> bytes, engine::connection_id conn = {3, 1}) {
        etsi014::enc_request r;
        r.master_sae_id = "alice";
        r.slave_sae_id = "bob";
        r.number = number;
        r.size_bits = 256;
        _other->begin_request(_shard1, conn, false);
        return _other->enc_keys(r, ids, bytes);
    }

    test::temp_dir _tmp;
    store_config _config;
    std::unique_ptr<key_store> _store;
    std::unique_ptr<local_source> _source;
    settings _cfg;
    fixed_clock _clock;
    std::unique_ptr<node_runtime> _runtime;
    std::unique_ptr<local_key_service> _key;
    std::unique_ptr<local_key_service> _other;
    fake_shard _shard0{0};
    fake_shard _shard1{1};
};

TEST_F(forward_test, enc_then_dec_from_another_shard_replays_the_key_shard_bytes) {
    std::array<etsi014::key_id, 3> ids{};
    std::array<std::byte, 96> keys{};
    auto first = enc(3, ids, keys);
    ASSERT_FALSE(first.has_value());
    EXPECT_EQ(first.error(), errc::pending);
    EXPECT_TRUE(_other->forward_in_flight());
    // Woken early (another reason): still away, nothing posted twice.
    auto early = enc(3, ids, keys);
    EXPECT_EQ(early.error(), errc::pending);
    EXPECT_EQ(_shard1.outbox.size(), 1u);
    round_trip();
    ASSERT_EQ(_shard1.woken.size(), 1u);
    EXPECT_EQ(_shard1.woken[0], 3u);
    auto done = enc(3, ids, keys); // the request handled again: the record answers
    ASSERT_TRUE(done.has_value()) << done.error().message();
    EXPECT_TRUE(_shard1.outbox.empty());
    _other->end_request();

    // dec_keys for the same IDs, forwarded too: byte for byte the same.
    std::array<std::byte, 96> got{};
    std::array<std::uint32_t, 3> sizes{};
    etsi014::dec_request d;
    d.slave_sae_id = "bob";
    d.master_sae_id = "alice";
    d.ids = ids;
    _other->begin_request(_shard1, {4, 1}, false);
    EXPECT_EQ(_other->dec_keys(d, got, sizes).error(), errc::pending);
    round_trip();
    _other->begin_request(_shard1, {4, 1}, false);
    ASSERT_TRUE(_other->dec_keys(d, got, sizes).has_value());
    _other->end_request();
    EXPECT_EQ(got, keys);
    EXPECT_EQ(sizes, (std::array<std::uint32_t, 3>{32, 32, 32}));
    // Once only: a second dec_keys is not found.
    _other->begin_request(_shard1, {4, 1}, false);
    EXPECT_EQ(_other->dec_keys(d, got, sizes).error(), errc::pending);
    round_trip();
    _other->begin_request(_shard1, {4, 1}, false);
    EXPECT_EQ(_other->dec_keys(d, got, sizes).error(), errc::not_found);
    _other->end_request();
}

TEST_F(forward_test, exhausted_asks_for_the_counts_in_a_second_call) {
    std::vector<etsi014::key_id> ids(128);
    std::vector<std::byte> keys(128 * 512);
    etsi014::enc_request r;
    r.master_sae_id = "alice";
    r.slave_sae_id = "bob";
    r.number = 128;
    r.size_bits = 4096; // 16 blocks a key: 2048 blocks, more than the store holds
    _other->begin_request(_shard1, {5, 1}, false);
    EXPECT_EQ(_other->enc_keys(r, ids, keys).error(), errc::pending);
    round_trip();
    _other->begin_request(_shard1, {5, 1}, false);
    EXPECT_EQ(_other->enc_keys(r, ids, keys).error(), errc::exhausted);
    EXPECT_EQ(_other->status("alice", "bob").error(), errc::pending); // call 2 goes out
    round_trip();
    _other->begin_request(_shard1, {5, 1}, false); // handled again: both calls replay
    EXPECT_EQ(_other->enc_keys(r, ids, keys).error(), errc::exhausted);
    auto st = _other->status("alice", "bob");
    ASSERT_TRUE(st.has_value()) << st.error().message();
    EXPECT_GT(st->stored_key_count, 0u);
    EXPECT_EQ(st->master_sae_id, "alice");
    _other->end_request();
}

TEST_F(forward_test, a_call_whose_connection_closed_is_freed_when_it_returns) {
    std::array<etsi014::key_id, 1> ids{};
    std::array<std::byte, 32> keys{};
    EXPECT_EQ(enc(1, ids, keys, {6, 1}).error(), errc::pending);
    _other->on_close(6); // gone while its call is away
    round_trip();
    EXPECT_TRUE(_shard1.woken.empty()); // nobody to wake
    // The slot's next connection starts afresh and its call is answered.
    EXPECT_EQ(enc(1, ids, keys, {6, 2}).error(), errc::pending);
    round_trip();
    EXPECT_TRUE(enc(1, ids, keys, {6, 2}).has_value());
    _other->end_request();
    EXPECT_EQ(_runtime->pool(1).limits().keys_max, 128u);
}

TEST_F(forward_test, a_full_ring_answers_unavailable_and_a_failed_commit_wipes) {
    std::array<etsi014::key_id, 2> ids{};
    std::array<std::byte, 64> keys{};
    _shard1.full = true;
    EXPECT_EQ(enc(2, ids, keys).error(), errc::unavailable);
    EXPECT_FALSE(_other->forward_in_flight());
    _other->end_request();
    _shard1.full = false;

    EXPECT_EQ(enc(2, ids, keys, {7, 1}).error(), errc::pending);
    round_trip(false); // the key shard's commit failed: nothing of it may leave
    const forward_call& call = _runtime->pool(1).at(0); // the only call so far
    const std::array<std::byte, 64> zero{};
    EXPECT_EQ(call.bytes_used, 64u); // the keys were reserved into it ...
    EXPECT_EQ(std::memcmp(call.bytes.get(), zero.data(), zero.size()), 0); // ... and wiped
    EXPECT_EQ(enc(2, ids, keys, {7, 1}).error(), errc::unavailable);
    _other->end_request();
}

} // namespace
} // namespace keyrail::dataplane::node
