#include "dataplane/proto/frame.h"

#include <bit>
#include <cstring>

#include "engine/assert.h"

namespace keyrail::proto {
namespace {

// A semantic failure: a code and a static sentence. Empty reason means none.
struct fault {
    errc code{};
    std::string_view reason{};
    explicit operator bool() const noexcept { return !reason.empty(); }
};

constexpr fault none{};

decoded failure(errc code, std::string_view reason) noexcept {
    decoded d;
    d.status = decode_status::error;
    d.error = make_error_code(code);
    d.reason = reason;
    return d;
}

// Ids are logged and compared byte-wise, so only printable ASCII without spaces is accepted.
fault check_id(const flatbuffers::String* id, std::string_view missing,
               std::string_view bad) noexcept {
    if (id == nullptr) {
        return {errc::missing_field, missing};
    }
    const std::size_t size = id->size();
    if (size == 0 || size > limits::id_bytes_max) {
        return {errc::bad_id, bad};
    }
    const char* chars = id->c_str();
    for (std::size_t i = 0; i < size; ++i) {
        const auto c = static_cast<unsigned char>(chars[i]);
        if (c < 0x21 || c > 0x7e) {
            return {errc::bad_id, bad};
        }
    }
    return none;
}

fault check_hello(const fb::Hello& m) noexcept {
    if (auto f = check_id(m.node_id(), "hello: node_id missing", "hello: bad node_id")) {
        return f;
    }
    if (m.protocol_version_min() == 0) {
        return {errc::bad_range, "hello: protocol_version_min is 0"};
    }
    if (m.protocol_version_min() > m.protocol_version_max()) {
        return {errc::bad_range, "hello: protocol_version_min above protocol_version_max"};
    }
    if (m.nonce() == nullptr) {
        return {errc::missing_field, "hello: nonce missing"};
    }
    const auto* links = m.links();
    if (links == nullptr || links->size() == 0) {
        return {errc::missing_field, "hello: no link confirmations"};
    }
    if (links->size() > limits::hello_links_max) {
        return {errc::too_many_items, "hello: more link confirmations than hello_links_max"};
    }
    for (const fb::LinkConfirm* link : *links) {
        if (link == nullptr) {
            return {errc::missing_field, "hello: null link confirmation"};
        }
        if (auto f = check_id(link->link_id(), "hello: link confirmation without link_id",
                              "hello: bad link_id in link confirmation")) {
            return f;
        }
        if (link->confirm() == nullptr) {
            return {errc::missing_field, "hello: link confirmation without confirm value"};
        }
    }
    return none;
}

fault check_share(const fb::Share* share) noexcept {
    if (share == nullptr) {
        return {errc::missing_field, "stream_watermark: share missing"};
    }
    if (share->stride() == 0 || share->stride() > limits::stride_max) {
        return {errc::bad_share, "stream_watermark: share stride is 0 or above stride_max"};
    }
    if (share->offset() >= share->stride()) {
        return {errc::bad_share, "stream_watermark: share offset not below its stride"};
    }
    return none;
}

fault check_watermark(const fb::StreamWatermark& m) noexcept {
    if (auto f = check_id(m.link_id(), "stream_watermark: link_id missing",
                          "stream_watermark: bad link_id")) {
        return f;
    }
    return check_share(m.share());
}

// Runs must be non-empty, must not overflow, and must come in ascending order with each run
// starting after the last sequence number of the previous one: then no two overlap, and the
// check is linear.
fault check_runs(const flatbuffers::Vector<const fb::SeqRun*>* runs) noexcept {
    if (runs == nullptr || runs->size() == 0) {
        return {errc::missing_field, "reserve: key without sequence runs"};
    }
    if (runs->size() > limits::runs_max) {
        return {errc::too_many_items, "reserve: key with more runs than runs_max"};
    }
    // The Verifier checks a struct vector's length word but not its elements' alignment, and
    // SeqRun holds a 64-bit field: refuse a vector placed 4 bytes off rather than read it.
    if (reinterpret_cast<std::uintptr_t>(runs->Data()) % alignof(fb::SeqRun) != 0) {
        return {errc::verify_failed, "reserve: sequence runs not 8-aligned"};
    }
    std::uint64_t blocks = 0;
    std::uint64_t previous_last = 0;
    for (flatbuffers::uoffset_t i = 0; i < runs->size(); ++i) {
        const fb::SeqRun* run = runs->Get(i);
        if (run->count() == 0) {
            return {errc::bad_seq_run, "reserve: sequence run with count 0"};
        }
        if (run->stride() == 0 || run->stride() > limits::stride_max) {
            return {errc::bad_seq_run, "reserve: sequence run stride is 0 or above stride_max"};
        }
        // count - 1 < 2^32 and stride <= 256, so the span fits in 64 bits; only the addition
        // to first can overflow.
        const std::uint64_t span = std::uint64_t{run->count() - 1} * run->stride();
        if (run->first() > UINT64_MAX - span) {
            return {errc::bad_seq_run, "reserve: sequence run past the largest sequence number"};
        }
        if (i > 0 && run->first() <= previous_last) {
            return {errc::bad_seq_run, "reserve: sequence runs overlap or are not ascending"};
        }
        previous_last = run->first() + span;
        blocks += run->count();
        if (blocks > limits::key_blocks_max) {
            return {errc::too_many_items, "reserve: key with more blocks than key_blocks_max"};
        }
    }
    return none;
}

fault check_key(const fb::KeyReservation* key) noexcept {
    if (key == nullptr) {
        return {errc::missing_field, "reserve: null key"};
    }
    if (key->key_id() == nullptr) {
        return {errc::missing_field, "reserve: key without key_id"};
    }
    if (auto f = check_id(key->master_sae(), "reserve: key without master_sae",
                          "reserve: bad master_sae")) {
        return f;
    }
    const auto* slaves = key->slave_saes();
    if (slaves == nullptr || slaves->size() == 0) {
        return {errc::missing_field, "reserve: key without slave_saes"};
    }
    if (slaves->size() > limits::slaves_max) {
        return {errc::too_many_items, "reserve: key with more slave_saes than slaves_max"};
    }
    for (const flatbuffers::String* slave : *slaves) {
        if (auto f = check_id(slave, "reserve: null slave_sae", "reserve: bad slave_sae")) {
            return f;
        }
    }
    if (auto f = check_runs(key->runs())) {
        return f;
    }
    const std::uint32_t bits = key->size_bits();
    if (bits % 8 != 0 || bits < limits::key_bits_min || bits > limits::key_bits_max) {
        return {errc::bad_key_size, "reserve: size_bits not a multiple of 8 in 8..65536"};
    }
    if (key->expiry_unix_ms() == 0) {
        return {errc::missing_field, "reserve: key without expiry_unix_ms"};
    }
    return none;
}

fault check_reserve(const fb::Reserve& m) noexcept {
    if (auto f = check_id(m.link_id(), "reserve: link_id missing", "reserve: bad link_id")) {
        return f;
    }
    const auto* keys = m.keys();
    if (keys == nullptr || keys->size() == 0) {
        return {errc::missing_field, "reserve: no keys"};
    }
    if (keys->size() > limits::reserve_keys_max) {
        return {errc::too_many_items, "reserve: more keys than reserve_keys_max"};
    }
    for (const fb::KeyReservation* key : *keys) {
        if (auto f = check_key(key)) {
            return f;
        }
    }
    return none;
}

fault check_reserve_ack(const fb::ReserveAck& m) noexcept {
    if (auto f = check_id(m.link_id(), "reserve_ack: link_id missing",
                          "reserve_ack: bad link_id")) {
        return f;
    }
    if (m.batch_first() > m.batch_last()) {
        return {errc::bad_range, "reserve_ack: batch_first above batch_last"};
    }
    const auto* keys = m.keys();
    if (keys == nullptr) {
        return none; // every key of the batches is ok
    }
    if (keys->size() > limits::ack_keys_max) {
        return {errc::too_many_items, "reserve_ack: more key statuses than ack_keys_max"};
    }
    for (const fb::KeyAck* ack : *keys) {
        if (ack->status() > fb::ReserveStatus::MAX) {
            return {errc::bad_enum, "reserve_ack: unknown key status"};
        }
    }
    return none;
}

fault check_void(const fb::Void& m) noexcept {
    if (auto f = check_id(m.link_id(), "void: link_id missing", "void: bad link_id")) {
        return f;
    }
    if (m.reason() == fb::VoidReason::unspecified || m.reason() > fb::VoidReason::MAX) {
        return {errc::bad_enum, "void: reason unspecified or unknown"};
    }
    const auto* ids = m.key_ids();
    if (ids == nullptr || ids->size() == 0) {
        return {errc::missing_field, "void: no key_ids"};
    }
    if (ids->size() > limits::void_keys_max) {
        return {errc::too_many_items, "void: more key_ids than void_keys_max"};
    }
    return none;
}

fault check_share_grant(const fb::ShareGrant& m) noexcept {
    if (auto f = check_id(m.link_id(), "share_grant: link_id missing",
                          "share_grant: bad link_id")) {
        return f;
    }
    if (m.stride() == 0 || m.stride() > limits::stride_max) {
        return {errc::bad_share, "share_grant: stride is 0 or above stride_max"};
    }
    if (m.first() >= m.end() || m.end() - m.first() > limits::grant_span_max) {
        return {errc::bad_share, "share_grant: range empty or above grant_span_max"};
    }
    return none;
}

template <class T>
fault check_body(const fb::Frame& frame, fault (*check)(const T&)) noexcept {
    const T* body = frame.body_as<T>();
    if (body == nullptr) {
        return {errc::missing_body, "frame: message type set but body missing"};
    }
    return check(*body);
}

fault check_nothing(const fb::Ping&) noexcept { return none; }
fault check_nothing_pong(const fb::Pong&) noexcept { return none; }

fault check_frame(const fb::Frame& frame) noexcept {
    if (frame.version() < protocol_version_min || frame.version() > protocol_version) {
        return {errc::unsupported_version, "frame: version outside what this node speaks"};
    }
    switch (frame.body_type()) {
    case fb::Message::NONE:
        return {errc::missing_body, "frame: no message"};
    case fb::Message::Hello:
        return check_body<fb::Hello>(frame, check_hello);
    case fb::Message::StreamWatermark:
        return check_body<fb::StreamWatermark>(frame, check_watermark);
    case fb::Message::Reserve:
        return check_body<fb::Reserve>(frame, check_reserve);
    case fb::Message::ReserveAck:
        return check_body<fb::ReserveAck>(frame, check_reserve_ack);
    case fb::Message::Void:
        return check_body<fb::Void>(frame, check_void);
    case fb::Message::Ping:
        return check_body<fb::Ping>(frame, check_nothing);
    case fb::Message::Pong:
        return check_body<fb::Pong>(frame, check_nothing_pong);
    case fb::Message::ShareGrant:
        return check_body<fb::ShareGrant>(frame, check_share_grant);
    case fb::Message::Relay:
    case fb::Message::RelayAck:
    case fb::Message::Lsa:
    case fb::Message::KemInit:
    case fb::Message::KemReply:
        return {errc::unsupported_message, "frame: message type reserved for a later version"};
    }
    return {errc::unknown_message, "frame: unknown message type"};
}

} // namespace

decoded decode(std::span<const std::byte> buf) noexcept {
    if (buf.size() < limits::frame_header_bytes) {
        return {};
    }
    // The length prefix is little-endian on the wire; FlatBuffers requires a little-endian
    // host anyway. memcpy reads it at any alignment.
    std::uint32_t length = 0;
    std::memcpy(&length, buf.data(), sizeof length);
    static_assert(std::endian::native == std::endian::little, "the wire format is little-endian");
    if (length > limits::frame_bytes_max - limits::frame_header_bytes) {
        return failure(errc::frame_too_large, "frame: length prefix above frame_bytes_max");
    }
    const std::size_t frame_bytes = limits::frame_header_bytes + std::size_t{length};
    if (frame_bytes < limits::frame_bytes_min) {
        return failure(errc::frame_too_small, "frame: length prefix below frame_bytes_min");
    }
    if (frame_bytes % limits::frame_align_bytes != 0) {
        return failure(errc::frame_misaligned, "frame: size not a multiple of 8");
    }
    if (buf.size() < frame_bytes) {
        return {};
    }
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(buf.data());
    KEYRAIL_ASSERT(reinterpret_cast<std::uintptr_t>(bytes) % limits::frame_align_bytes == 0,
                   "receive buffer at %p is not 8-aligned", static_cast<const void*>(bytes));
    if (!flatbuffers::BufferHasIdentifier(bytes, fb::FrameIdentifier(), true)) {
        return failure(errc::bad_identifier, "frame: file identifier is not KRPF");
    }
    flatbuffers::Verifier::Options options;
    options.max_depth = limits::verifier_depth_max;
    options.max_tables = limits::verifier_tables_max;
    options.check_alignment = true;
    options.check_nested_flatbuffers = false;
    flatbuffers::Verifier verifier(bytes, frame_bytes, options);
    if (!fb::VerifySizePrefixedFrameBuffer(verifier)) {
        return failure(errc::verify_failed, "frame: FlatBuffers verification failed");
    }
    const fb::Frame* frame = fb::GetSizePrefixedFrame(bytes);
    if (const fault f = check_frame(*frame)) {
        return failure(f.code, f.reason);
    }
    decoded d;
    d.status = decode_status::frame;
    d.consumed_bytes = frame_bytes;
    d.frame = frame;
    d.type = frame->body_type();
    return d;
}

} // namespace keyrail::proto
