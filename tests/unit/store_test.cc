// The key store on its own: state transitions, aggregation edges, leases, wrap-around of the
// live window, master key errors, and corrupt, truncated or missing files.
#include "dataplane/errc.h"
#include "dataplane/store/format.h"
#include "dataplane/store/key_store.h"
#include "dataplane/store/seal.h"
#include "tests/unit/store_fixture.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <chrono>
#include <thread>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

namespace keyrail::dataplane {
namespace {

using test::make_blocks;

constexpr sae_id master_sae{1};
constexpr sae_id slave_sae{2};
constexpr std::array<sae_id, 1> one_slave{slave_sae};

class store_test : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_FALSE(_tmp.path().empty());
        _config = test::small_config(_tmp.path());
        open_store();
    }

    // Opens the store and stream `id` (created with _own if missing).
    void open_store(stream_id id = stream_id{7}) {
        _s = nullptr;
        _store.reset();
        auto s = key_store::open(_config);
        ASSERT_TRUE(s.has_value()) << s.error().message();
        _store = std::move(*s);
        auto st = _store->find(id);
        if (!st) {
            st = _store->create_stream(id, _own);
        }
        ASSERT_TRUE(st.has_value()) << st.error().message();
        _s = *st;
    }

    void reopen() {
        _s = nullptr;
        open_store();
    }

    void ingest(std::uint64_t count) {
        const std::uint64_t first = _s->status().ingested;
        auto blocks = make_blocks(first, count, _config.block_bytes);
        auto r = _s->append(blocks);
        ASSERT_TRUE(r.has_value()) << r.error().message();
        EXPECT_EQ(*r, first);
    }

    void commit() {
        auto r = _s->commit();
        ASSERT_TRUE(r.has_value()) << r.error().message();
    }

    std::vector<std::byte> expected_key(std::span<const seq_t> seqs, std::uint32_t bits) const {
        std::vector<std::byte> v(bits / 8);
        std::vector<std::byte> block(_config.block_bytes);
        std::size_t done = 0;
        for (const seq_t seq : seqs) {
            test::fill_block(seq, block.data(), block.size());
            const std::size_t take = std::min<std::size_t>(block.size(), v.size() - done);
            std::memcpy(v.data() + done, block.data(), take);
            done += take;
        }
        return v;
    }

    std::vector<seq_t> seqs_of(const key_id& id) const {
        std::vector<seq_t> seqs(2048);
        auto n = _s->key_seqs(id, seqs);
        EXPECT_TRUE(n.has_value());
        seqs.resize(n ? *n : 0);
        return seqs;
    }

    reserve_request request(std::uint32_t bits) const { return {bits, master_sae, one_slave}; }

    template <class F> void reopen_after(F&& change_files) {
        _s = nullptr;
        _store.reset();
        change_files();
        open_store();
    }

    static void corrupt_file(const std::string& path, std::uint64_t offset) {
        const int fd = ::open(path.c_str(), O_RDWR);
        ASSERT_GE(fd, 0) << path;
        unsigned char b = 0;
        ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
        b ^= 0xff;
        ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
        ::close(fd);
    }

    test::temp_dir _tmp;
    store_config _config;
    ownership _own{};
    std::unique_ptr<key_store> _store;
    stream* _s = nullptr;

