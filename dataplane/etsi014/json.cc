#include "dataplane/etsi014/json.h"

#include <array>
#include <cstdint>
#include <cstring>

#include "engine/assert.h"
#include "engine/hex.h"

namespace keyrail::dataplane::etsi014::json {
namespace {

constexpr bool is_ws(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Bytes a string may hold as they are: printable ASCII but the quote and the backslash.
// Anything else (controls, escapes, the end, UTF-8) takes the slow path in parser::string().
constexpr std::array<bool, 256> make_plain_table() noexcept {
    std::array<bool, 256> t{};
    for (std::size_t c = 0x20; c < 0x80; ++c) {
        t[c] = c != '"' && c != '\\';
    }
    return t;
}

constexpr std::array<bool, 256> plain_byte = make_plain_table();

constexpr std::uint64_t byte_lanes(std::uint8_t v) noexcept { return 0x0101010101010101ull * v; }

// Whether any of the eight bytes in w (SWAR) is a quote, a backslash, below 0x20 or non-ASCII.
constexpr bool needs_look(std::uint64_t w) noexcept {
    constexpr std::uint64_t ones = byte_lanes(1);
    constexpr std::uint64_t high = byte_lanes(0x80);
    const std::uint64_t quote = w ^ byte_lanes('"');
    const std::uint64_t backslash = w ^ byte_lanes('\\');
    const std::uint64_t zero_quote = (quote - ones) & ~quote;
    const std::uint64_t zero_backslash = (backslash - ones) & ~backslash;
    const std::uint64_t control = (w - byte_lanes(0x20)) & ~w;
    return ((zero_quote | zero_backslash | control | w) & high) != 0;
}

static_assert(!needs_look(0x4142434445464748ull) && needs_look(0x4142432245464748ull));
static_assert(needs_look(0x414243445c464748ull) && needs_look(0x4142434445461f48ull));
static_assert(needs_look(0xc142434445464748ull) && !needs_look(0x7e20212324255b5dull));

// Reads 4 hex digits at s[pos]; -1 if malformed or short.
long read_hex4(std::string_view s, std::size_t pos) noexcept {
    if (pos + 4 > s.size()) {
        return -1;
    }
    long v = 0;
    for (std::size_t i = 0; i < 4; ++i) {
        const int h = hex_value(s[pos + i]);
        if (h < 0) {
            return -1;
        }
        v = v * 16 + h;
    }
    return v;
}

// Length of a valid UTF-8 sequence at s[pos] (RFC 3629: no overlongs, no surrogates, at most
// U+10FFFF), or 0 if invalid.
std::size_t utf8_sequence_bytes(std::string_view s, std::size_t pos) noexcept {
    const auto b0 = static_cast<unsigned char>(s[pos]);
    auto cont = [&](std::size_t i, unsigned char lo, unsigned char hi) {
        if (pos + i >= s.size()) {
            return false;
        }
        const auto b = static_cast<unsigned char>(s[pos + i]);
        return b >= lo && b <= hi;
    };
    if (b0 < 0x80) {
        return 1;
    }
    if (b0 >= 0xc2 && b0 <= 0xdf) {
        return cont(1, 0x80, 0xbf) ? 2 : 0;
    }
    if (b0 == 0xe0) {
        return cont(1, 0xa0, 0xbf) && cont(2, 0x80, 0xbf) ? 3 : 0;
    }
    if ((b0 >= 0xe1 && b0 <= 0xec) || b0 == 0xee || b0 == 0xef) {
        return cont(1, 0x80, 0xbf) && cont(2, 0x80, 0xbf) ? 3 : 0;
    }
    if (b0 == 0xed) { // excludes U+D800..U+DFFF
        return cont(1, 0x80, 0x9f) && cont(2, 0x80, 0xbf) ? 3 : 0;
    }
    if (b0 == 0xf0) {
        return cont(1, 0x90, 0xbf) && cont(2, 0x80, 0xbf) && cont(3, 0x80, 0xbf) ? 4 : 0;
    }
    if (b0 >= 0xf1 && b0 <= 0xf3) {
        return cont(1, 0x80, 0xbf) && cont(2, 0x80, 0xbf) && cont(3, 0x80, 0xbf) ? 4 : 0;
    }
    if (b0 == 0xf4) {
        return cont(1, 0x80, 0x8f) && cont(2, 0x80, 0xbf) && cont(3, 0x80, 0xbf) ? 4 : 0;
    }
    return 0;
}

// Next code point of a validated raw string, advancing pos.
std::uint32_t next_code_point(std::string_view raw, std::size_t& pos) noexcept {
    const auto b0 = static_cast<unsigned char>(raw[pos]);
    if (b0 == '\\') {
        const char e = raw[pos + 1];
        pos += 2;
        switch (e) {
        case 'b':
            return '\b';
        case 'f':
            return '\f';
        case 'n':
            return '\n';
        case 'r':
            return '\r';
        case 't':
            return '\t';
        case 'u': {
            auto v = static_cast<std::uint32_t>(read_hex4(raw, pos));
            pos += 4;
            if (v >= 0xd800 && v <= 0xdbff) { // validated: a low surrogate escape follows
                const auto lo = static_cast<std::uint32_t>(read_hex4(raw, pos + 2));
                pos += 6;
                v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
            }
            return v;
        }
        default: // '"', '\\', '/'
            return static_cast<unsigned char>(e);
        }
    }
    const std::size_t len = utf8_sequence_bytes(raw, pos);
    KEYRAIL_DEBUG_ASSERT(len != 0, "unvalidated string at %zu", pos);
    std::uint32_t v = 0;
    if (len == 1) {
        v = b0;
    } else if (len == 2) {
        v = b0 & 0x1fu;
    } else if (len == 3) {
        v = b0 & 0x0fu;
    } else {
        v = b0 & 0x07u;
    }
    for (std::size_t i = 1; i < len; ++i) {
        v = (v << 6) | (static_cast<unsigned char>(raw[pos + i]) & 0x3fu);
    }
    pos += len;
    return v;
}

std::size_t encode_utf8(std::uint32_t cp, char (&out)[4]) noexcept {
    if (cp < 0x80) {
        out[0] = static_cast<char>(cp);
        return 1;
    }
    if (cp < 0x800) {
        out[0] = static_cast<char>(0xc0 | (cp >> 6));
        out[1] = static_cast<char>(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = static_cast<char>(0xe0 | (cp >> 12));
        out[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out[2] = static_cast<char>(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = static_cast<char>(0xf0 | (cp >> 18));
    out[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out[3] = static_cast<char>(0x80 | (cp & 0x3f));
    return 4;
}

// Equality of two validated raw strings after unescaping.
bool raw_equals(std::string_view a, std::string_view b) noexcept {
    if (a.find('\\') == std::string_view::npos && b.find('\\') == std::string_view::npos) {
        return a == b;
    }
    std::size_t i = 0;
    std::size_t j = 0;
    while (i < a.size() && j < b.size()) {
        if (next_code_point(a, i) != next_code_point(b, j)) {
            return false;
        }
    }
    return i == a.size() && j == b.size();
}

class parser {
public:
    parser(std::string_view text, std::span<token> storage, const limits& lim) noexcept
        : _text(text), _tokens(storage), _lim(lim) {}

    parse_outcome run() noexcept {
        parse_outcome out;
        if (_text.size() > _lim.text_bytes_max) {
            out.error = "JSON text too large";
            return out;
        }
        if (!value(0)) {
            out.error = _error;
            return out;
        }
        skip_ws();
        if (_pos != _text.size()) {
            out.error = "trailing characters after JSON value";
            return out;
        }
        out.ok = true;
        out.doc.text = _text;
        out.doc.tokens = _tokens.first(_count);
        return out;
    }

private:
    bool fail(std::string_view message) noexcept {
        _error = message;
        return false;
    }

    void skip_ws() noexcept {
        while (_pos < _text.size() && is_ws(_text[_pos])) {
            ++_pos;
        }
    }

    // Appends a token; its index in index_out.
    bool add(kind type, std::size_t start, std::size_t& index_out) noexcept {
        if (_count == _tokens.size()) {
            return fail("JSON has too many values");
        }
        index_out = _count;
        _tokens[_count] = token{type, static_cast<std::uint32_t>(start), 0, 0, 0};
        ++_count;
        return true;
    }

    void close(std::size_t index, std::size_t end) noexcept {
        _tokens[index].end = static_cast<std::uint32_t>(end);
        _tokens[index].next = static_cast<std::uint32_t>(_count);
    }

    bool value(std::size_t depth) noexcept {
        skip_ws();
        if (_pos == _text.size()) {
            return fail("unexpected end of JSON");
        }
        switch (_text[_pos]) {
        case '{':
            return object(depth);
        case '[':
            return array(depth);
        case '"':
            return string();
        case 't':
            return literal("true", kind::literal_true);
        case 'f':
            return literal("false", kind::literal_false);
        case 'n':
            return literal("null", kind::null);
        default:
            return number();
        }
    }

    bool literal(std::string_view word, kind type) noexcept {
        if (_text.substr(_pos, word.size()) != word) {
            return fail("invalid JSON literal");
        }
        std::size_t index = 0;
        if (!add(type, _pos, index)) {
            return false;
        }
        _pos += word.size();
        close(index, _pos);
        return true;
    }

    bool number() noexcept {
        const std::size_t start = _pos;
        auto digit_at = [&](std::size_t p) {
            return p < _text.size() && _text[p] >= '0' && _text[p] <= '9';
        };
        if (_pos < _text.size() && _text[_pos] == '-') {
            ++_pos;
        }
        if (!digit_at(_pos)) {
            return fail("invalid JSON value");
        }
        if (_text[_pos] == '0') {
            ++_pos;
            if (digit_at(_pos)) {
                return fail("leading zero in JSON number");
            }
        } else {
            while (digit_at(_pos)) {
                ++_pos;
            }
        }
        if (_pos < _text.size() && _text[_pos] == '.') {
            ++_pos;
            if (!digit_at(_pos)) {
                return fail("invalid JSON number");
            }
            while (digit_at(_pos)) {
                ++_pos;
            }
        }
        if (_pos < _text.size() && (_text[_pos] == 'e' || _text[_pos] == 'E')) {
            ++_pos;
            if (_pos < _text.size() && (_text[_pos] == '+' || _text[_pos] == '-')) {
                ++_pos;
            }
            if (!digit_at(_pos)) {
                return fail("invalid JSON number");
            }
            while (digit_at(_pos)) {
                ++_pos;
            }
        }
        std::size_t index = 0;
        if (!add(kind::number, start, index)) {
            return false;
        }
        close(index, _pos);
        return true;
    }

    bool string() noexcept {
        const std::size_t start = _pos + 1;
        std::size_t p = start;
        const std::size_t size = _text.size();
        const char* text = _text.data();
        while (true) {
            // Eight bytes at a time while none needs a look (a flag may be falsely set only
            // above a truly set one, and the byte loop then stops at the true one first).
            while (p + 8 <= size) {
                std::uint64_t w = 0;
                std::memcpy(&w, text + p, 8);
                if (needs_look(w)) {
                    break;
                }
                p += 8;
            }
            while (p < size && plain_byte[static_cast<unsigned char>(text[p])]) {
                ++p;
            }
            if (p >= size) {
                return fail("unterminated JSON string");
            }
            const auto c = static_cast<unsigned char>(text[p]);
            if (c == '"') {
                break;
            }
            if (c < 0x20) {
                return fail("control character in JSON string");
            }
            if (c == '\\') {
                if (p + 1 >= _text.size()) {
                    return fail("unterminated JSON string");
                }
                const char e = _text[p + 1];
                if (e == 'u') {
                    const long v = read_hex4(_text, p + 2);
                    if (v < 0) {
                        return fail("invalid \\u escape in JSON string");
                    }
                    if (v >= 0xdc00 && v <= 0xdfff) {
                        return fail("unpaired surrogate in JSON string");
                    }
                    if (v >= 0xd800 && v <= 0xdbff) {
                        if (p + 7 >= _text.size() || _text[p + 6] != '\\' || _text[p + 7] != 'u') {
                            return fail("unpaired surrogate in JSON string");
                        }
                        const long lo = read_hex4(_text, p + 8);
                        if (lo < 0xdc00 || lo > 0xdfff) {
                            return fail("unpaired surrogate in JSON string");
                        }
                        p += 12;
                    } else {
                        p += 6;
                    }
                    continue;
                }
                if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' &&
                    e != 'r' && e != 't') {
                    return fail("invalid escape in JSON string");
                }
                p += 2;
                continue;
            }
            const std::size_t len = utf8_sequence_bytes(_text, p);
            if (len == 0) {
                return fail("invalid UTF-8 in JSON string");
            }
            p += len;
        }
        std::size_t index = 0;
        if (!add(kind::string, start, index)) {
            return false;
        }
        close(index, p);
        _pos = p + 1;
        return true;
    }

    bool object(std::size_t depth) noexcept {
        if (depth + 1 > _lim.depth_max) {
            return fail("JSON nested too deeply");
        }
        std::size_t index = 0;
        if (!add(kind::object, _pos, index)) {
            return false;
        }
        ++_pos;
        skip_ws();
        if (_pos < _text.size() && _text[_pos] == '}') {
            ++_pos;
            close(index, _pos);
            return true;
        }
        std::uint32_t members = 0;
        while (true) {
            skip_ws();
            if (_pos >= _text.size() || _text[_pos] != '"') {
                return fail("expected a member name in JSON object");
            }
            const std::size_t key_index = _count;
            if (!string()) {
                return false;
            }
            if (members == _lim.members_max) {
                return fail("JSON object has too many members");
            }
            // Duplicate names are ambiguous (RFC 8259 4); compare with every earlier name.
            const auto key = raw_of(key_index);
            for (std::size_t k = index + 1; k < key_index; k = _tokens[k + 1].next) {
                if (raw_equals(raw_of(k), key)) {
                    return fail("duplicate member name in JSON object");
                }
            }
            skip_ws();
            if (_pos >= _text.size() || _text[_pos] != ':') {
                return fail("expected ':' in JSON object");
            }
            ++_pos;
            if (!value(depth + 1)) {
                return false;
            }
            ++members;
            skip_ws();
            if (_pos >= _text.size()) {
                return fail("unexpected end of JSON");
            }
            if (_text[_pos] == ',') {
                ++_pos;
                continue;
            }
            if (_text[_pos] == '}') {
                ++_pos;
                break;
            }
            return fail("expected ',' or '}' in JSON object");
        }
        _tokens[index].count = members;
        close(index, _pos);
        return true;
    }

    bool array(std::size_t depth) noexcept {
        if (depth + 1 > _lim.depth_max) {
            return fail("JSON nested too deeply");
        }
        std::size_t index = 0;
        if (!add(kind::array, _pos, index)) {
            return false;
        }
        ++_pos;
        skip_ws();
        if (_pos < _text.size() && _text[_pos] == ']') {
            ++_pos;
            close(index, _pos);
            return true;
        }
        std::uint32_t elements = 0;
        while (true) {
            if (!value(depth + 1)) {
                return false;
            }
            ++elements;
            skip_ws();
            if (_pos >= _text.size()) {
                return fail("unexpected end of JSON");
            }
            if (_text[_pos] == ',') {
                ++_pos;
                continue;
            }
            if (_text[_pos] == ']') {
                ++_pos;
                break;
            }
            return fail("expected ',' or ']' in JSON array");
        }
        _tokens[index].count = elements;
        close(index, _pos);
        return true;
    }

    std::string_view raw_of(std::size_t index) const noexcept {
        return _text.substr(_tokens[index].start, _tokens[index].end - _tokens[index].start);
    }

    std::string_view _text;
    std::span<token> _tokens;
    const limits& _lim;
    std::size_t _pos = 0;
    std::size_t _count = 0;
    std::string_view _error;
};

} // namespace

parse_outcome parse(std::string_view text, std::span<token> storage, const limits& lim) noexcept {
    return parser(text, storage, lim).run();
}

bool decode_string(std::string_view raw, std::span<char> out, std::size_t& out_bytes) noexcept {
    out_bytes = 0;
    // A validated string without escapes is its own UTF-8.
    if (raw.find('\\') == std::string_view::npos) {
        if (raw.size() > out.size()) {
            return false;
        }
        if (!raw.empty()) {
            std::memcpy(out.data(), raw.data(), raw.size());
        }
        out_bytes = raw.size();
        return true;
    }
    std::size_t pos = 0;
    while (pos < raw.size()) {
        char buf[4];
        const std::size_t len = encode_utf8(next_code_point(raw, pos), buf);
        if (len > out.size() - out_bytes) {
            return false;
        }
        std::memcpy(out.data() + out_bytes, buf, len);
        out_bytes += len;
    }
    return true;
}

bool string_equals(std::string_view raw, std::string_view plain) noexcept {
    if (raw.find('\\') == std::string_view::npos) {
        return raw == plain;
    }
    std::size_t pos = 0;
    std::size_t matched = 0;
    while (pos < raw.size()) {
        char buf[4];
        const std::size_t len = encode_utf8(next_code_point(raw, pos), buf);
        if (plain.substr(matched, len) != std::string_view(buf, len)) {
            return false;
        }
        matched += len;
    }
    return matched == plain.size();
}

integer_status to_uint(std::string_view raw, std::uint64_t& out) noexcept {
    if (!raw.empty() && raw.front() == '-') {
        return integer_status::negative;
    }
    if (raw.find_first_of(".eE") != std::string_view::npos) {
        return integer_status::not_integer;
    }
    std::uint64_t v = 0;
    for (char ch : raw) {
        const auto digit = static_cast<std::uint64_t>(ch - '0');
        if (v > (UINT64_MAX - digit) / 10) {
            return integer_status::overflow;
        }
        v = v * 10 + digit;
    }
    out = v;
    return integer_status::ok;
}

void writer::raw(std::string_view s) noexcept {
    auto dst = reserve(s.size());
    if (!dst.empty()) {
        std::memcpy(dst.data(), s.data(), s.size());
    }
}

void writer::string(std::string_view utf8) noexcept {
    static constexpr char digits[] = "0123456789abcdef";
    raw("\"");
    for (char ch : utf8) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"') {
            raw("\\\"");
        } else if (c == '\\') {
            raw("\\\\");
        } else if (c < 0x20 || c == 0x7f) {
            const char esc[6] = {'\\', 'u', '0', '0', digits[c >> 4], digits[c & 0x0f]};
            raw(std::string_view(esc, sizeof esc));
        } else {
            raw(std::string_view(&ch, 1));
        }
    }
    raw("\"");
}

void writer::uint(std::uint64_t v) noexcept {
    char digits[20];
    std::size_t len = 0;
    do {
        digits[sizeof digits - 1 - len] = static_cast<char>('0' + v % 10);
        v /= 10;
        ++len;
    } while (v != 0);
    raw(std::string_view(digits + sizeof digits - len, len));
}

std::span<char> writer::reserve(std::size_t n) noexcept {
    if (_overflow || n > _out.size() - _used) {
        _overflow = true;
        return {};
    }
    auto s = _out.subspan(_used, n);
    _used += n;
    return s;
}

} // namespace keyrail::dataplane::etsi014::json
