#include "dataplane/etsi014/uuid.h"

#include <openssl/rand.h>

#include "dataplane/etsi014/errc.h"
#include "engine/hex.h"

namespace keyrail::dataplane::etsi014 {
namespace {

constexpr bool is_dash_position(std::size_t i) noexcept {
    return i == 8 || i == 13 || i == 18 || i == 23;
}

} // namespace

std::optional<key_id> parse_uuid(std::string_view text) noexcept {
    if (text.size() != uuid_text_bytes) {
        return std::nullopt;
    }
    key_id id;
    std::size_t nibble_index = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (is_dash_position(i)) {
            if (text[i] != '-') {
                return std::nullopt;
            }
            continue;
        }
        const int v = hex_value(text[i]);
        if (v < 0) {
            return std::nullopt;
        }
        auto& byte = id.bytes[nibble_index / 2];
        byte = static_cast<std::uint8_t>(nibble_index % 2 == 0 ? v << 4 : byte | v);
        ++nibble_index;
    }
    return id;
}

void format_uuid(const key_id& id, std::span<char, uuid_text_bytes> out) noexcept {
    static constexpr char digits[] = "0123456789abcdef";
    std::size_t pos = 0;
    for (std::size_t i = 0; i < id.bytes.size(); ++i) {
        if (pos == 8 || pos == 13 || pos == 18 || pos == 23) {
            out[pos++] = '-';
        }
        out[pos++] = digits[id.bytes[i] >> 4];
        out[pos++] = digits[id.bytes[i] & 0x0f];
    }
}

result<key_id> generate_uuid_v4() noexcept {
    key_id id;
    if (RAND_bytes(id.bytes.data(), static_cast<int>(id.bytes.size())) != 1) {
        return fail(errc::unavailable);
    }
    id.bytes[6] = static_cast<std::uint8_t>((id.bytes[6] & 0x0f) | 0x40); // version 4
    id.bytes[8] = static_cast<std::uint8_t>((id.bytes[8] & 0x3f) | 0x80); // variant 10xx
    return id;
}

} // namespace keyrail::dataplane::etsi014
