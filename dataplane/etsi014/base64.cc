#include "dataplane/etsi014/base64.h"

#include <array>
#include <cstdint>
#include <cstring>

#include "engine/assert.h"

namespace keyrail::dataplane::etsi014 {
namespace {

alignas(64) constexpr char alphabet[65] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Four characters for 24 bits, in memory order, stored with one write.
inline void store4(char* dst, std::uint32_t v) noexcept {
    const char quad[4] = {alphabet[v >> 18], alphabet[(v >> 12) & 0x3f], alphabet[(v >> 6) & 0x3f],
                          alphabet[v & 0x3f]};
    std::memcpy(dst, quad, 4);
}

// Bit 0x80 marks a byte outside the alphabet ('=' included: padding is checked by position).
constexpr std::uint8_t not_base64 = 0x80;

constexpr std::array<std::uint8_t, 256> make_decode_table() noexcept {
    std::array<std::uint8_t, 256> t{};
    for (auto& v : t) {
        v = not_base64;
    }
    for (std::uint8_t i = 0; i < 64; ++i) {
        t[static_cast<unsigned char>(alphabet[i])] = i;
    }
    return t;
}

alignas(64) constexpr std::array<std::uint8_t, 256> decode_table = make_decode_table();

inline std::uint32_t value_at(const char* s, std::size_t i) noexcept {
    return decode_table[static_cast<unsigned char>(s[i])];
}

static_assert(decode_table['A'] == 0 && decode_table['/'] == 63 && decode_table['='] == not_base64);

} // namespace

// Our own loop rather than EVP_EncodeBlock: it writes a NUL past the output, which would need
// one spare byte in the response buffer, and this runs on key bytes that must not be copied
// into scratch space we would then have to wipe. The alphabet is one aligned cache line, so
// which characters a key has shows in no cache line it touches. (A SWAR encoder, arithmetic on
// eight lanes per 6 bytes instead of a table, measured slower here.)
std::size_t base64_encode(std::span<const std::byte> raw, std::span<char> out) noexcept {
    KEYRAIL_ASSERT(out.size() >= base64_encoded_bytes(raw.size()), "out %zu for %zu raw bytes",
                   out.size(), raw.size());
    const auto* in = reinterpret_cast<const unsigned char*>(raw.data());
    char* o = out.data();
    const std::size_t full = raw.size() - raw.size() % 3;
    for (std::size_t i = 0; i < full; i += 3, o += 4) {
        store4(o, std::uint32_t{in[i]} << 16 | std::uint32_t{in[i + 1]} << 8 | in[i + 2]);
    }
    const std::size_t rest = raw.size() - full;
    if (rest > 0) {
        std::uint32_t v = std::uint32_t{in[full]} << 16;
        if (rest == 2) {
            v |= std::uint32_t{in[full + 1]} << 8;
        }
        store4(o, v);
        if (rest == 1) {
            o[2] = '=';
        }
        o[3] = '=';
        o += 4;
    }
    return static_cast<std::size_t>(o - out.data());
}

// Branch-free per group: the table values are ORed and the invalid bit tested once at the end.
// The table spans four cache lines: fine for keyrail-bench's verification; a decoder of keys
// in use would want no table indexed by key characters.
std::optional<std::size_t> base64_decode(std::string_view text, std::span<std::byte> out) noexcept {
    const auto bytes = base64_decoded_bytes(text);
    if (!bytes) {
        return std::nullopt;
    }
    KEYRAIL_ASSERT(out.size() >= *bytes, "out %zu for %zu decoded bytes", out.size(), *bytes);
    if (text.empty()) {
        return 0;
    }
    const char* s = text.data();
    auto* o = reinterpret_cast<unsigned char*>(out.data());
    const std::size_t body = text.size() - 4; // every group but the last carries no padding
    std::uint32_t bad = 0;
    for (std::size_t i = 0; i < body; i += 4, o += 3) {
        const std::uint32_t a = value_at(s, i);
        const std::uint32_t b = value_at(s, i + 1);
        const std::uint32_t c = value_at(s, i + 2);
        const std::uint32_t d = value_at(s, i + 3);
        bad |= a | b | c | d;
        const std::uint32_t v = a << 18 | b << 12 | c << 6 | d;
        o[0] = static_cast<unsigned char>(v >> 16);
        o[1] = static_cast<unsigned char>(v >> 8);
        o[2] = static_cast<unsigned char>(v);
    }
    // The last group: "xxxx", "xxx=" or "xx==" (base64_decoded_bytes counted the padding).
    const std::size_t pad = (3 - *bytes % 3) % 3;
    const std::uint32_t a = value_at(s, body);
    const std::uint32_t b = value_at(s, body + 1);
    const std::uint32_t c = pad == 2 ? 0 : value_at(s, body + 2);
    const std::uint32_t d = pad >= 1 ? 0 : value_at(s, body + 3);
    bad |= a | b | c | d;
    if ((bad & not_base64) != 0) {
        return std::nullopt;
    }
    // The bits padding drops must be zero, so that no other text decodes to the same bytes.
    const std::uint32_t v = a << 18 | b << 12 | c << 6 | d;
    if ((pad == 1 && (v & 0xffu) != 0) || (pad == 2 && (v & 0xffffu) != 0)) {
        return std::nullopt;
    }
    o[0] = static_cast<unsigned char>(v >> 16);
    if (pad < 2) {
        o[1] = static_cast<unsigned char>(v >> 8);
    }
    if (pad < 1) {
        o[2] = static_cast<unsigned char>(v);
    }
    return *bytes;
}

} // namespace keyrail::dataplane::etsi014
