// Fuzz target: the peer protocol frame decoder (dataplane/proto). Besides memory safety it
// checks the stateless contract (a prefix decodes as need_more or the same error; a complete
// frame decodes the same with bytes after it), that every field of an accepted frame can be
// read, and that whatever the decoder accepts the encoders reproduce and accept again.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "dataplane/proto/encode.h"
#include "dataplane/proto/frame.h"

namespace proto = keyrail::proto;
namespace fb = keyrail::proto::fb;

namespace {

void check(bool ok) {
    if (!ok) {
        std::abort();
    }
}

std::string_view view(const flatbuffers::String* s) { return {s->c_str(), s->size()}; }

template <std::uint16_t n>
std::array<std::byte, n> bytes_of(const flatbuffers::Array<std::uint8_t, n>* a) {
    std::array<std::byte, n> out{};
    std::memcpy(out.data(), a->Data(), n);
    return out;
}

// Rebuilds the decoded message through the encoders; they must accept it.
proto::decoded reencode(flatbuffers::FlatBufferBuilder& fbb, const proto::decoded& d) {
    const auto version = d.frame->version();
    keyrail::result<proto::frame_bytes> out = keyrail::fail(proto::errc::missing_body);
    switch (d.type) {
    case fb::Message::Hello: {
        const auto* h = proto::body_as<fb::Hello>(d);
        std::array<proto::link_confirm_in, proto::limits::hello_links_max> links{};
        for (flatbuffers::uoffset_t i = 0; i < h->links()->size(); ++i) {
            links[i].link_id = view(h->links()->Get(i)->link_id());
            links[i].confirm = bytes_of(h->links()->Get(i)->confirm()->bytes());
        }
        proto::hello_in in;
        in.node_id = view(h->node_id());
        in.protocol_version_min = h->protocol_version_min();
        in.protocol_version_max = h->protocol_version_max();
        in.capabilities = h->capabilities();
        in.nonce = bytes_of(h->nonce()->bytes());
        in.links = std::span(links).first(h->links()->size());
        out = proto::encode(fbb, in, version);
        break;
    }
    case fb::Message::StreamWatermark: {
        const auto* w = proto::body_as<fb::StreamWatermark>(d);
        proto::watermark_in in{view(w->link_id()), w->stream(),          w->ingested_end(),
                               w->reserved_end(),  w->share()->stride(), w->share()->offset(),
                               w->share_epoch(),   w->serving_blocks()};
        out = proto::encode(fbb, in, version);
        break;
    }
    case fb::Message::Reserve: {
        const auto* r = proto::body_as<fb::Reserve>(d);
        static std::vector<proto::key_reservation_in> keys;
        static std::vector<std::array<std::string_view, proto::limits::slaves_max>> slaves;
        static std::vector<std::array<proto::seq_run, proto::limits::runs_max>> runs;
        keys.resize(r->keys()->size());
        slaves.resize(keys.size());
        runs.resize(keys.size());
        for (flatbuffers::uoffset_t k = 0; k < r->keys()->size(); ++k) {
            const auto* key = r->keys()->Get(k);
            for (flatbuffers::uoffset_t s = 0; s < key->slave_saes()->size(); ++s) {
                slaves[k][s] = view(key->slave_saes()->Get(s));
            }
            for (flatbuffers::uoffset_t i = 0; i < key->runs()->size(); ++i) {
                const auto* run = key->runs()->Get(i);
                runs[k][i] = {run->first(), run->count(), run->stride()};
            }
            keys[k] = {bytes_of(key->key_id()->bytes()),
                       view(key->master_sae()),
                       std::span(slaves[k]).first(key->slave_saes()->size()),
                       std::span(runs[k]).first(key->runs()->size()),
                       key->size_bits(),
                       key->expiry_unix_ms()};
        }
        out = proto::encode(fbb, proto::reserve_in{view(r->link_id()), r->stream(),
                                                   r->batch_id(), keys},
                            version);
        break;
    }
    case fb::Message::ReserveAck: {
        const auto* a = proto::body_as<fb::ReserveAck>(d);
        static std::vector<proto::key_ack_in> acks;
        acks.clear();
        if (a->keys() != nullptr) {
            for (const fb::KeyAck* k : *a->keys()) {
                acks.push_back({bytes_of(k->key_id().bytes()), k->status()});
            }
        }
        out = proto::encode(fbb, proto::reserve_ack_in{view(a->link_id()), a->stream(),
                                                       a->batch_first(), a->batch_last(), acks},
                            version);
        break;
    }
    case fb::Message::Void: {
        const auto* v = proto::body_as<fb::Void>(d);
        static std::vector<proto::key_id_bytes> ids;
        ids.clear();
        for (const fb::KeyId* id : *v->key_ids()) {
            ids.push_back(bytes_of(id->bytes()));
        }
        out = proto::encode(fbb, proto::void_in{view(v->link_id()), v->stream(), v->reason(), ids},
                            version);
        break;
    }
    case fb::Message::Ping: {
        const auto* p = proto::body_as<fb::Ping>(d);
        out = proto::encode(fbb, proto::ping_in{p->nonce(), p->sent_ns()}, version);
        break;
    }
    case fb::Message::Pong: {
        const auto* p = proto::body_as<fb::Pong>(d);
        out = proto::encode(fbb, proto::pong_in{p->nonce(), p->ping_sent_ns(), p->sent_ns()},
                            version);
        break;
    }
    case fb::Message::ShareGrant: {
        const auto* g = proto::body_as<fb::ShareGrant>(d);
        proto::share_grant_in in{view(g->link_id()), g->stream(), g->first(), g->end(),
                                 g->stride()};
        out = proto::encode(fbb, in, version);
        break;
    }
    default:
        check(false); // the decoder accepts no other type
    }
    check(out.has_value());
    return proto::decode(*out);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // The decoder wants an 8-aligned buffer, as the connection layer keeps it.
    static std::vector<std::uint64_t> storage;
    storage.assign(size / 8 + 1, 0);
    if (size > 0) {
        std::memcpy(storage.data(), data, size);
    }
    const std::span<const std::byte> buf(reinterpret_cast<const std::byte*>(storage.data()), size);

    const proto::decoded full = proto::decode(buf);
    switch (full.status) {
    case proto::decode_status::need_more:
        check(full.frame == nullptr);
        break;
    case proto::decode_status::error:
        check(!full.reason.empty());
        check(full.error.category() == proto::proto_category());
        check(full.frame == nullptr);
        break;
    case proto::decode_status::frame: {
        check(full.consumed_bytes >= proto::limits::frame_bytes_min);
        check(full.consumed_bytes <= size);
        check(full.consumed_bytes % proto::limits::frame_align_bytes == 0);
        check(full.frame->body_type() == full.type);
        static flatbuffers::FlatBufferBuilder fbb(4096);
        const proto::decoded again = reencode(fbb, full);
        check(again.status == proto::decode_status::frame);
        check(again.type == full.type);
        break;
    }
    }

    // A split point derived from the input, so the fuzzer can steer it.
    const std::size_t split = size == 0 ? 0 : (data[0] * 131u + size) % (size + 1);
    const proto::decoded part = proto::decode(buf.first(split));
    switch (part.status) {
    case proto::decode_status::need_more:
        check(full.status != proto::decode_status::frame || split < full.consumed_bytes);
        break;
    case proto::decode_status::error:
        check(full.status == proto::decode_status::error);
        check(part.error == full.error);
        break;
    case proto::decode_status::frame:
        check(full.status == proto::decode_status::frame);
        check(part.consumed_bytes == full.consumed_bytes);
        check(part.type == full.type);
        break;
    }

    // Frames back to back: each accepted frame advances the buffer and keeps it aligned.
    std::size_t offset = 0;
    for (int i = 0; i < 64 && offset < size; ++i) {
        const proto::decoded d = proto::decode(buf.subspan(offset));
        if (d.status != proto::decode_status::frame) {
            break;
        }
        check(d.consumed_bytes > 0);
        offset += d.consumed_bytes;
    }
    return 0;
}
