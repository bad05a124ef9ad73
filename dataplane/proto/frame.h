#pragma once
// The peer protocol's frame decoder. Stateless and allocation-free: give it the bytes received
// so far; it answers need_more, a verified frame (and how many bytes it used), or an error with
// a reason for the log. Nothing in a frame is used before the FlatBuffers Verifier and the
// semantic checks (limits.h) have passed. Lives on: any shard (no state).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <system_error>

#include "dataplane/proto/errc.h"
#include "dataplane/proto/limits.h"
#include "dataplane/proto/peer_generated.h"
#include "dataplane/proto/version.h"

namespace keyrail::proto {

enum class decode_status : std::uint8_t {
    need_more, // a prefix of a frame that may still be valid: read more, call again
    frame,     // a complete, verified frame at the start of the buffer
    error,     // close the connection after logging error and reason
};

struct decoded {
    decode_status status = decode_status::need_more;
    // frame: bytes of the frame including its length prefix; advance the buffer by this.
    std::size_t consumed_bytes = 0;
    // frame: a view into the caller's buffer, valid while those bytes are.
    const fb::Frame* frame = nullptr;
    fb::Message type = fb::Message::NONE;
    // error: a proto::errc code and a static sentence naming the field, for the log.
    std::error_code error{};
    std::string_view reason{};
};

// Decodes the frame at the start of buf. The caller keeps its receive buffer 8-aligned
// (limits::frame_align_bytes); every accepted frame is a multiple of 8 bytes, so the next frame
// stays aligned. A complete frame at a misaligned address is a caller bug and asserts.
[[nodiscard]] decoded decode(std::span<const std::byte> buf) noexcept;

// The frame's message, typed; nullptr if the frame holds another type.
template <class T>
[[nodiscard]] const T* body_as(const decoded& d) noexcept {
    return d.frame != nullptr ? d.frame->body_as<T>() : nullptr;
}

} // namespace keyrail::proto