    // Compaction round trip (see the tests below), the snapshot written `step` bytes per commit.
    void compaction_keeps_every_state(std::uint32_t sid, std::uint64_t step) {
        _s = nullptr;
        _store.reset();
        _own = ownership{2, 0}; // even seqs ours, odd the peer's
        _config.journal_compact_bytes = 4096;
        _config.journal_compact_step_bytes = step;
        char stream_name[32];
        std::snprintf(stream_name, sizeof stream_name, "/stream-%08x", sid);
        const std::string dir = _config.dir + stream_name;
        open_store(stream_id{sid});
        ingest(900);
        struct kept {
            key_id id;
            std::vector<std::byte> bytes;
        };
        std::vector<kept> live;
        std::vector<key_id> gone;
        std::vector<seq_t> consumed_peer_seqs;
        const std::array<sae_id, 2> two_slaves{slave_sae, sae_id{3}};
        key_id multicast{};
        bool saw_compacting = false;
        std::vector<std::byte> multicast_bytes(32);
        seq_t next_peer = 1;
        for (int round = 0; round < 40; ++round) {
            for (int i = 0; i < 8; ++i) {
                std::vector<std::byte> out(32);
                auto r = _s->reserve(request(256), out);
                ASSERT_TRUE(r.has_value()) << r.error().message();
                live.push_back({r->id, out});
            }
            // A peer key on its share, delivered here: its block must stay consumed.
            auto pid = random_key_id();
            const std::array<seq_t, 1> peer{next_peer};
            next_peer += 2;
            ASSERT_TRUE(_s->reserve_specific(*pid, request(256), peer, {}).has_value());
            std::vector<std::byte> got(32);
            ASSERT_TRUE(_s->deliver(*pid, slave_sae, got).has_value());
            consumed_peer_seqs.push_back(peer[0]);
            gone.push_back(*pid);
            for (int i = 0; i < 7; ++i) { // deliver the oldest five, expire the next two
                kept k = live.front();
                live.erase(live.begin());
                if (i < 5) {
                    ASSERT_TRUE(_s->deliver(k.id, slave_sae, got).has_value());
                } else {
                    ASSERT_TRUE(_s->expire_key(k.id).has_value());
                }
                gone.push_back(k.id);
            }
            if (round == 5) { // a multicast key one slave of two has
                auto m = _s->reserve({256, master_sae, two_slaves}, multicast_bytes);
                ASSERT_TRUE(m.has_value());
                multicast = m->id;
                ASSERT_TRUE(_s->deliver(multicast, slave_sae, got).has_value());
            }
            commit();
            saw_compacting = saw_compacting || _s->status().compacting;
        }
        // A compaction written in steps was seen in progress between commits (none in one go).
        EXPECT_EQ(saw_compacting, step < 1024);
        // Compacted at least once: a later generation, and the journal stays near the snapshot.
        // (A replaced generation is removed by a background thread after the next meta.)
        std::uint64_t journal_bytes = 0;
        int journals = 0;
        for (int wait = 0; wait < 200; ++wait) {
            commit(); // a compaction in progress goes on with each commit, idle ones included
            journals = 0;
            for (const auto& e :
                 std::filesystem::directory_iterator(dir)) {
                const std::string name = e.path().filename().string();
                if (name.rfind("journal", 0) == 0) {
                    std::error_code removed; // a replaced generation being removed meanwhile
                    const auto size = e.file_size(removed);
                    if (removed) {
                        continue;
                    }
                    ++journals;
                    EXPECT_NE(name, "journal") << "never compacted";
                    journal_bytes = size;
                }
            }
            if (journals == 1) {
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        EXPECT_EQ(journals, 1);
        EXPECT_LT(journal_bytes, 3 * 4096u);

        open_store(stream_id{sid}); // replay the snapshot and what followed it
        for (const key_id& id : gone) {
            auto found = _s->find_key(id);
            ASSERT_FALSE(found.has_value());
            EXPECT_EQ(found.error(), errc::unknown_key);
        }
        for (const kept& k : live) {
            std::vector<std::byte> out(32);
            auto n = _s->read_key(k.id, out);
            ASSERT_TRUE(n.has_value()) << n.error().message();
            EXPECT_EQ(out, k.bytes);
        }
        std::vector<std::byte> got(32);
        auto twice = _s->deliver(multicast, slave_sae, got);
        ASSERT_FALSE(twice.has_value());
        EXPECT_EQ(twice.error(), errc::already_delivered);
        ASSERT_TRUE(_s->deliver(multicast, sae_id{3}, got).has_value());
        EXPECT_EQ(got, multicast_bytes);
        for (const seq_t seq : consumed_peer_seqs) { // a resent notice must not revive it
            auto again = random_key_id();
            const std::array<seq_t, 1> peer{seq};
            auto revived = _s->reserve_specific(*again, request(256), peer, {});
            ASSERT_FALSE(revived.has_value()) << seq;
            EXPECT_EQ(revived.error(), errc::block_unavailable) << seq;
        }
        auto fresh = random_key_id(); // the control: an unused peer block is still free
        const std::array<seq_t, 1> unused{next_peer};
        EXPECT_TRUE(_s->reserve_specific(*fresh, request(256), unused, {}).has_value());
        EXPECT_EQ(_s->status().reservations, live.size() + 1);
        commit();

        // The generation the meta names is gone: the stream refuses to open, never starts empty.
        _s = nullptr;
        _store.reset();
        for (const auto& e : std::filesystem::directory_iterator(dir)) {
            if (e.path().filename().string().rfind("journal-", 0) == 0) {
                std::filesystem::remove(e.path());
            }
        }
        auto reopened = key_store::open(_config);
        ASSERT_TRUE(reopened.has_value());
        auto lost = (*reopened)->find(stream_id{sid});
        ASSERT_FALSE(lost.has_value());
        EXPECT_EQ(lost.error(), errc::journal_corrupt);

    }
};

TEST_F(store_test, available_reserved_delivered_and_wiped) {
    ingest(10);
    EXPECT_EQ(_s->state_of(0), block_state::available);
    EXPECT_EQ(_s->status().available_blocks, 10u);
    std::array<std::byte, 32> key{};
    auto r = _s->reserve(request(256), key);
    ASSERT_TRUE(r.has_value()) << r.error().message();
    auto seqs = seqs_of(r->id);
    ASSERT_EQ(seqs.size(), 1u);
    EXPECT_EQ(_s->state_of(seqs[0]), block_state::reserved);
    auto want = expected_key(seqs, 256);
    EXPECT_EQ(std::memcmp(key.data(), want.data(), 32), 0);
    commit();
    EXPECT_GE(_s->commits_done(), r->ticket);

    std::array<std::byte, 32> got{};
    auto d = _s->deliver(r->id, slave_sae, got);
    ASSERT_TRUE(d.has_value()) << d.error().message();
    EXPECT_EQ(d->key_bytes, 32u);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), 32), 0);
    EXPECT_EQ(_s->state_of(seqs[0]), block_state::delivered);
    EXPECT_EQ(_s->deliver(r->id, slave_sae, got).error(), errc::unknown_key);
    commit();
    std::array<std::byte, 32> block{};
    ASSERT_TRUE(_s->read_block(seqs[0], block).has_value());
    EXPECT_TRUE(
        std::all_of(block.begin(), block.end(), [](std::byte b) { return b == std::byte{0}; }));

    // Wiped on disk too: a fresh open decrypts zeros and still knows the block is delivered.
    reopen();
    EXPECT_EQ(_s->state_of(seqs[0]), block_state::delivered);
    ASSERT_TRUE(_s->read_block(seqs[0], block).has_value());
    EXPECT_TRUE(
        std::all_of(block.begin(), block.end(), [](std::byte b) { return b == std::byte{0}; }));
    // A neighbour in the same chunk keeps its bytes.
    ASSERT_TRUE(_s->read_block(seqs[0] + 1, block).has_value());
    std::array<std::byte, 32> neighbour{};
    test::fill_block(seqs[0] + 1, neighbour.data(), 32);
    EXPECT_EQ(block, neighbour);
}

