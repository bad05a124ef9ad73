#include "dataplane/proto/errc.h"

#include <string>

namespace keyrail::proto {
namespace {

class category final : public std::error_category {
public:
    const char* name() const noexcept override { return "keyrail.proto"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::frame_too_large:
            return "peer frame larger than the limit";
        case errc::frame_too_small:
            return "peer frame too small";
        case errc::frame_misaligned:
            return "peer frame size not a multiple of 8";
        case errc::bad_identifier:
            return "not a keyrail peer frame (file identifier)";
        case errc::verify_failed:
            return "peer frame failed FlatBuffers verification";
        case errc::unsupported_version:
            return "unsupported peer protocol version";
        case errc::missing_body:
            return "peer frame without a message";
        case errc::unknown_message:
            return "unknown peer message type";
        case errc::unsupported_message:
            return "peer message type not supported by this protocol version";
        case errc::missing_field:
            return "peer message lacks a required field";
        case errc::bad_id:
            return "invalid node, link or SAE id in peer message";
        case errc::too_many_items:
            return "peer message exceeds a count limit";
        case errc::bad_key_size:
            return "invalid key size in peer message";
        case errc::bad_seq_run:
            return "invalid sequence runs in peer message";
        case errc::bad_share:
            return "invalid stream share in peer message";
        case errc::bad_enum:
            return "invalid enum value in peer message";
        case errc::bad_range:
            return "invalid range in peer message";
        }
        return "unknown proto error";
    }
};

} // namespace

const std::error_category& proto_category() noexcept {
    static const category instance;
    return instance;
}

} // namespace keyrail::proto
