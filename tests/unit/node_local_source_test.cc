// The node's local key source on a real (tiny) store with a fake device: the store's sequence
// numbers and the device's never drift apart, even when the store refuses a batch, and a
// dec_keys that fails part-way consumes nothing.
#include "dataplane/errc.h"
#include "dataplane/etsi014/errc.h"
#include "dataplane/node/local_source.h"
#include "dataplane/store/key_store.h"
#include "tests/unit/store_fixture.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <set>
#include <vector>

#include <gtest/gtest.h>

namespace keyrail::dataplane::node {
namespace {

constexpr stream_id local_id{0x4000'0000u};
constexpr sae_id master_sae{1};
constexpr sae_id slave_sae{2};
constexpr sae_id other_slave_sae{3};
constexpr std::size_t block_bytes = 32;

// Block n of the fake device: n itself (8 bytes, little-endian) then a pattern of n, so any
// stored block names the device sequence number it came from and no two blocks are equal.
void device_block(std::uint64_t seq, std::byte* out) {
    for (std::size_t i = 0; i < block_bytes; ++i) {
        const std::uint64_t v = i < 8 ? seq >> (8 * i) : seq * 0x9e3779b97f4a7c15ull + i;
        out[i] = static_cast<std::byte>(v & 0xff);
    }
}

// A device whose blocks encode their sequence number (device_block). Every block is ready at
// once (no rate).
class seq_source final : public block_source {
public:
    explicit seq_source(std::uint64_t first_sequence) noexcept : _next(first_sequence) {}
    std::size_t produce(std::uint64_t now_ns, std::span<std::uint8_t> out,
                        std::size_t max_blocks) noexcept override {
        (void)now_ns;
        for (std::size_t i = 0; i < max_blocks; ++i) {
            device_block(_next + i, reinterpret_cast<std::byte*>(out.data()) + i * block_bytes);
        }
        _next += max_blocks;
        return max_blocks;
    }
    std::uint64_t next_sequence() const noexcept override { return _next; }

private:
    std::uint64_t _next = 0;
};

class local_source_test : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_FALSE(_tmp.path().empty());
        _config = test::small_config(_tmp.path()); // 1008 blocks in 4 segments of 252
        open();
    }

    // Opens the store and a local source whose device resumes at the store's ingest mark,
    // as keyraild does at start-up.
    void open() {
        _source.reset();
        _stream = nullptr;
        _store.reset();
        auto s = key_store::open(_config);
        ASSERT_TRUE(s.has_value()) << s.error().message();
        _store = std::move(*s);
        auto found = _store->find(local_id);
        if (!found && found.error() == dataplane::errc::unknown_stream) {
            found = _store->create_stream(local_id, ownership{1, 0});
        }
        ASSERT_TRUE(found.has_value()) << found.error().message();
        _stream = *found;
        local_source_options o;
        o.ingest_cap_blocks = 4000; // more than the store holds: appends get refused
        o.reservations_max = _config.reservations_max;
        _source = std::make_unique<local_source>(
            *_stream, std::make_unique<seq_source>(_stream->status().ingested), o);
    }

    // Reserves count 256-bit keys (one block each) and delivers them: their blocks are
    // consumed, so whole segments are reclaimed and the store has room again.
    void consume(std::uint32_t count) {
        const std::array<sae_id, 1> slaves{slave_sae};
        while (count > 0) {
            const std::uint32_t n = std::min<std::uint32_t>(count, 126);
            std::vector<etsi014::key_id> ids(n);
            std::vector<std::byte> bytes(n * block_bytes);
            std::vector<std::uint32_t> sizes(n);
            auto r = _source->reserve(0, {256, n, master_sae, slaves}, ids, bytes);
            ASSERT_TRUE(r.has_value()) << r.error().message();
            auto d = _source->deliver(0, master_sae, slave_sae, ids, bytes, sizes);
            ASSERT_TRUE(d.has_value()) << d.error().message();
            count -= n;
        }
        // The first commit moves the base; the next makes it durable (room for append).
        for (int i = 0; i < 3; ++i) {
            ASSERT_TRUE(_source->commit().has_value());
        }
    }

    // Every block the store still holds carries the device's bytes for its sequence number,
    // and no two sequence numbers carry the same bytes. Returns how many were checked.
    std::size_t check_blocks() {
        const stream_status st = _stream->status();
        const std::uint64_t low =
            st.ingested > st.capacity_blocks ? st.ingested - st.capacity_blocks : 0;
        std::set<std::vector<std::byte>> seen;
        std::size_t checked = 0;
        for (seq_t seq = low; seq < st.ingested; ++seq) {
            if (_stream->state_of(seq) != block_state::available) {
                continue;
            }
            std::vector<std::byte> got(block_bytes);
            EXPECT_TRUE(_stream->read_block(seq, got).has_value()) << seq;
            std::vector<std::byte> want(block_bytes);
            device_block(seq, want.data());
            std::uint64_t from = 0;
            std::memcpy(&from, got.data(), sizeof from); // device_block's first 8 bytes
            EXPECT_TRUE(got == want) << "seq " << seq << " holds the device's block " << from;
            EXPECT_TRUE(seen.insert(got).second) << "block " << seq << " repeats another's bytes";
            ++checked;
        }
        return checked;
    }

