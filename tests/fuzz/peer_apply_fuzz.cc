// The peer side of a link stream under adversarial but well-formed peer messages: each input
// is a small program of operations on one local_source of node kme-b (share: odd sequence
// numbers) whose neighbour is kme-a. Peer operations build a real frame with the encoders
// (Reserve, Void, ReserveAck, ShareGrant, StreamWatermark) from the input's bytes, decode it as
// the peer protocol does, and apply it; local operations reserve keys for bob (master, here)
// and alice (slave, at the peer), deliver keys to bob and dave, pump, expire, take and requeue
// notices. The state carries over between inputs (one store for the whole run), so reuse of
// key IDs, acks for batches never sent, grants of the wrong share, reservations of blocks far
// ahead and full tables all meet. Nothing may crash, assert, hang or grow without bound.
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include "dataplane/etsi014/uuid.h"
#include "dataplane/node/local_source.h"
#include "dataplane/node/settings.h"
#include "dataplane/proto/encode.h"
#include "dataplane/proto/frame.h"
#include "dataplane/store/key_store.h"
#include "dataplane/store/stream.h"

namespace {

using namespace keyrail::dataplane;
namespace node = keyrail::dataplane::node;
namespace proto = keyrail::proto;

constexpr std::uint32_t reservations_max = 64;

// A device that has every block at once: block n is n's low byte repeated.
class instant_source final : public node::block_source {
public:
    std::size_t produce(std::uint64_t, std::span<std::uint8_t> out,
                        std::size_t max_blocks) noexcept override {
        const std::size_t n = std::min<std::size_t>(max_blocks, 64);
        for (std::size_t i = 0; i < n; ++i) {
            std::memset(out.data() + i * 32, static_cast<int>((_next + i) & 0xff), 32);
        }
        _next += n;
        return n;
    }
    std::uint64_t next_sequence() const noexcept override { return _next; }

private:
    std::uint64_t _next = 0;
};

struct fixture {
    std::string root;
    std::unique_ptr<key_store> store;
    node::settings cfg;
    std::unique_ptr<node::local_source> source;
    flatbuffers::FlatBufferBuilder fbb{proto::builder_bytes};
    std::vector<std::byte> frame; // 8-aligned copy of each frame (vector<std::byte> is 16-aligned)
    node::notice_batch batch;
    std::vector<proto::key_ack_in> exceptions;
    std::vector<proto::key_id_bytes> voids;
    std::vector<std::uint64_t> sent_batches;
    std::vector<etsi014::key_id> local_ids; // keys this node reserved, for deliveries
    std::uint64_t now_ns = 1'000'000'000;
};

fixture* g_fixture = nullptr;

void cleanup() {
    if (g_fixture != nullptr) {
        g_fixture->source.reset();
        g_fixture->store.reset();
        std::error_code ec;
        std::filesystem::remove_all(g_fixture->root, ec);
    }
}

fixture& get_fixture() {
    if (g_fixture != nullptr) {
        return *g_fixture;
    }
    static fixture f;
    char templ[] = "/tmp/keyrail-peer-fuzz-XXXXXX";
    if (::mkdtemp(templ) == nullptr) {
        std::abort();
    }
    f.root = templ;
    ::setenv("KEYRAIL_FUZZ_PEER_MASTER",
             "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 1);
    store_config sc;
    sc.dir = f.root + "/store";
    sc.master_key = {master_key_source::kind::env, "KEYRAIL_FUZZ_PEER_MASTER"};
    sc.mode = durability::process;
    sc.segment_chunks = 2;
    sc.capacity_blocks = 4096;
    sc.reservations_max = reservations_max;
    sc.lease_headroom = 8;
    sc.chunk_cache = 4;
    auto store = key_store::open(sc);
    if (!store) {
        std::abort();
    }
    f.store = std::move(*store);
    auto s = f.store->create_stream(stream_id{7}, ownership{2, 1});
    if (!s) {
        std::abort();
    }
    f.cfg.kme_id = "kme-b";
    f.cfg.saes = {{"alice", node::sae_home::remote, "kme-a"},
                  {"bob", node::sae_home::local, "kme-b"},
                  {"dave", node::sae_home::local, "kme-b"},
                  {"carol", node::sae_home::remote, "kme-c"}};
    f.cfg.links = {{"a-b", "kme-a"}};
    node::local_source_options o;
    o.cfg = &f.cfg;
    o.peer_node = "kme-a";
    o.ingest_cap_blocks = 512;
    o.key_expiry_ns = 5'000'000'000;
    o.reservations_max = reservations_max;
    f.source = std::make_unique<node::local_source>(**s, std::make_unique<instant_source>(), o);
    f.source->recover(f.now_ns);
    g_fixture = &f;
    std::atexit(cleanup);
    return f;
}

// Reads the input a byte at a time; past the end everything reads as zero.
class reader {
public:
    reader(const std::uint8_t* data, std::size_t size) : _data(data), _size(size) {}
    [[nodiscard]] bool done() const { return _at >= _size; }
    std::uint8_t u8() { return _at < _size ? _data[_at++] : 0; }
    std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | (u8() << 8)); }
    std::uint32_t u32() { return u16() | (std::uint32_t{u16()} << 16); }

private:
    const std::uint8_t* _data;
    std::size_t _size;
    std::size_t _at = 0;
};