TEST_F(store_test, reserved_then_expired_is_wiped) {
    ingest(4);
    std::array<std::byte, 32> key{};
    auto r = _s->reserve(request(128), key);
    ASSERT_TRUE(r.has_value());
    const seq_t seq = seqs_of(r->id)[0];
    ASSERT_TRUE(_s->expire_key(r->id).has_value());
    EXPECT_EQ(_s->state_of(seq), block_state::expired);
    EXPECT_EQ(_s->expire_key(r->id).error(), errc::unknown_key);
    commit();
    reopen();
    EXPECT_EQ(_s->state_of(seq), block_state::expired);
    std::array<std::byte, 32> block{};
    ASSERT_TRUE(_s->read_block(seq, block).has_value());
    EXPECT_EQ(block, (std::array<std::byte, 32>{}));
}

TEST_F(store_test, reservation_survives_reopen_with_same_bytes) {
    ingest(300); // crosses a segment boundary (252 blocks)
    std::vector<std::pair<key_id, std::vector<std::byte>>> keys;
    for (std::uint32_t bits : {8u, 256u, 264u, 2048u}) {
        std::vector<std::byte> out(bits / 8);
        auto r = _s->reserve(request(bits), out);
        ASSERT_TRUE(r.has_value()) << r.error().message();
        keys.emplace_back(r->id, out);
    }
    commit();
    reopen();
    for (auto& [id, bytes] : keys) {
        std::vector<std::byte> out(bytes.size());
        auto n = _s->read_key(id, out);
        ASSERT_TRUE(n.has_value()) << n.error().message();
        EXPECT_EQ(out, bytes);
        auto v = _s->find_key(id);
        ASSERT_TRUE(v.has_value());
        EXPECT_EQ(v->master, master_sae);
        EXPECT_EQ(v->key_bits, bytes.size() * 8);
    }
}

// The journal batches consecutive reserves of one kind (same master, size and slaves),
// deliveries and expiries into shared records, closing one when the kind changes or it is
// full (16 KiB: about 560 one-block keys). Whatever the mix, a reopen restores every state.
TEST_F(store_test, batched_journal_records_replay_every_state) {
    _config.reservations_max = 1024;
    reopen();
    ingest(900);
    struct kept {
        key_id id;
        std::vector<std::byte> bytes;
    };
    std::vector<kept> keys;
    auto reserve_some = [&](std::size_t count, std::uint32_t bits) {
        for (std::size_t i = 0; i < count; ++i) {
            std::vector<std::byte> out(bits / 8);
            auto r = _s->reserve(request(bits), out);
            ASSERT_TRUE(r.has_value()) << r.error().message();
            keys.push_back({r->id, out});
        }
    };
    reserve_some(600, 8); // one record fills up: a second one continues it
    reserve_some(40, 16); // another size: another record
    std::vector<key_id> gone;
    for (std::size_t i = 0; i < 30; ++i) { // deliveries, then expiries, then reserves again
        std::vector<std::byte> got(1);
        ASSERT_TRUE(_s->deliver(keys[i].id, slave_sae, got).has_value());
        gone.push_back(keys[i].id);
    }
    for (std::size_t i = 30; i < 50; ++i) {
        ASSERT_TRUE(_s->expire_key(keys[i].id).has_value());
        gone.push_back(keys[i].id);
    }
    reserve_some(30, 8);
    commit();
    reopen();
    for (const key_id& id : gone) {
        EXPECT_EQ(_s->find_key(id).error(), errc::unknown_key);
    }
    for (std::size_t i = 50; i < keys.size(); ++i) {
        std::vector<std::byte> out(keys[i].bytes.size());
        auto n = _s->read_key(keys[i].id, out);
        ASSERT_TRUE(n.has_value()) << i << ": " << n.error().message();
        EXPECT_EQ(out, keys[i].bytes) << i;
    }
    EXPECT_EQ(_s->status().reservations, keys.size() - gone.size());
}

