#include "dataplane/proto/encode.h"

#include "dataplane/proto/frame.h"

namespace keyrail::proto {
namespace {

template <std::size_t n>
flatbuffers::span<const std::uint8_t, n> as_u8(const std::array<std::byte, n>& a) noexcept {
    return flatbuffers::span<const std::uint8_t, n>(
        reinterpret_cast<const std::uint8_t*>(a.data()), n);
}

flatbuffers::Offset<flatbuffers::String> string(flatbuffers::FlatBufferBuilder& fbb,
                                                std::string_view s) noexcept {
    return fbb.CreateString(s.data(), s.size());
}

// A vector of structs built in place, last element first (the builder grows downward).
// FlatBufferBuilder::CreateUninitializedVectorOfStructs aligns to sizeof(T), which for a
// 17-byte KeyAck would make the whole frame 17-aligned; this aligns to the struct's alignment,
// as CreateVectorOfStructs does, without a staging array.
template <class T, class Make>
flatbuffers::Offset<flatbuffers::Vector<const T*>>
struct_vector(flatbuffers::FlatBufferBuilder& fbb, std::size_t count, Make make) noexcept {
    fbb.StartVector(count * sizeof(T) / flatbuffers::AlignOf<T>(), flatbuffers::AlignOf<T>());
    for (std::size_t i = count; i-- > 0;) {
        const T value = make(i);
        fbb.PushBytes(reinterpret_cast<const std::uint8_t*>(&value), sizeof(T));
    }
    return flatbuffers::Offset<flatbuffers::Vector<const T*>>(fbb.EndVector(count));
}

// Finishes the frame, pads it to a multiple of 8 bytes, and checks it as a peer would.
result<frame_bytes> finish(flatbuffers::FlatBufferBuilder& fbb, std::uint16_t version,
                           fb::Message type, flatbuffers::Offset<void> body) noexcept {
    fb::FrameBuilder frame(fbb);
    frame.add_version(version);
    frame.add_body_type(type);
    frame.add_body(body);
    const auto root = frame.Finish();
    // FinishSizePrefixed pads the whole buffer, prefix included, to the builder's minimum
    // alignment; forcing that to 8 makes every frame a multiple of 8 bytes.
    fbb.TrackMinAlign(limits::frame_align_bytes);
    fb::FinishSizePrefixedFrameBuffer(fbb, root);
    const frame_bytes out(reinterpret_cast<const std::byte*>(fbb.GetBufferPointer()),
                          fbb.GetSize());
    if (out.size() > limits::frame_bytes_max) {
        return fail(errc::frame_too_large);
    }
    const decoded check = decode(out);
    if (check.status != decode_status::frame) {
        return fail(check.error);
    }
    return out;
}

} // namespace

result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb, const hello_in& m,
                           std::uint16_t version) noexcept {
    if (m.links.size() > limits::hello_links_max) {
        return fail(errc::too_many_items);
    }
    fbb.Clear();
    std::array<flatbuffers::Offset<fb::LinkConfirm>, limits::hello_links_max> links{};
    for (std::size_t i = 0; i < m.links.size(); ++i) {
        const auto link_id = string(fbb, m.links[i].link_id);
        const fb::Digest32 confirm(as_u8(m.links[i].confirm));
        links[i] = fb::CreateLinkConfirm(fbb, link_id, &confirm);
    }
    const auto links_vec = fbb.CreateVector(links.data(), m.links.size());
    const auto node_id = string(fbb, m.node_id);
    const fb::Nonce16 nonce(as_u8(m.nonce));
    const auto body = fb::CreateHello(fbb, node_id, m.protocol_version_min,
                                      m.protocol_version_max, m.capabilities, &nonce, links_vec);
    return finish(fbb, version, fb::Message::Hello, body.Union());
}

result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb, const watermark_in& m,
                           std::uint16_t version) noexcept {
    fbb.Clear();
    const auto link_id = string(fbb, m.link_id);
    const fb::Share share(m.share_stride, m.share_offset);
    const auto body = fb::CreateStreamWatermark(fbb, link_id, m.stream, m.ingested_end,
                                                m.reserved_end, &share, m.share_epoch,
                                                m.serving_blocks);
    return finish(fbb, version, fb::Message::StreamWatermark, body.Union());
}