constexpr std::array<std::string_view, 5> names = {"alice", "bob", "dave", "carol", "zed"};

proto::key_id_bytes key_id_of(std::uint8_t n) {
    proto::key_id_bytes id{};
    id[0] = static_cast<std::byte>(n % 16); // a small set, so IDs come back
    id[6] = std::byte{0x40};
    id[8] = std::byte{0x80};
    return id;
}

// Decodes what an encoder built, as the peer protocol would receive it.
const proto::fb::Frame* receive(fixture& f, const keyrail::result<proto::frame_bytes>& built,
                                proto::decoded& d) {
    if (!built) {
        return nullptr; // over a limit: the encoder refuses, nothing is sent
    }
    f.frame.assign(built->begin(), built->end());
    d = proto::decode(f.frame);
    if (d.status != proto::decode_status::frame) {
        std::abort(); // an encoder built what the decoder refuses
    }
    return d.frame;
}

void peer_reserve(fixture& f, reader& in) {
    const std::size_t keys = 1 + in.u8() % 4;
    std::array<proto::key_reservation_in, 4> k{};
    std::array<std::array<std::string_view, 2>, 4> slaves{};
    std::array<std::array<proto::seq_run, 2>, 4> runs{};
    for (std::size_t i = 0; i < keys; ++i) {
        k[i].key_id = key_id_of(in.u8());
        k[i].master_sae = names[in.u8() % names.size()];
        const std::size_t n_slaves = 1 + in.u8() % 2;
        for (std::size_t s = 0; s < n_slaves; ++s) {
            slaves[i][s] = names[in.u8() % names.size()];
        }
        k[i].slave_saes = std::span<const std::string_view>(slaves[i].data(), n_slaves);
        const std::uint32_t stride = 1 + in.u8() % 2;
        const std::uint32_t count = 1 + in.u8() % 4;
        runs[i][0] = {in.u16(), count, stride};
        const bool two = (in.u8() & 1) != 0;
        if (two) {
            runs[i][1] = {runs[i][0].first + std::uint64_t{count} * stride + in.u8(), 1, stride};
        }
        k[i].runs = std::span<const proto::seq_run>(runs[i].data(), two ? 2 : 1);
        k[i].size_bits = 8 * (1 + in.u16() % 160);
        k[i].expiry_unix_ms = 1;
    }
    proto::reserve_in r;
    r.link_id = "a-b";
    r.batch_id = in.u32();
    r.keys = std::span<const proto::key_reservation_in>(k.data(), keys);
    proto::decoded d;
    if (receive(f, proto::encode(f.fbb, r), d) != nullptr) {
        (void)f.source->apply_reserve(f.now_ns, *proto::body_as<proto::fb::Reserve>(d),
                                      f.exceptions);
    }
}

void peer_void(fixture& f, reader& in) {
    std::array<proto::key_id_bytes, 3> ids{key_id_of(in.u8()), key_id_of(in.u8()),
                                           key_id_of(in.u8())};
    proto::void_in v;
    v.link_id = "a-b";
    v.reason = proto::fb::VoidReason::expired;
    v.key_ids = std::span<const proto::key_id_bytes>(ids.data(), 1 + in.u8() % 3);
    proto::decoded d;
    if (receive(f, proto::encode(f.fbb, v), d) != nullptr) {
        f.source->apply_void(*proto::body_as<proto::fb::Void>(d));
    }
}

void peer_ack(fixture& f, reader& in) {
    std::array<proto::key_ack_in, 2> acks{};
    for (auto& a : acks) {
        a.key_id = key_id_of(in.u8());
        a.status = static_cast<proto::fb::ReserveStatus>(in.u8() % 7);
    }
    std::uint64_t first = in.u8();
    if (!f.sent_batches.empty() && (in.u8() & 1) != 0) {
        first = f.sent_batches[in.u8() % f.sent_batches.size()];
    }
    proto::reserve_ack_in a;
    a.link_id = "a-b";
    a.batch_first = first;
    a.batch_last = first + in.u8() % 3;
    a.keys = std::span<const proto::key_ack_in>(acks.data(), in.u8() % 3);
    proto::decoded d;
    if (receive(f, proto::encode(f.fbb, a), d) != nullptr) {
        const auto* m = proto::body_as<proto::fb::ReserveAck>(d);
        f.exceptions.clear();
        if (m->keys() != nullptr) {
            for (const proto::fb::KeyAck* k : *m->keys()) {
                proto::key_ack_in e;
                std::memcpy(e.key_id.data(), k->key_id().bytes()->data(), e.key_id.size());
                e.status = k->status();
                f.exceptions.push_back(e);
            }
        }
        f.source->on_ack(m->batch_first(), m->batch_last(), f.exceptions);
    }
}

