#pragma once
// Standard base64 (RFC 4648 section 4, with padding) for key bytes. Lives on: any thread.
#include <cstddef>
#include <span>

namespace keyrail::dataplane::etsi014 {

[[nodiscard]] constexpr std::size_t base64_encoded_bytes(std::size_t raw_bytes) noexcept {
    return (raw_bytes + 2) / 3 * 4;
}

// Encodes raw into out without a terminating NUL; out.size() must be at least
// base64_encoded_bytes(raw.size()). Returns the bytes written.
std::size_t base64_encode(std::span<const std::byte> raw, std::span<char> out) noexcept;

} // namespace keyrail::dataplane::etsi014