result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb, const share_grant_in& m,
                           std::uint16_t version) noexcept {
    fbb.Clear();
    const auto link_id = string(fbb, m.link_id);
    const auto body = fb::CreateShareGrant(fbb, link_id, m.stream, m.first, m.end, m.stride);
    return finish(fbb, version, fb::Message::ShareGrant, body.Union());
}

result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb, const reserve_in& m,
                           std::uint16_t version) noexcept {
    if (m.keys.size() > limits::reserve_keys_max) {
        return fail(errc::too_many_items);
    }
    for (const auto& key : m.keys) {
        if (key.slave_saes.size() > limits::slaves_max || key.runs.size() > limits::runs_max) {
            return fail(errc::too_many_items);
        }
    }
    fbb.Clear();
    // Offsets live on the stack (4 KiB for the keys), so encoding never allocates.
    std::array<flatbuffers::Offset<fb::KeyReservation>, limits::reserve_keys_max> keys{};
    for (std::size_t k = 0; k < m.keys.size(); ++k) {
        const key_reservation_in& key = m.keys[k];
        std::array<flatbuffers::Offset<flatbuffers::String>, limits::slaves_max> slaves{};
        for (std::size_t s = 0; s < key.slave_saes.size(); ++s) {
            slaves[s] = string(fbb, key.slave_saes[s]);
        }
        const auto slaves_vec = fbb.CreateVector(slaves.data(), key.slave_saes.size());
        const auto runs_vec =
            struct_vector<fb::SeqRun>(fbb, key.runs.size(), [&](std::size_t r) noexcept {
                return fb::SeqRun(key.runs[r].first, key.runs[r].count, key.runs[r].stride);
            });
        const auto master = string(fbb, key.master_sae);
        const fb::KeyId key_id(as_u8(key.key_id));
        keys[k] = fb::CreateKeyReservation(fbb, &key_id, master, slaves_vec, runs_vec,
                                           key.size_bits, key.expiry_unix_ms);
    }
    const auto keys_vec = fbb.CreateVector(keys.data(), m.keys.size());
    const auto link_id = string(fbb, m.link_id);
    const auto body = fb::CreateReserve(fbb, link_id, m.stream, m.batch_id, keys_vec);
    return finish(fbb, version, fb::Message::Reserve, body.Union());
}

result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb, const reserve_ack_in& m,
                           std::uint16_t version) noexcept {
    if (m.keys.size() > limits::ack_keys_max) {
        return fail(errc::too_many_items);
    }
    fbb.Clear();
    flatbuffers::Offset<flatbuffers::Vector<const fb::KeyAck*>> keys_vec{};
    if (!m.keys.empty()) {
        keys_vec = struct_vector<fb::KeyAck>(fbb, m.keys.size(), [&](std::size_t i) noexcept {
            return fb::KeyAck(fb::KeyId(as_u8(m.keys[i].key_id)), m.keys[i].status);
        });
    }
    const auto link_id = string(fbb, m.link_id);
    const auto body =
        fb::CreateReserveAck(fbb, link_id, m.stream, m.batch_first, m.batch_last, keys_vec);
    return finish(fbb, version, fb::Message::ReserveAck, body.Union());
}

result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb, const void_in& m,
                           std::uint16_t version) noexcept {
    if (m.key_ids.size() > limits::void_keys_max) {
        return fail(errc::too_many_items);
    }
    fbb.Clear();
    const auto ids_vec =
        struct_vector<fb::KeyId>(fbb, m.key_ids.size(), [&](std::size_t i) noexcept {
            return fb::KeyId(as_u8(m.key_ids[i]));
        });
    const auto link_id = string(fbb, m.link_id);
    const auto body = fb::CreateVoid(fbb, link_id, m.stream, m.reason, ids_vec);
    return finish(fbb, version, fb::Message::Void, body.Union());
}

result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb, const ping_in& m,
                           std::uint16_t version) noexcept {
    fbb.Clear();
    const auto body = fb::CreatePing(fbb, m.nonce, m.sent_ns);
    return finish(fbb, version, fb::Message::Ping, body.Union());
}

result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb, const pong_in& m,
                           std::uint16_t version) noexcept {
    fbb.Clear();
    const auto body = fb::CreatePong(fbb, m.nonce, m.ping_sent_ns, m.sent_ns);
    return finish(fbb, version, fb::Message::Pong, body.Union());
}

} // namespace keyrail::proto