// Compaction: past journal_compact_bytes the journal is rewritten as a snapshot (consumed
// blocks of the window, live reservations, partial multicast deliveries) in the next
// generation's file. After any number of compactions and a reopen, live keys keep their bytes,
// delivered and expired ones stay gone, and no consumed block (the peer's share included) can
// be reserved again.
TEST_F(store_test, compacted_journal_keeps_every_state_and_stays_small) {
    compaction_keeps_every_state(11, std::uint64_t{1} << 20); // written in one commit
}

// The same with the snapshot written 64 bytes per commit: the records committed meanwhile go
// to both generations, and the new one takes over only once it holds all of them.
TEST_F(store_test, compaction_written_over_many_commits_keeps_every_state) {
    compaction_keeps_every_state(12, 64);
}

TEST_F(store_test, uncommitted_reservation_is_gone_and_its_block_never_reused) {
    ingest(20);
    commit();
    std::array<std::byte, 32> key{};
    auto r = _s->reserve(request(256), key);
    ASSERT_TRUE(r.has_value());
    const seq_t seq = seqs_of(r->id)[0];
    reopen(); // no commit: as after kill -9 before the group commit
    EXPECT_EQ(_s->find_key(r->id).error(), errc::unknown_key);
    EXPECT_EQ(_s->state_of(seq), block_state::expired); // below the durable lease bound
    auto again = _s->reserve(request(256), key);
    ASSERT_TRUE(again.has_value());
    EXPECT_GT(seqs_of(again->id)[0], seq);
}

TEST_F(store_test, aggregation_edges) {
    ingest(600);
    // 8 bits: one block, one byte out.
    std::array<std::byte, 1> one{};
    auto r8 = _s->reserve(request(8), one);
    ASSERT_TRUE(r8.has_value());
    auto s8 = seqs_of(r8->id);
    ASSERT_EQ(s8.size(), 1u);
    EXPECT_EQ(one[0], expected_key(s8, 8)[0]);
    // 65536 bits: 256 whole blocks, across chunk and segment boundaries.
    std::vector<std::byte> big(8192);
    auto rbig = _s->reserve(request(65536), big);
    ASSERT_TRUE(rbig.has_value()) << rbig.error().message();
    auto sbig = seqs_of(rbig->id);
    EXPECT_EQ(sbig.size(), 256u);
    EXPECT_EQ(big, expected_key(sbig, 65536));
    // A tail: 264 bits use two blocks; the second block's unused 23 bytes are not returned
    // and the whole block is wiped at delivery.
    std::array<std::byte, 33> tail{};
    auto rt = _s->reserve(request(264), tail);
    ASSERT_TRUE(rt.has_value());
    auto st = seqs_of(rt->id);
    EXPECT_EQ(st.size(), 2u);
    commit();
    std::array<std::byte, 33> got{};
    ASSERT_TRUE(_s->deliver(rt->id, slave_sae, got).has_value());
    EXPECT_EQ(got, tail);
    commit();
    std::array<std::byte, 32> block{};
    ASSERT_TRUE(_s->read_block(st[1], block).has_value());
    EXPECT_EQ(block, (std::array<std::byte, 32>{}));
    // Invalid sizes.
    std::vector<std::byte> buf(8200);
    for (std::uint32_t bits : {0u, 4u, 12u, 65544u, 65537u}) {
        EXPECT_EQ(_s->reserve(request(bits), buf).error(), errc::key_size_invalid) << bits;
    }
    EXPECT_EQ(blocks_for_key(65536, 32).value(), 256u);
    EXPECT_EQ(blocks_for_key(8, 32).value(), 1u);
    EXPECT_EQ(blocks_for_key(264, 32).value(), 2u);
}

TEST_F(store_test, key_ids_are_uuid_v4_and_distinct) {
    ingest(50);
    std::array<std::byte, 4> out{};
    std::vector<key_id> ids;
    for (int i = 0; i < 40; ++i) {
        auto r = _s->reserve(request(32), out);
        ASSERT_TRUE(r.has_value());
        EXPECT_EQ(static_cast<unsigned>(r->id.bytes[6]) >> 4, 4u);
        EXPECT_EQ(static_cast<unsigned>(r->id.bytes[8]) >> 6, 2u);
        for (const auto& other : ids) {
            EXPECT_FALSE(other.equals(r->id));
        }
        ids.push_back(r->id);
    }
    char text[37];
    ids[0].format(text);
    EXPECT_EQ(std::strlen(text), 36u);
    EXPECT_EQ(text[14], '4');
}

