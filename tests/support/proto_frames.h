#pragma once
// Test helpers for dataplane/proto: a valid sample frame of every message type, and a raw
// finisher that builds frames without the encoders' checks, so tests can hand the decoder
// what a hostile or buggy peer would send. Tests and the corpus generator only.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>
#include <vector>

#include "dataplane/proto/encode.h"
#include "dataplane/proto/frame.h"

namespace keyrail::test {

using bytes = std::vector<std::byte>;

inline bytes copy(std::span<const std::byte> s) { return bytes(s.begin(), s.end()); }

// Finishes a frame the way the encoders do, minus every check.
inline bytes finish_raw(flatbuffers::FlatBufferBuilder& fbb, std::uint16_t version,
                        proto::fb::Message type, flatbuffers::Offset<void> body) {
    proto::fb::FrameBuilder frame(fbb);
    frame.add_version(version);
    frame.add_body_type(type);
    frame.add_body(body);
    const auto root = frame.Finish();
    fbb.TrackMinAlign(proto::limits::frame_align_bytes);
    proto::fb::FinishSizePrefixedFrameBuffer(fbb, root);
    const auto* p = reinterpret_cast<const std::byte*>(fbb.GetBufferPointer());
    return bytes(p, p + fbb.GetSize());
}

inline proto::key_id_bytes key_id_of(std::uint8_t seed) {
    proto::key_id_bytes id{};
    for (std::size_t i = 0; i < id.size(); ++i) {
        id[i] = static_cast<std::byte>(seed + i * 7);
    }
    return id;
}

// One valid frame per message type, with every optional part filled in.
inline std::vector<bytes> sample_frames() {
    flatbuffers::FlatBufferBuilder fbb(1024);
    std::vector<bytes> out;
    auto take = [&](const result<proto::frame_bytes>& r) {
        if (!r) {
            std::fprintf(stderr, "sample frame %zu: %s\n", out.size(), r.error().message().c_str());
            std::abort();
        }
        out.push_back(copy(*r));
    };

    std::array<proto::link_confirm_in, 2> links{};
    links[0].link_id = "a-b";
    links[1].link_id = "a-b.2";
    for (std::size_t i = 0; i < 32; ++i) {
        links[0].confirm[i] = static_cast<std::byte>(i);
        links[1].confirm[i] = static_cast<std::byte>(255 - i);
    }
    proto::hello_in hello;
    hello.node_id = "node-a";
    hello.nonce = key_id_of(9);
    hello.links = links;
    take(proto::encode(fbb, hello));

    proto::watermark_in wm;
    wm.link_id = "a-b";
    wm.stream = 3;
    wm.ingested_end = 1'000'000;
    wm.reserved_end = 999'990;
    wm.share_stride = 2;
    wm.share_offset = 1;
    wm.share_epoch = 4;
    take(proto::encode(fbb, wm));

    static constexpr std::array<std::string_view, 2> slaves{"sae-b", "sae-c"};
    static constexpr std::array<proto::seq_run, 2> runs_a{
        proto::seq_run{100, 4, 2}, proto::seq_run{200, 1, 1}};
    static constexpr std::array<proto::seq_run, 1> runs_b{proto::seq_run{300, 8, 2}};
    std::array<proto::key_reservation_in, 2> keys{};
    keys[0] = {key_id_of(1), "sae-a", slaves, runs_a, 256, 1'700'000'000'000};
    keys[1] = {key_id_of(2), "sae-a", std::span(slaves).first(1), runs_b, 512,
               1'700'000'000'500};
    proto::reserve_in reserve;
    reserve.link_id = "a-b";
    reserve.stream = 3;
    reserve.batch_id = 77;
    reserve.keys = keys;
    take(proto::encode(fbb, reserve));

    std::array<proto::key_ack_in, 2> acks{};
    acks[0] = {key_id_of(1), proto::fb::ReserveStatus::conflict};
    acks[1] = {key_id_of(2), proto::fb::ReserveStatus::full};
    proto::reserve_ack_in ack;
    ack.link_id = "a-b";
    ack.stream = 3;
    ack.batch_first = 70;
    ack.batch_last = 77;
    ack.keys = acks;
    take(proto::encode(fbb, ack));
    ack.keys = {};
    take(proto::encode(fbb, ack));

    const std::array<proto::key_id_bytes, 3> ids{key_id_of(1), key_id_of(2), key_id_of(3)};
    proto::void_in v;
    v.link_id = "a-b";
    v.stream = 3;
    v.reason = proto::fb::VoidReason::expired;
    v.key_ids = ids;
    take(proto::encode(fbb, v));

    take(proto::encode(fbb, proto::ping_in{0x1122334455667788, 123456789}));
    take(proto::encode(fbb, proto::pong_in{0x1122334455667788, 123456789, 123999999}));
    proto::share_grant_in grant;
    grant.link_id = "a-b";
    grant.stream = 3;
    grant.first = 1;
    grant.end = 1613;
    grant.stride = 2;
    take(proto::encode(fbb, grant));
    return out;
}

} // namespace keyrail::test
