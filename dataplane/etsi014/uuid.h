#pragma once
// key_ID values: UUIDs in canonical lowercase 8-4-4-4-12 form. A key_ID is random (UUIDv4
// from RAND_bytes), never derived from the key. Lives on: any thread.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "engine/result.h"

namespace keyrail::dataplane::etsi014 {

struct key_id {
    std::array<std::uint8_t, 16> bytes{};
    friend bool operator==(const key_id&, const key_id&) = default;
};

inline constexpr std::size_t uuid_text_bytes = 36;

// Parses 8-4-4-4-12 hex (either case). Any other form (braces, urn:uuid:, no dashes) fails.
[[nodiscard]] std::optional<key_id> parse_uuid(std::string_view text) noexcept;

// Writes the canonical lowercase form into out (36 bytes).
void format_uuid(const key_id& id, std::span<char, uuid_text_bytes> out) noexcept;

// A fresh UUIDv4 (version 4, RFC 4122 variant) from OpenSSL's CSPRNG.
[[nodiscard]] result<key_id> generate_uuid_v4() noexcept;

} // namespace keyrail::dataplane::etsi014