TEST_F(store_test, lease_exhaustion_and_durable_bound) {
    ingest(10);
    commit();
    auto l = _s->grant(4);
    ASSERT_TRUE(l.has_value());
    EXPECT_EQ(l->first, 0u);
    EXPECT_EQ(l->end, 4u);
    EXPECT_EQ(l->block_count(), 4u);
    auto l2 = _s->grant(100);
    ASSERT_TRUE(l2.has_value());
    EXPECT_EQ(l2->first, 4u);
    EXPECT_EQ(l2->end, 10u); // clipped to what is ingested
    EXPECT_EQ(_s->grant(1).error(), errc::lease_exhausted);
    std::array<std::byte, 32> key{};
    EXPECT_EQ(_s->reserve(request(256), key).error(), errc::lease_exhausted);
    EXPECT_EQ(_s->grant(0).error(), errc::invalid_argument);
    // A restart resumes above every lease handed out; the unused leased blocks expire.
    reopen();
    EXPECT_EQ(_s->state_of(3), block_state::expired);
    ingest(5);
    auto l3 = _s->grant(2);
    ASSERT_TRUE(l3.has_value());
    EXPECT_GE(l3->first, 10u);
}

TEST_F(store_test, release_expires_unused_lease) {
    ingest(10);
    auto l = _s->grant(10);
    ASSERT_TRUE(l.has_value());
    _s->release(*l, 5);
    EXPECT_EQ(_s->state_of(4), block_state::available);
    EXPECT_EQ(_s->state_of(5), block_state::expired);
    EXPECT_EQ(_s->state_of(9), block_state::expired);
}

TEST_F(store_test, reserve_specific_from_lease) {
    ingest(10);
    auto l = _s->grant(3);
    ASSERT_TRUE(l.has_value());
    auto id = random_key_id();
    ASSERT_TRUE(id.has_value());
    const std::array<seq_t, 2> seqs{0, 1};
    std::array<std::byte, 64> out{};
    auto t = _s->reserve_specific(*id, request(512), seqs, out);
    ASSERT_TRUE(t.has_value()) << t.error().message();
    EXPECT_EQ(std::memcmp(out.data(), expected_key(seqs, 512).data(), 64), 0);
    // The same blocks again, the same key ID, an unleased block of our own share.
    auto id2 = random_key_id();
    EXPECT_EQ(_s->reserve_specific(*id2, request(512), seqs, out).error(), errc::block_unavailable);
    const std::array<seq_t, 2> other{2, 3};
    EXPECT_EQ(_s->reserve_specific(*id, request(512), other, out).error(), errc::key_id_exists);
    EXPECT_EQ(_s->reserve_specific(*id2, request(512), other, out).error(), errc::not_peer_owned);
    const std::array<seq_t, 2> dup{2, 2};
    auto l2 = _s->grant(5);
    ASSERT_TRUE(l2.has_value());
    EXPECT_EQ(_s->reserve_specific(*id2, request(512), dup, out).error(), errc::block_unavailable);
    EXPECT_EQ(_s->state_of(2), block_state::available); // rolled back
    EXPECT_EQ(_s->reserve_specific(*id2, request(256), dup, out).error(),
              errc::invalid_argument); // 2 seqs for a 1-block key
}

TEST_F(store_test, deliver_checks_slaves_and_delivers_once_each) {
    ingest(4);
    const std::array<sae_id, 2> slaves{sae_id{2}, sae_id{3}};
    std::array<std::byte, 32> key{};
    auto r = _s->reserve({256, master_sae, slaves}, key);
    ASSERT_TRUE(r.has_value());
    const seq_t seq = seqs_of(r->id)[0];
    commit();
    std::array<std::byte, 32> got{};
    EXPECT_EQ(_s->deliver(r->id, master_sae, got).error(), errc::not_slave);
    EXPECT_EQ(_s->deliver(r->id, sae_id{9}, got).error(), errc::not_slave);
    ASSERT_TRUE(_s->deliver(r->id, sae_id{3}, got).has_value());
    EXPECT_EQ(got, key);
    EXPECT_EQ(_s->deliver(r->id, sae_id{3}, got).error(), errc::already_delivered);
    EXPECT_EQ(_s->state_of(seq), block_state::reserved);
    commit();
    reopen(); // the per-slave delivery is durable
    EXPECT_EQ(_s->deliver(r->id, sae_id{3}, got).error(), errc::already_delivered);
    ASSERT_TRUE(_s->deliver(r->id, sae_id{2}, got).has_value());
    EXPECT_EQ(got, key);
    EXPECT_EQ(_s->state_of(seq), block_state::delivered);
    std::array<sae_id, slaves_max + 1> many{};
    EXPECT_EQ(_s->reserve({256, master_sae, many}, key).error(), errc::too_many_slaves);
}

TEST_F(store_test, state_transitions_survive_reopen) {
    ingest(8);
    std::array<std::byte, 32> k{};
    auto a = _s->reserve(request(256), k); // stays reserved
    auto b = _s->reserve(request(256), k); // delivered
    auto c = _s->reserve(request(256), k); // expired
    ASSERT_TRUE(a && b && c);
    commit();
    ASSERT_TRUE(_s->deliver(b->id, slave_sae, k).has_value());
    ASSERT_TRUE(_s->expire_key(c->id).has_value());
    commit();
    const seq_t sa = seqs_of(a->id)[0];
    reopen();
    EXPECT_EQ(_s->state_of(sa), block_state::reserved);
    EXPECT_EQ(_s->state_of(sa + 1), block_state::delivered);
    EXPECT_EQ(_s->state_of(sa + 2), block_state::expired);
    EXPECT_EQ(_s->status().reservations, 1u);
}

