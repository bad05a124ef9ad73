#pragma once
// Errors of keyrail::proto, the peer protocol codec. Every one closes the connection: the
// connection layer logs the code and the decoder's reason string, then closes. Never renumber.
#include <system_error>

namespace keyrail::proto {

enum class errc : int {
    frame_too_large = 1,      // the length prefix exceeds limits::frame_bytes_max
    frame_too_small = 2,      // shorter than limits::frame_bytes_min
    frame_misaligned = 3,     // the frame size is not a multiple of limits::frame_align_bytes
    bad_identifier = 4,       // the FlatBuffer's file identifier is not "KRPF"
    verify_failed = 5,        // the FlatBuffers Verifier refused it (bounds, depth, tables)
    unsupported_version = 6,  // Frame.version outside what this build speaks
    missing_body = 7,         // a Frame without a message
    unknown_message = 8,      // a message type this build does not know
    unsupported_message = 9,  // a reserved message type not part of this version
    missing_field = 10,       // a required field is absent
    bad_id = 11,              // a node, link or SAE id is empty, too long or not printable
    too_many_items = 12,      // a count limit (keys, slaves, runs, links, acks) is exceeded
    bad_key_size = 13,        // key size not a multiple of 8 or outside 8..65536 bits
    bad_seq_run = 14,         // a run is empty, overflows, or runs overlap / are unordered
    bad_share = 15,           // a share or stride is zero, too large, or offset >= stride
    bad_enum = 16,            // an enum value (status, reason) outside its definition
    bad_range = 17,           // a range whose first is after its last (batch ids, versions)
};

[[nodiscard]] const std::error_category& proto_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), proto_category()};
}

} // namespace keyrail::proto

template <>
struct std::is_error_code_enum<keyrail::proto::errc> : std::true_type {};
