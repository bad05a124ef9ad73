#include "dataplane/etsi014/uuid.h"

#include <cstring>

#include <openssl/rand.h>

#include "dataplane/etsi014/errc.h"
#include "engine/hex.h"

namespace keyrail::dataplane::etsi014 {
namespace {

// Where each byte's two hex digits start in the 8-4-4-4-12 text.
constexpr std::array<std::uint8_t, 16> digit_offsets = {0,  2,  4,  6,  9,  11, 14, 16,
                                                        19, 21, 24, 26, 28, 30, 32, 34};

// hex_value for every byte, 0x10 (a bit no digit has) for non-digits.
constexpr std::array<std::uint8_t, 256> make_hex_table() noexcept {
    std::array<std::uint8_t, 256> t{};
    for (std::size_t c = 0; c < t.size(); ++c) {
        const int v = hex_value(static_cast<char>(c));
        t[c] = static_cast<std::uint8_t>(v < 0 ? 0x10 : v);
    }
    return t;
}

constexpr std::array<std::uint8_t, 256> hex_table = make_hex_table();

// The two lowercase digits of every byte, in memory order.
constexpr std::array<std::array<char, 2>, 256> make_digit_pairs() noexcept {
    constexpr char digits[] = "0123456789abcdef";
    std::array<std::array<char, 2>, 256> t{};
    for (std::size_t b = 0; b < t.size(); ++b) {
        t[b] = {digits[b >> 4], digits[b & 0x0f]};
    }
    return t;
}

constexpr std::array<std::array<char, 2>, 256> digit_pairs = make_digit_pairs();

} // namespace

std::optional<key_id> parse_uuid(std::string_view text) noexcept {
    if (text.size() != uuid_text_bytes) {
        return std::nullopt;
    }
    const char* s = text.data();
    if (s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') {
        return std::nullopt;
    }
    key_id id;
    std::uint32_t bad = 0;
    for (std::size_t i = 0; i < id.bytes.size(); ++i) {
        const std::uint32_t hi = hex_table[static_cast<unsigned char>(s[digit_offsets[i]])];
        const std::uint32_t lo = hex_table[static_cast<unsigned char>(s[digit_offsets[i] + 1])];
        bad |= hi | lo;
        id.bytes[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    if ((bad & 0x10) != 0) {
        return std::nullopt;
    }
    return id;
}

void format_uuid(const key_id& id, std::span<char, uuid_text_bytes> out) noexcept {
    char* o = out.data();
    for (std::size_t i = 0; i < id.bytes.size(); ++i) {
        std::memcpy(o + digit_offsets[i], digit_pairs[id.bytes[i]].data(), 2);
    }
    o[8] = '-';
    o[13] = '-';
    o[18] = '-';
    o[23] = '-';
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
