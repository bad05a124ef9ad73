#include "tools/keyrail-bench/http_response.h"

#include <charconv>

namespace keyrail::bench_client {
namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i];
        char y = b[i];
        if (x >= 'A' && x <= 'Z') {
            x = static_cast<char>(x - 'A' + 'a');
        }
        if (y >= 'A' && y <= 'Z') {
            y = static_cast<char>(y - 'A' + 'a');
        }
        if (x != y) {
            return false;
        }
    }
    return true;
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

response_parse failure(std::string_view why) noexcept {
    return {response_status::error, 0, why};
}

} // namespace

response_parse parse_response(std::string_view buf, http_response& out) noexcept {
    out = http_response{};
    const std::size_t head_end = buf.find("\r\n\r\n");
    if (head_end == std::string_view::npos) {
        if (buf.size() > response_header_bytes_max) {
            return failure("response header section too long");
        }
        if (!buf.empty() && buf.substr(0, 5) != std::string_view("HTTP/").substr(0, buf.size())) {
            return failure("not an HTTP response");
        }
        return {};
    }
    if (head_end > response_header_bytes_max) {
        return failure("response header section too long");
    }
    const std::string_view head = buf.substr(0, head_end);
    std::size_t line_end = head.find("\r\n");
    const std::string_view status_line = head.substr(0, line_end);
    // "HTTP/1.1 200 OK": version, space, three digits, then a space or the end.
    if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." ||
        status_line[8] != ' ' || (status_line.size() > 12 && status_line[12] != ' ')) {
        return failure("malformed status line");
    }
    const bool http10 = status_line[7] == '0';
    int code = 0;
    for (std::size_t i = 9; i < 12; ++i) {
        const char c = status_line[i];
        if (c < '0' || c > '9') {
            return failure("malformed status code");
        }
        code = code * 10 + (c - '0');
    }
    if (code < 100) {
        return failure("malformed status code");
    }
    out.status = code;
    out.close = http10;
    bool has_length = false;
    std::uint64_t length = 0;
    while (line_end != std::string_view::npos) {
        const std::size_t start = line_end + 2;
        line_end = head.find("\r\n", start);
        const std::string_view line = head.substr(start, line_end == std::string_view::npos
                                                             ? std::string_view::npos
                                                             : line_end - start);
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) {
            return failure("malformed header line");
        }
        const std::string_view name = line.substr(0, colon);
        const std::string_view value = trim(line.substr(colon + 1));
        if (iequals(name, "content-length")) {
            std::uint64_t v = 0;
            const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
            if (ec != std::errc{} || ptr != value.data() + value.size() || value.empty() ||
                (has_length && v != length)) {
                return failure("bad Content-Length");
            }
            has_length = true;
            length = v;
        } else if (iequals(name, "transfer-encoding")) {
            return failure("Transfer-Encoding is not supported (expected Content-Length)");
        } else if (iequals(name, "content-type")) {
            out.content_type = value;
        } else if (iequals(name, "connection")) {
            if (iequals(value, "close")) {
                out.close = true;
            } else if (iequals(value, "keep-alive")) {
                out.close = false;
            }
        }
    }
    const bool bodyless = code < 200 || code == 204 || code == 304;
    if (!has_length && !bodyless) {
        return failure("response without Content-Length");
    }
    if (length > response_body_bytes_max) {
        return failure("response body too large");
    }
    const std::size_t body_start = head_end + 4;
    if (buf.size() - body_start < length) {
        return {};
    }
    out.body = buf.substr(body_start, static_cast<std::size_t>(length));
    return {response_status::complete, body_start + static_cast<std::size_t>(length), {}};
}

} // namespace keyrail::bench_client