TEST_F(store_test, wrap_around_fill_drain_refill) {
    const std::uint64_t capacity = _s->status().capacity_blocks;
    EXPECT_EQ(capacity, 1008u);
    std::array<std::byte, 32> k{};
    std::uint64_t delivered = 0;
    for (int round = 0; round < 4; ++round) {
        const std::uint64_t room = capacity - (_s->status().ingested - delivered);
        ingest(room);
        EXPECT_EQ(_s->append(make_blocks(0, 1, 32)).error(), errc::store_full);
        // Drain everything: reserve and deliver, committing as the shim would.
        for (;;) {
            auto r = _s->reserve(request(256), k);
            if (!r) {
                EXPECT_EQ(r.error(), errc::lease_exhausted);
                break;
            }
            ASSERT_TRUE(_s->deliver(r->id, slave_sae, k).has_value());
            ++delivered;
            if (delivered % 100 == 0) {
                commit();
            }
        }
        commit();
        commit(); // the second makes the advanced base durable
        EXPECT_EQ(_s->status().available_blocks, 0u);
    }
    EXPECT_GT(_s->status().ingested, 3 * capacity);
    reopen();
    ingest(10);
    auto r = _s->reserve(request(256), k);
    ASSERT_TRUE(r.has_value()) << r.error().message();
    EXPECT_EQ(std::vector<std::byte>(k.begin(), k.end()), expected_key(seqs_of(r->id), 256));
}

TEST_F(store_test, peer_share_reserved_before_arrival) {
    // This node owns even seqs; the peer's notice names odd seqs not ingested yet.
    _s = nullptr;
    _store.reset();
    _own = ownership{2, 0};
    auto opened = key_store::open(_config);
    ASSERT_TRUE(opened.has_value());
    _store = std::move(*opened);
    auto st = _store->create_stream(stream_id{9}, _own);
    ASSERT_TRUE(st.has_value());
    _s = *st;
    ingest(4); // seqs 0..3
    auto id = random_key_id();
    const std::array<seq_t, 2> peer_seqs{5, 7};
    auto t = _s->reserve_specific(*id, request(512), peer_seqs, {});
    ASSERT_TRUE(t.has_value()) << t.error().message();
    std::array<std::byte, 64> out{};
    EXPECT_EQ(_s->deliver(*id, slave_sae, out).error(), errc::key_not_ready);
    commit();
    ingest(6); // seqs 4..9 arrive
    EXPECT_EQ(_s->state_of(5), block_state::reserved);
    EXPECT_EQ(_s->state_of(6), block_state::available);
    ASSERT_TRUE(_s->deliver(*id, slave_sae, out).has_value());
    EXPECT_EQ(std::memcmp(out.data(), expected_key(peer_seqs, 512).data(), 64), 0);
    // Our own reserve uses only even seqs.
    std::array<std::byte, 64> mine{};
    auto r = _s->reserve(request(512), mine);
    ASSERT_TRUE(r.has_value());
    for (seq_t s : seqs_of(r->id)) {
        EXPECT_EQ(s % 2, 0u);
    }
    EXPECT_EQ(_s->owner().stride, 2u);
    commit();
    _s = nullptr;
    _store.reset();
    auto again = key_store::open(_config);
    ASSERT_TRUE(again.has_value());
    auto s9 = (*again)->find(stream_id{9});
    ASSERT_TRUE(s9.has_value());
    EXPECT_EQ((*s9)->owner().stride, 2u);
    EXPECT_EQ((*s9)->owner().offset, 0u);
    EXPECT_EQ((*s9)->state_of(5), block_state::delivered);
    EXPECT_EQ((*s9)->state_of(6), block_state::available);
}

TEST_F(store_test, missing_and_wrong_master_key) {
    _s = nullptr;
    _store.reset();
    store_config c = _config;
    c.master_key.name = "KEYRAIL_TEST_STORE_MASTER_UNSET";
    ::unsetenv("KEYRAIL_TEST_STORE_MASTER_UNSET");
    EXPECT_EQ(key_store::open(c).error(), errc::master_key_missing);
    ::setenv("KEYRAIL_TEST_STORE_MASTER_UNSET", "abcd", 1);
    EXPECT_EQ(key_store::open(c).error(), errc::master_key_invalid);
    ::setenv("KEYRAIL_TEST_STORE_MASTER_UNSET",
             "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", 1);
    EXPECT_EQ(key_store::open(c).error(), errc::wrong_master_key);
    c.master_key = {master_key_source::kind::file, _tmp.path() + "/no-such-file"};
    EXPECT_EQ(key_store::open(c).error(), errc::master_key_missing);
    // A raw 32-byte file works when it holds the right key.
    const std::string file = _tmp.path() + "/master.key";
    {
        std::FILE* f = std::fopen(file.c_str(), "w");
        ASSERT_NE(f, nullptr);
        std::fputs(test::store_master_hex, f);
        std::fputs("\n", f);
        std::fclose(f);
    }
    c.master_key.name = file;
    EXPECT_TRUE(key_store::open(c).has_value());
    // Streams without a keyring: an error, never a fresh empty store.
    std::filesystem::remove(_config.dir + "/keyring");
    EXPECT_EQ(key_store::open(_config).error(), errc::keyring_missing);
}

