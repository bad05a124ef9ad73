#include "engine/http/parser.h"

#include "engine/assert.h"

namespace keyrail::engine::http {
namespace {

// Chunked request bodies are answered 501 on purpose. ETSI 014 bodies are small JSON
// documents whose length the client knows: curl -d, python requests json= and every KME
// client we know send Content-Length. Decoding chunks in place would rewrite the caller's
// buffer, which breaks the stateless contract (re-parse from the start after every read), and
// a copying decoder would need a second buffer per connection. RFC 9112 6.1 lets a server
// answer 501 to a transfer coding it does not implement.

constexpr std::string_view known_methods[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                              "OPTIONS", "CONNECT", "TRACE", "PATCH"};

constexpr bool is_tchar(unsigned char c) noexcept {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return true;
    default:
        return false;
    }
}

// field-vchar / SP / HTAB, including obs-text (RFC 9110 5.5).
constexpr bool is_field_char(unsigned char c) noexcept {
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

constexpr bool is_token(std::string_view s) noexcept {
    if (s.empty()) {
        return false;
    }
    for (char ch : s) {
        if (!is_tchar(static_cast<unsigned char>(ch))) {
            return false;
        }
    }
    return true;
}

constexpr char lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

parse_result fail(int status, std::string_view reason) noexcept {
    parse_result r;
    r.status = parse_status::error;
    r.http_status = status;
    r.reason = reason;
    return r;
}

parse_result need_more() noexcept { return {}; }

// Finds the CRLF that ends the line starting at `from`. Returns the index of the CR, or
// `npos` with `r` set to need_more or an error. `budget_end` is the first index that would
// exceed the caller's byte budget for this line.
constexpr std::size_t npos = static_cast<std::size_t>(-1);

struct line_scan {
    std::size_t cr = npos;
    parse_result r;
};

line_scan find_line_end(std::span<const char> buf, std::size_t from, std::size_t budget_end,
                        int over_budget_status, std::string_view over_budget_reason) noexcept {
    line_scan s;
    for (std::size_t i = from; i < buf.size(); ++i) {
        if (i >= budget_end) {
            s.r = fail(over_budget_status, over_budget_reason);
            return s;
        }
        const char c = buf[i];
        if (c == '\n') {
            s.r = fail(400, "bare LF");
            return s;
        }
        if (c == '\r') {
            if (i + 1 == buf.size()) {
                return s; // need more
            }
            if (buf[i + 1] != '\n') {
                s.r = fail(400, "bare CR");
                return s;
            }
            s.cr = i;
            return s;
        }
    }
    return s; // need more
}

// Parses 1*DIGIT without sign or whitespace. False on syntax; sets overflow if too large.
bool parse_decimal(std::string_view s, std::uint64_t& out, bool& overflow) noexcept {
    overflow = false;
    if (s.empty()) {
        return false;
    }
    std::uint64_t v = 0;
    for (char ch : s) {
        if (ch < '0' || ch > '9') {
            return false;
        }
        const auto digit = static_cast<std::uint64_t>(ch - '0');
        if (v > (UINT64_MAX - digit) / 10) {
            overflow = true;
        } else {
            v = v * 10 + digit;
        }
    }
    out = v;
    return true;
}

// Walks a comma-separated list of tokens (Connection, Transfer-Encoding).
template <class F> void for_each_list_token(std::string_view value, F&& f) noexcept {
    while (!value.empty()) {
        const auto comma = value.find(',');
        const auto item = trim_ows(value.substr(0, comma));
        if (!item.empty()) {
            f(item);
        }
        if (comma == std::string_view::npos) {
            break;
        }
        value.remove_prefix(comma + 1);
    }
}

parse_result parse_request_line(std::string_view line, request& out) noexcept {
    const auto sp1 = line.find(' ');
    if (sp1 == std::string_view::npos) {
        return fail(400, "malformed request line");
    }
    out.method = line.substr(0, sp1);
    if (!is_token(out.method)) {
        return fail(400, "invalid method");
    }
    const auto rest = line.substr(sp1 + 1);
    const auto sp2 = rest.find(' ');
    if (sp2 == std::string_view::npos) {
        return fail(400, "malformed request line");
    }
    out.target = rest.substr(0, sp2);
    out.version = rest.substr(sp2 + 1);
    if (out.target.empty()) {
        return fail(400, "empty request target");
    }
    for (char ch : out.target) {
        const auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c >= 0x7f) {
            return fail(400, "invalid character in request target");
        }
        if (c == '#') {
            return fail(400, "fragment in request target");
        }
    }
    if (out.target.front() != '/') {
        return fail(400, "request target must be in origin-form");
    }
    const auto& v = out.version;
    if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
        v[7] < '0' || v[7] > '9') {
        return fail(400, "malformed HTTP version");
    }
    if (v[5] != '1') {
        return fail(505, "HTTP version not supported");
    }
    out.version_minor = v[7] == '0' ? 0 : 1; // 1.x above 1.1 is served as 1.1 (RFC 9110 6.2)
    bool known = false;
    for (auto m : known_methods) {
        if (out.method == m) {
            known = true;
        }
    }
    if (!known) {
        return fail(501, "method not implemented");
    }
    const auto q = out.target.find('?');
    out.path = out.target.substr(0, q);
    out.query = q == std::string_view::npos ? std::string_view{} : out.target.substr(q + 1);
    return {parse_status::complete, 0, 0, {}, false};
}