    test::temp_dir _tmp;
    store_config _config;
    std::unique_ptr<key_store> _store;
    stream* _stream = nullptr;
    std::unique_ptr<local_source> _source;
};

TEST_F(local_source_test, refused_append_keeps_device_and_store_in_step) {
    // 1008 blocks of room, batches of 256: the fourth batch is refused (store_full).
    EXPECT_FALSE(_source->pump(0, 4000));
    EXPECT_EQ(_stream->status().ingested, 768u);
    EXPECT_EQ(check_blocks(), 768u);

    // Room for two more segments; the next pump must not skip the refused blocks.
    consume(252 * 2);
    (void)_source->pump(0, 4000);
    EXPECT_GT(_stream->status().ingested, 768u);
    check_blocks();

    // Restart: the device resumes at the store's ingest mark.
    open();
    consume(252);
    (void)_source->pump(0, 4000);
    check_blocks();
    EXPECT_GT(_stream->status().ingested, 1008u);
}

TEST_F(local_source_test, refused_batch_is_not_lost_across_restart) {
    EXPECT_FALSE(_source->pump(0, 4000));
    const seq_t refused_at = _stream->status().ingested;
    ASSERT_TRUE(_source->commit().has_value()); // drain
    // Restart without room: the refused blocks were never stored, so the device regenerates
    // them at the same sequence numbers.
    open();
    EXPECT_EQ(_stream->status().ingested, refused_at);
    consume(252 * 2);
    (void)_source->pump(0, 4000);
    EXPECT_GT(_stream->status().ingested, refused_at);
    check_blocks();
}

// dec_keys of several keys where one was already fetched by this slave: the request fails
// with not_found and the other keys stay deliverable.
class local_source_deliver_test : public local_source_test {
protected:
    void reserve_two(std::span<const sae_id> slaves) {
        ASSERT_TRUE(_source->pump(0, 64) || _stream->status().ingested >= 64);
        auto r = _source->reserve(0, {256, 2, master_sae, slaves}, _ids, _bytes);
        ASSERT_TRUE(r.has_value()) << r.error().message();
    }

    void expect_partial_failure_consumes_nothing() {
        std::array<std::byte, 2 * block_bytes> out{};
        std::array<std::uint32_t, 2> sizes{};
        // Key 2 alone: ok.
        auto second = _source->deliver(0, master_sae, slave_sae, std::span(_ids).subspan(1, 1),
                                       out, sizes);
        ASSERT_TRUE(second.has_value()) << second.error().message();
        EXPECT_EQ(0, std::memcmp(out.data(), _bytes.data() + block_bytes, block_bytes));
        // Keys 1 and 2: key 2 was fetched already, so not found, and key 1 is untouched.
        auto both = _source->deliver(0, master_sae, slave_sae, _ids, out, sizes);
        ASSERT_FALSE(both.has_value());
        EXPECT_EQ(both.error(), etsi014::errc::not_found);
        // Key 1 alone: still there, with the master's bytes.
        out.fill(std::byte{0});
        auto first = _source->deliver(0, master_sae, slave_sae, std::span(_ids).first(1), out,
                                      sizes);
        ASSERT_TRUE(first.has_value()) << first.error().message();
        EXPECT_EQ(sizes[0], block_bytes);
        EXPECT_EQ(0, std::memcmp(out.data(), _bytes.data(), block_bytes));
    }

    std::array<etsi014::key_id, 2> _ids{};
    std::array<std::byte, 2 * block_bytes> _bytes{};
};

TEST_F(local_source_deliver_test, unicast_failure_part_way_consumes_nothing) {
    const std::array<sae_id, 1> slaves{slave_sae};
    reserve_two(slaves);
    expect_partial_failure_consumes_nothing();
}

TEST_F(local_source_deliver_test, multicast_failure_part_way_consumes_nothing) {
    const std::array<sae_id, 2> slaves{slave_sae, other_slave_sae};
    reserve_two(slaves);
    expect_partial_failure_consumes_nothing();
    // The other slave still gets both keys, once.
    std::array<std::byte, 2 * block_bytes> out{};
    std::array<std::uint32_t, 2> sizes{};
    auto other = _source->deliver(0, master_sae, other_slave_sae, _ids, out, sizes);
    ASSERT_TRUE(other.has_value()) << other.error().message();
    EXPECT_EQ(out, _bytes);
    EXPECT_EQ(_source->deliver(0, master_sae, other_slave_sae, _ids, out, sizes).error(),
              etsi014::errc::not_found);
}

TEST_F(local_source_deliver_test, same_key_twice_in_one_request_consumes_nothing) {
    const std::array<sae_id, 2> slaves{slave_sae, other_slave_sae};
    reserve_two(slaves);
    const std::array<etsi014::key_id, 3> ids{_ids[0], _ids[1], _ids[0]};
    std::array<std::byte, 3 * block_bytes> out{};
    std::array<std::uint32_t, 3> sizes{};
    auto r = _source->deliver(0, master_sae, slave_sae, ids, out, sizes);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), etsi014::errc::not_found);
    auto again = _source->deliver(0, master_sae, slave_sae, _ids, out, sizes);
    ASSERT_TRUE(again.has_value()) << again.error().message();
    EXPECT_EQ(0, std::memcmp(out.data(), _bytes.data(), _bytes.size()));
}

} // namespace
} // namespace keyrail::dataplane::node