TEST_F(store_test, corrupt_chunk_loses_only_its_blocks) {
    ingest(500);
    commit();
    reopen_after([&] {
        // Flip a ciphertext byte in chunk 1 of segment 0 (page 2).
        corrupt_file(_config.dir + "/stream-00000007/seg-0000000000000000", 2 * page_bytes + 100);
    });
    EXPECT_EQ(_s->state_of(130), block_state::lost); // chunk 1 holds 126..251
    EXPECT_EQ(_s->state_of(10), block_state::available);
    EXPECT_EQ(_s->state_of(300), block_state::available);
    std::array<std::byte, 32> k{};
    auto r = _s->reserve(request(256), k);
    ASSERT_TRUE(r.has_value());
}

TEST_F(store_test, bad_segment_magic_and_truncation) {
    ingest(600); // segments 0, 1, 2
    commit();
    reopen_after([&] {
        corrupt_file(_config.dir + "/stream-00000007/seg-0000000000000001", 0);
        ASSERT_EQ(::truncate((_config.dir + "/stream-00000007/seg-0000000000000002").c_str(),
                             static_cast<off_t>(page_bytes + 100)),
                  0);
    });
    EXPECT_EQ(_s->state_of(5), block_state::available);
    EXPECT_EQ(_s->state_of(260), block_state::lost);
    EXPECT_EQ(_s->state_of(520), block_state::lost);
    EXPECT_EQ(_s->status().ingested, 600u);
    std::array<std::byte, 32> k{};
    EXPECT_TRUE(_s->reserve(request(256), k).has_value());
}

TEST_F(store_test, corrupt_meta_stops_only_that_stream) {
    auto other = _store->create_stream(stream_id{8}, ownership{});
    ASSERT_TRUE(other.has_value());
    ingest(5);
    commit();
    _s = nullptr;
    _store.reset();
    corrupt_file(_config.dir + "/stream-00000007/meta", 8);
    corrupt_file(_config.dir + "/stream-00000007/meta", page_bytes + 8);
    auto s = key_store::open(_config);
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ((*s)->find(stream_id{7}).error(), errc::meta_corrupt);
    EXPECT_TRUE((*s)->find(stream_id{8}).has_value());
    EXPECT_EQ((*s)->find(stream_id{99}).error(), errc::unknown_stream);
}

// A store written before meta version 2 (96-byte record, checksum after capacity, no journal
// generation) still opens with its reservations, and moves to version 2 at its next meta.
TEST_F(store_test, version_1_meta_still_opens) {
    ingest(10);
    std::array<std::byte, 32> key{};
    auto r = _s->reserve(request(256), key);
    ASSERT_TRUE(r.has_value());
    commit();
    _s = nullptr;
    _store.reset();
    const std::string meta = _config.dir + "/stream-00000007/meta";
    const int fd = ::open(meta.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    for (std::uint64_t slot = 0; slot < 2; ++slot) {
        meta_record m{};
        ASSERT_EQ(::pread(fd, &m, sizeof m, static_cast<off_t>(slot * page_bytes)),
                  static_cast<ssize_t>(sizeof m));
        if (m.magic != meta_magic) {
            continue;
        }
        std::array<std::byte, sizeof(meta_record)> v1{};
        m.version = 1;
        std::memcpy(v1.data(), &m, meta_v1_checked_bytes);
        const std::uint64_t sum = checksum64(v1.data(), meta_v1_checked_bytes);
        std::memcpy(v1.data() + meta_v1_checked_bytes, &sum, 8);
        ASSERT_EQ(::pwrite(fd, v1.data(), v1.size(), static_cast<off_t>(slot * page_bytes)),
                  static_cast<ssize_t>(v1.size()));
    }
    ::close(fd);
    open_store();
    std::array<std::byte, 32> again{};
    auto n = _s->read_key(r->id, again);
    ASSERT_TRUE(n.has_value()) << n.error().message();
    EXPECT_EQ(again, key);
    commit(); // nothing staged: open's own commit already wrote a version 2 meta
    meta_record now{};
    const int rd = ::open(meta.c_str(), O_RDONLY);
    ASSERT_GE(rd, 0);
    bool v2 = false;
    for (std::uint64_t slot = 0; slot < 2; ++slot) {
        ASSERT_EQ(::pread(rd, &now, sizeof now, static_cast<off_t>(slot * page_bytes)),
                  static_cast<ssize_t>(sizeof now));
        v2 = v2 || now.version == meta_version;
    }
    ::close(rd);
    EXPECT_TRUE(v2);
}

TEST_F(store_test, power_mode_and_block_size_mismatch) {
    _s = nullptr;
    _store.reset();
    store_config c = _config;
    c.mode = durability::power;
    auto s = key_store::open(c);
    ASSERT_TRUE(s.has_value());
    auto st = (*s)->find(stream_id{7});
    ASSERT_TRUE(st.has_value());
    ASSERT_TRUE((*st)->append(make_blocks(0, 3, 32)).has_value());
    std::array<std::byte, 32> k{};
    auto r = (*st)->reserve(request(256), k);
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE((*st)->commit().has_value());
    s->reset();
    c.block_bytes = 64;
    auto mismatched = key_store::open(c);
    ASSERT_TRUE(mismatched.has_value());
    EXPECT_EQ((*mismatched)->find(stream_id{7}).error(), errc::config_mismatch);
}

TEST_F(store_test, reservation_pool_exhaustion) {
    ingest(300);
    std::array<std::byte, 1> k{};
    for (int i = 0; i < 256; ++i) {
        ASSERT_TRUE(_s->reserve(request(8), k).has_value()) << i;
    }
    EXPECT_EQ(_s->reserve(request(8), k).error(), errc::reservations_full);
}

TEST_F(store_test, lease_headroom_skips_at_most_headroom_after_restart) {
    _config.lease_headroom = 16;
    reopen();
    ingest(100);
    commit();
    std::array<std::byte, 32> k{};
    auto r = _s->reserve(request(256), k);
    ASSERT_TRUE(r.has_value());
    const seq_t seq = seqs_of(r->id)[0];
    commit();
    reopen();
    EXPECT_EQ(_s->state_of(seq), block_state::reserved);
    EXPECT_EQ(_s->state_of(seq + 16), block_state::expired);
    EXPECT_EQ(_s->state_of(seq + 17), block_state::available);
    EXPECT_EQ(_s->status().next_lease, seq + 17);
}

TEST_F(store_test, half_created_stream_is_finished_by_create_stream) {
    _s = nullptr;
    _store.reset();
    // create_stream crashed after mkdir, before the meta's rename.
    std::filesystem::create_directory(_config.dir + "/stream-00000063");
    auto s = key_store::open(_config);
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ((*s)->find(stream_id{0x63}).error(), errc::unknown_stream);
    auto created = (*s)->create_stream(stream_id{0x63}, ownership{});
    ASSERT_TRUE(created.has_value()) << created.error().message();
    EXPECT_EQ((*s)->create_stream(stream_id{0x63}, ownership{}).error(), errc::stream_exists);
}

TEST_F(store_test, errors_have_messages) {
    EXPECT_EQ(std::error_code(errc::store_full).message(), "key store full");
    EXPECT_STREQ(std::error_code(errc::segment_bad_tag).category().name(), "keyrail.dataplane");
}

} // namespace
} // namespace keyrail::dataplane

