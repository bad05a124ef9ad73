#pragma once
// A small strict JSON (RFC 8259) reader and writer for ETSI 014 bodies.
//
// The reader validates the whole text in one pass into a caller-provided token array (no
// allocation): depth limit, size limit, token limit, members per object, UTF-8 validity,
// every string escape including \uXXXX surrogate pairs, and duplicate member names (compared
// after unescaping). Values stay as raw text; callers decode strings and integers on demand,
// integers exactly with overflow checks. The writer appends to a fixed buffer and records
// overflow instead of writing past it. Lives on: any thread.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace keyrail::dataplane::etsi014::json {

enum class kind : std::uint8_t { object, array, string, number, literal_true, literal_false, null };

struct token {
    kind type = kind::null;
    std::uint32_t start = 0; // offset in the text; strings: after the opening quote
    std::uint32_t end = 0;   // one past the value; strings: the closing quote
    std::uint32_t count = 0; // object: members; array: elements
    std::uint32_t next = 0;  // index of the first token after this value and its children
};

struct limits {
    std::size_t text_bytes_max = 64 * 1024;
    std::size_t depth_max = 8;
    std::size_t members_max = 64; // per object
};

struct document {
    std::string_view text;
    std::span<const token> tokens; // tokens[0] is the root; an object's children are
                                   // key, value, key, value...; an array's are its elements
    [[nodiscard]] std::string_view raw(std::size_t index) const noexcept {
        return text.substr(tokens[index].start, tokens[index].end - tokens[index].start);
    }
};

struct parse_outcome {
    bool ok = false;
    std::string_view error; // a static explanation when !ok
    document doc;
};

[[nodiscard]] parse_outcome parse(std::string_view text, std::span<token> storage,
                                  const limits& lim) noexcept;

// Decodes a validated string token's raw text into UTF-8. False if out is too small.
[[nodiscard]] bool decode_string(std::string_view raw, std::span<char> out,
                                 std::size_t& out_bytes) noexcept;

// True if a validated string token's raw text decodes to exactly `plain`.
[[nodiscard]] bool string_equals(std::string_view raw, std::string_view plain) noexcept;

enum class integer_status : std::uint8_t { ok, negative, not_integer, overflow };

// Reads a validated number token as an exact unsigned integer. "1.0" and "1e2" are not
// integers here: ETSI 014 counts and sizes are plain integers, and accepting other spellings
// only hides client bugs.
[[nodiscard]] integer_status to_uint(std::string_view raw, std::uint64_t& out) noexcept;

class writer {
public:
    explicit writer(std::span<char> out) noexcept : _out(out) {}

    void raw(std::string_view s) noexcept;
    void string(std::string_view utf8) noexcept; // quoted and escaped
    void uint(std::uint64_t v) noexcept;
    // Hands out the next n bytes to fill in place (e.g. base64), or an empty span on overflow.
    [[nodiscard]] std::span<char> reserve(std::size_t n) noexcept;

    [[nodiscard]] bool overflow() const noexcept { return _overflow; }
    [[nodiscard]] std::size_t size() const noexcept { return _used; }

private:
    std::span<char> _out;
    std::size_t _used = 0;
    bool _overflow = false;
};

} // namespace keyrail::dataplane::etsi014::json
