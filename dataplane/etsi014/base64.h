#pragma once
// Standard base64 (RFC 4648 section 4, with padding) for key bytes. Lives on: any thread.
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

namespace keyrail::dataplane::etsi014 {

[[nodiscard]] constexpr std::size_t base64_encoded_bytes(std::size_t raw_bytes) noexcept {
    return (raw_bytes + 2) / 3 * 4;
}

// Encodes raw into out without a terminating NUL; out.size() must be at least
// base64_encoded_bytes(raw.size()). Returns the bytes written.
std::size_t base64_encode(std::span<const std::byte> raw, std::span<char> out) noexcept;

// The bytes text decodes to if it is well formed (a multiple of 4 long), else nullopt.
[[nodiscard]] constexpr std::optional<std::size_t>
base64_decoded_bytes(std::string_view text) noexcept {
    if (text.size() % 4 != 0) {
        return std::nullopt;
    }
    std::size_t bytes = text.size() / 4 * 3;
    if (!text.empty() && text.back() == '=') {
        --bytes;
        if (text[text.size() - 2] == '=') {
            --bytes;
        }
    }
    return bytes;
}

// Strict decoding: standard alphabet only, length a multiple of 4, padding only as the last one
// or two characters of the last group, and the unused bits before padding zero, so every byte
// string has exactly one accepted text. Writes the bytes to out (out.size() at least
// base64_decoded_bytes(text)) and returns their count, or nullopt; on failure out may hold a
// partial result, which the caller wipes if it is secret.
[[nodiscard]] std::optional<std::size_t> base64_decode(std::string_view text,
                                                       std::span<std::byte> out) noexcept;

} // namespace keyrail::dataplane::etsi014