parse_result parse_header_line(std::string_view line, request& out) noexcept {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
        return fail(400, "header line without colon");
    }
    const auto name = line.substr(0, colon);
    if (!is_token(name)) {
        // Also catches whitespace before the colon (RFC 9112 5.1 requires 400).
        return fail(400, "invalid header name");
    }
    const auto value = trim_ows(line.substr(colon + 1));
    for (char ch : value) {
        if (!is_field_char(static_cast<unsigned char>(ch))) {
            return fail(400, "invalid character in header value");
        }
    }
    out.headers[out.header_count] = header{name, value};
    ++out.header_count;
    return {parse_status::complete, 0, 0, {}, false};
}

// Checks the framing headers once the header section is complete.
parse_result interpret_headers(request& out, const limits& lim) noexcept {
    bool has_transfer_encoding = false;
    std::size_t host_count = 0;
    bool conn_close = false;
    bool conn_keep_alive = false;
    for (const auto& h : out.header_list()) {
        if (iequals(h.name, "content-length")) {
            if (out.has_content_length) {
                return fail(400, "duplicate Content-Length");
            }
            std::uint64_t n = 0;
            bool overflow = false;
            if (!parse_decimal(h.value, n, overflow)) {
                return fail(400, "invalid Content-Length");
            }
            if (overflow || n > lim.body_bytes_max) {
                return fail(413, "body too large");
            }
            out.has_content_length = true;
            out.content_length_bytes = n;
        } else if (iequals(h.name, "transfer-encoding")) {
            has_transfer_encoding = true;
        } else if (iequals(h.name, "host")) {
            ++host_count;
        } else if (iequals(h.name, "connection")) {
            for_each_list_token(h.value, [&](std::string_view token) {
                if (iequals(token, "close")) {
                    conn_close = true;
                } else if (iequals(token, "keep-alive")) {
                    conn_keep_alive = true;
                }
            });
        } else if (iequals(h.name, "expect")) {
            if (!iequals(h.value, "100-continue")) {
                return fail(417, "unsupported expectation");
            }
            out.expect_continue = true;
        }
    }
    if (has_transfer_encoding && out.has_content_length) {
        return fail(400, "both Transfer-Encoding and Content-Length");
    }
    if (has_transfer_encoding) {
        return fail(501, "Transfer-Encoding not supported; send Content-Length");
    }
    if (host_count > 1) {
        return fail(400, "duplicate Host");
    }
    if (host_count == 0 && out.version_minor == 1) {
        return fail(400, "missing Host");
    }
    if (out.version_minor == 1) {
        out.conn = conn_close ? connection::close : connection::keep_alive;
    } else {
        out.conn = (conn_keep_alive && !conn_close) ? connection::keep_alive : connection::close;
    }
    return {parse_status::complete, 0, 0, {}, false};
}

} // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

std::string_view request::find_header(std::string_view name) const noexcept {
    for (const auto& h : header_list()) {
        if (iequals(h.name, name)) {
            return h.value;
        }
    }
    return {};
}

parse_result parse(std::span<const char> buf, request& out, const limits& lim) noexcept {
    KEYRAIL_ASSERT(lim.header_count_max <= header_capacity, "header_count_max %zu > %zu",
                   lim.header_count_max, header_capacity);
    out = request{};
    const std::size_t n = buf.size();

    // RFC 9112 2.2: ignore empty lines before the request line (some clients send a CRLF
    // after a POST body). They count against the request line budget.
    std::size_t pos = 0;
    while (pos < n && buf[pos] == '\r') {
        if (pos + 1 == n) {
            return need_more();
        }
        if (buf[pos + 1] != '\n') {
            return fail(400, "bare CR");
        }
        pos += 2;
        if (pos > lim.request_line_bytes_max) {
            return fail(400, "too many empty lines");
        }
    }

    const std::size_t line_start = pos;
    auto scan = find_line_end(buf, line_start, line_start + lim.request_line_bytes_max + 1, 414,
                              "request line too long");
    if (scan.cr == npos) {
        return scan.r;
    }
    if (auto r = parse_request_line(std::string_view(buf.data() + line_start, scan.cr - line_start),
                                    out);
        r.status == parse_status::error) {
        return r;
    }

    pos = scan.cr + 2;
    const std::size_t headers_start = pos;
    const std::size_t headers_budget_end = headers_start + lim.header_bytes_max;
    for (;;) {
        if (pos >= headers_budget_end && pos < n) {
            return fail(431, "header section too large");
        }
        if (pos == n) {
            return need_more();
        }
        if (buf[pos] == '\r') {
            if (pos + 1 == n) {
                return need_more();
            }
            if (pos + 1 >= headers_budget_end) {
                return fail(431, "header section too large");
            }
            if (buf[pos + 1] != '\n') {
                return fail(400, "bare CR");
            }
            pos += 2;
            break;
        }
        if (buf[pos] == ' ' || buf[pos] == '\t') {
            return fail(400, "obsolete line folding");
        }
        if (out.header_count == lim.header_count_max) {
            return fail(431, "too many header fields");
        }
        scan = find_line_end(buf, pos, headers_budget_end, 431, "header section too large");
        if (scan.cr == npos) {
            return scan.r;
        }
        if (scan.cr + 1 >= headers_budget_end) {
            return fail(431, "header section too large");
        }
        if (auto r = parse_header_line(std::string_view(buf.data() + pos, scan.cr - pos), out);
            r.status == parse_status::error) {
            return r;
        }
        pos = scan.cr + 2;
    }

    if (auto r = interpret_headers(out, lim); r.status == parse_status::error) {
        return r;
    }
    const std::size_t body_bytes = static_cast<std::size_t>(out.content_length_bytes);
    if (n - pos < body_bytes) {
        parse_result r = need_more();
        r.send_continue = out.expect_continue;
        return r;
    }
    out.body = std::string_view(buf.data() + pos, body_bytes);
    parse_result r;
    r.status = parse_status::complete;
    r.consumed_bytes = pos + body_bytes;
    return r;
}

} // namespace keyrail::engine::http
