#pragma once
// Hexadecimal digits: one definition for every parser (percent-decoding, UUIDs, JSON \u
// escapes, key files). Not for secrets: it branches on the character.
namespace keyrail {

// The value of one hex digit, or -1 when c is not one.
[[nodiscard]] constexpr int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static_assert(hex_value('0') == 0 && hex_value('f') == 15 && hex_value('F') == 15);
static_assert(hex_value('g') == -1 && hex_value('/') == -1 && hex_value(':') == -1);

} // namespace keyrail