void peer_grant(fixture& f, reader& in) {
    proto::share_grant_in g;
    g.link_id = "a-b";
    g.first = in.u16();
    g.end = g.first + 1 + in.u8();
    g.stride = 1 + in.u8() % 3;
    proto::decoded d;
    if (receive(f, proto::encode(f.fbb, g), d) != nullptr) {
        const auto* m = proto::body_as<proto::fb::ShareGrant>(d);
        f.source->add_grant(m->first(), m->end(), m->stride());
    }
}

void peer_watermark(fixture& f, reader& in) {
    proto::watermark_in w;
    w.link_id = "a-b";
    w.share_stride = 2;
    w.share_offset = 0;
    w.ingested_end = in.u32();
    w.serving_blocks = in.u16();
    proto::decoded d;
    if (receive(f, proto::encode(f.fbb, w), d) != nullptr) {
        const auto* m = proto::body_as<proto::fb::StreamWatermark>(d);
        f.source->check_fresh(m->ingested_end());
        (void)f.source->maybe_grant(f.now_ns, m->serving_blocks(), f.source->grant_low_water());
    }
}

void local_reserve(fixture& f, reader& in) {
    std::array<etsi014::key_id, 3> ids{};
    std::array<std::byte, 3 * 64> bytes{};
    const std::array<sae_id, 2> slaves{sae_id{1}, sae_id{3}}; // alice (peer), dave (here)
    node::reserve_args a;
    a.key_bits = 8 * (1 + in.u8() % 64);
    a.number = 1 + in.u8() % 3;
    a.master = sae_id{2}; // bob
    a.slaves = std::span<const sae_id>(slaves.data(), 1 + in.u8() % 2);
    if (f.source->reserve(f.now_ns, a, ids, bytes)) {
        for (std::uint32_t i = 0; i < a.number && f.local_ids.size() < 256; ++i) {
            f.local_ids.push_back(ids[i]);
        }
    }
}

void local_deliver(fixture& f, reader& in) {
    std::array<etsi014::key_id, 2> ids{};
    for (auto& id : ids) {
        if (!f.local_ids.empty() && (in.u8() & 1) != 0) {
            id = f.local_ids[in.u8() % f.local_ids.size()];
        } else {
            const auto wire = key_id_of(in.u8());
            std::memcpy(id.bytes.data(), wire.data(), id.bytes.size());
        }
    }
    std::array<std::byte, 2 * 2048> bytes{};
    std::array<std::uint32_t, 2> sizes{};
    const sae_id master{1 + in.u8() % 4u};
    const sae_id caller{2 + in.u8() % 2u}; // bob or dave
    (void)f.source->deliver(f.now_ns, master, caller,
                            std::span<const etsi014::key_id>(ids.data(), 1 + in.u8() % 2), bytes,
                            sizes);
}

void notices(fixture& f, reader& in) {
    const std::size_t n = f.source->take_notices(1 + in.u8() % 8, f.batch);
    if (n == 0) {
        return;
    }
    proto::reserve_in r;
    r.link_id = "a-b";
    r.batch_id = f.batch.batch_id;
    r.keys = f.batch.keys;
    proto::decoded d;
    (void)receive(f, proto::encode(f.fbb, r), d); // what we send must decode
    switch (in.u8() % 3) {
    case 0:
        f.source->requeue(f.batch.batch_id);
        break;
    case 1:
        f.source->requeue_all();
        break;
    default:
        if (f.sent_batches.size() < 64) {
            f.sent_batches.push_back(f.batch.batch_id);
        }
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fixture& f = get_fixture();
    reader in(data, size);
    for (int steps = 0; steps < 64 && !in.done(); ++steps) {
        switch (in.u8() % 11) {
        case 0:
            peer_reserve(f, in);
            break;
        case 1:
            peer_void(f, in);
            break;
        case 2:
            peer_ack(f, in);
            break;
        case 3:
            peer_grant(f, in);
            break;
        case 4:
            peer_watermark(f, in);
            break;
        case 5:
            local_reserve(f, in);
            break;
        case 6:
            local_deliver(f, in);
            break;
        case 7:
            (void)f.source->pump(f.now_ns, 1 + in.u16() % 1024);
            break;
        case 8:
            f.now_ns += std::uint64_t{in.u16()} * 1'000'000;
            (void)f.source->expire_due(f.now_ns, 1 + in.u8() % 64);
            break;
        case 9:
            notices(f, in);
            break;
        default:
            f.voids.clear();
            (void)f.source->take_voids(1 + in.u8() % 16, f.voids);
        }
    }
    // Bounded by the reservation table: the outbox and the expiry queue never grow past it.
    if (f.source->expiry_queued() > reservations_max) {
        std::abort();
    }
    return 0;
}
