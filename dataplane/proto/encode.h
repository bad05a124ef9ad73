#pragma once
// Encoders for the peer protocol. Each builds one message into a caller-owned
// flatbuffers::FlatBufferBuilder (cleared first, reused across calls, so after warm-up nothing
// is allocated), finishes it with the u32 little-endian length prefix, and returns the whole
// frame: a view into the builder, valid until the builder is used again. Every encoder runs
// the decoder over what it built, so it never sends what a peer would refuse; a frame over a
// limit is an error, and the caller splits the batch. Lives on: the shard that owns the
// builder.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include <flatbuffers/flatbuffers.h>

#include "dataplane/proto/errc.h"
#include "dataplane/proto/limits.h"
#include "dataplane/proto/peer_generated.h"
#include "dataplane/proto/version.h"
#include "engine/result.h"

namespace keyrail::proto {

using key_id_bytes = std::array<std::byte, 16>;

struct link_confirm_in {
    std::string_view link_id;
    std::array<std::byte, 32> confirm{}; // computed by the link layer from the link secret
};

struct hello_in {
    std::string_view node_id;
    std::uint16_t protocol_version_min = proto::protocol_version_min;
    std::uint16_t protocol_version_max = proto::protocol_version;
    std::uint64_t capabilities = capabilities_v1;
    std::array<std::byte, 16> nonce{};
    std::span<const link_confirm_in> links;
};

struct watermark_in {
    std::string_view link_id;
    std::uint32_t stream = 0;
    std::uint64_t ingested_end = 0; // one past the highest ingested sequence number
    std::uint64_t reserved_end = 0; // one past the highest sequence number the sender reserved
    std::uint32_t share_stride = 1; // the sender owns seq % share_stride == share_offset
    std::uint32_t share_offset = 0;
    std::uint32_t share_epoch = 0;  // bumped by each rebalance
    std::uint64_t serving_blocks = 0; // own available blocks not leased, plus unused grants
};

// The sender's share blocks first, first + stride, ... below end, given to the receiver.
struct share_grant_in {
    std::string_view link_id;
    std::uint32_t stream = 0;
    std::uint64_t first = 0;
    std::uint64_t end = 0;
    std::uint32_t stride = 2;
};

// Sequence numbers first, first + stride, ..., first + (count - 1) * stride.
struct seq_run {
    std::uint64_t first = 0;
    std::uint32_t count = 0;
    std::uint32_t stride = 1;
};

struct key_reservation_in {
    key_id_bytes key_id{};
    std::string_view master_sae;
    std::span<const std::string_view> slave_saes;
    std::span<const seq_run> runs; // ascending, not overlapping
    std::uint32_t size_bits = 0;
    std::uint64_t expiry_unix_ms = 0;
};

struct reserve_in {
    std::string_view link_id;
    std::uint32_t stream = 0;
    std::uint64_t batch_id = 0;
    std::span<const key_reservation_in> keys;
};

struct key_ack_in {
    key_id_bytes key_id{};
    fb::ReserveStatus status = fb::ReserveStatus::ok;
};

struct reserve_ack_in {
    std::string_view link_id;
    std::uint32_t stream = 0;
    std::uint64_t batch_first = 0;
    std::uint64_t batch_last = 0;
    std::span<const key_ack_in> keys; // exceptions; empty means every key is ok
};

struct void_in {
    std::string_view link_id;
    std::uint32_t stream = 0;
    fb::VoidReason reason = fb::VoidReason::unspecified;
    std::span<const key_id_bytes> key_ids;
};

struct ping_in {
    std::uint64_t nonce = 0;
    std::uint64_t sent_ns = 0;
};

struct pong_in {
    std::uint64_t nonce = 0;
    std::uint64_t ping_sent_ns = 0;
    std::uint64_t sent_ns = 0;
};

using frame_bytes = std::span<const std::byte>;

// version: the version negotiated at Hello (Hello itself goes out in protocol_version_min, so
// any peer that can talk to us at all can read it).
[[nodiscard]] result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb, const hello_in& m,
                                         std::uint16_t version = protocol_version_min) noexcept;
[[nodiscard]] result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb,
                                         const watermark_in& m,
                                         std::uint16_t version = protocol_version) noexcept;
[[nodiscard]] result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb, const reserve_in& m,
                                         std::uint16_t version = protocol_version) noexcept;
[[nodiscard]] result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb,
                                         const reserve_ack_in& m,
                                         std::uint16_t version = protocol_version) noexcept;
[[nodiscard]] result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb, const void_in& m,
                                         std::uint16_t version = protocol_version) noexcept;
[[nodiscard]] result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb,
                                         const share_grant_in& m,
                                         std::uint16_t version = protocol_version) noexcept;
[[nodiscard]] result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb, const ping_in& m,
                                         std::uint16_t version = protocol_version) noexcept;
[[nodiscard]] result<frame_bytes> encode(flatbuffers::FlatBufferBuilder& fbb, const pong_in& m,
                                         std::uint16_t version = protocol_version) noexcept;

// The initial capacity for a builder that never grows: the largest frame.
inline constexpr std::size_t builder_bytes = limits::frame_bytes_max;

} // namespace keyrail::proto