namespace keyrail::dataplane {
namespace {

// Two processes on one store would hand out the same blocks and reuse GCM nonces; the second
// open of a store directory that is in use fails, and succeeds once the first is closed.
// (flock locks belong to open file descriptions, so a second open in one process conflicts
// exactly as another process would.)
TEST(store_lock, second_open_of_a_store_in_use_is_refused) {
    test::temp_dir tmp;
    const store_config config = test::small_config(tmp.path());
    auto first = key_store::open(config);
    ASSERT_TRUE(first.has_value()) << first.error().message();
    auto second = key_store::open(config);
    ASSERT_FALSE(second.has_value());
    EXPECT_EQ(second.error(), make_error_code(errc::store_in_use));
    first->reset();
    auto third = key_store::open(config);
    EXPECT_TRUE(third.has_value()) << third.error().message();
}

} // namespace
} // namespace keyrail::dataplane

namespace keyrail::dataplane {
namespace {

// A stream directory whose meta is gone but whose segments and journal remain is not a half-made
// stream: creating a new one over it would reuse GCM nonces and revive consumed blocks.
TEST(store_lost_meta, create_over_old_segments_is_refused) {
    test::temp_dir tmp;
    const store_config config = test::small_config(tmp.path());
    std::string dir;
    {
        auto store = key_store::open(config);
        ASSERT_TRUE(store.has_value()) << store.error().message();
        auto s = (*store)->create_stream(stream_id{7}, ownership{1, 0});
        ASSERT_TRUE(s.has_value()) << s.error().message();
        auto blocks = test::make_blocks(0, 300, config.block_bytes);
        ASSERT_TRUE((*s)->append(blocks).has_value());
        std::vector<std::byte> key(32);
        const std::array<sae_id, 1> slaves{sae_id{2}};
        ASSERT_TRUE((*s)->reserve({256, sae_id{1}, slaves}, key).has_value());
        ASSERT_TRUE((*s)->commit().has_value());
    }
    for (const auto& e : std::filesystem::directory_iterator(config.dir)) {
        if (e.path().filename().string().rfind("stream-", 0) == 0) {
            dir = e.path().string();
        }
    }
    ASSERT_FALSE(dir.empty());
    ASSERT_TRUE(std::filesystem::remove(dir + "/meta"));

    auto store = key_store::open(config);
    ASSERT_TRUE(store.has_value()) << store.error().message();
    auto again = (*store)->create_stream(stream_id{7}, ownership{1, 0});
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error(), make_error_code(errc::meta_corrupt));
}

} // namespace
} // namespace keyrail::dataplane
