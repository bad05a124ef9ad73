#include "dataplane/etsi014/base64.h"

#include <cstdint>

#include "engine/assert.h"

namespace keyrail::dataplane::etsi014 {

// Our own loop rather than EVP_EncodeBlock: it writes a NUL past the output, which would need
// one spare byte in the response buffer, and this runs on key bytes that must not be copied
// into scratch space we would then have to wipe.
std::size_t base64_encode(std::span<const std::byte> raw, std::span<char> out) noexcept {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    KEYRAIL_ASSERT(out.size() >= base64_encoded_bytes(raw.size()), "out %zu for %zu raw bytes",
                   out.size(), raw.size());
    std::size_t o = 0;
    std::size_t i = 0;
    for (; i + 3 <= raw.size(); i += 3) {
        const std::uint32_t v = (std::to_integer<std::uint32_t>(raw[i]) << 16) |
                                (std::to_integer<std::uint32_t>(raw[i + 1]) << 8) |
                                std::to_integer<std::uint32_t>(raw[i + 2]);
        out[o++] = alphabet[(v >> 18) & 0x3f];
        out[o++] = alphabet[(v >> 12) & 0x3f];
        out[o++] = alphabet[(v >> 6) & 0x3f];
        out[o++] = alphabet[v & 0x3f];
    }
    const std::size_t rest = raw.size() - i;
    if (rest > 0) {
        std::uint32_t v = std::to_integer<std::uint32_t>(raw[i]) << 16;
        if (rest == 2) {
            v |= std::to_integer<std::uint32_t>(raw[i + 1]) << 8;
        }
        out[o++] = alphabet[(v >> 18) & 0x3f];
        out[o++] = alphabet[(v >> 12) & 0x3f];
        out[o++] = rest == 2 ? alphabet[(v >> 6) & 0x3f] : '=';
        out[o++] = '=';
    }
    return o;
}

} // namespace keyrail::dataplane::etsi014
