#include "engine/http/response.h"

#include <cstring>

#include "engine/assert.h"

namespace keyrail::engine::http {
namespace {

// Appends to a fixed buffer; remembers overflow instead of writing past the end.
class writer {
public:
    explicit writer(std::span<char> out) noexcept : _out(out) {}

    void put(std::string_view s) noexcept {
        if (_overflow || s.size() > _out.size() - _used) {
            _overflow = true;
            return;
        }
        if (!s.empty()) {
            std::memcpy(_out.data() + _used, s.data(), s.size());
        }
        _used += s.size();
    }

    void put_uint(std::uint64_t v) noexcept {
        char digits[20];
        std::size_t len = 0;
        do {
            digits[sizeof digits - 1 - len] = static_cast<char>('0' + v % 10);
            v /= 10;
            ++len;
        } while (v != 0);
        put(std::string_view(digits + sizeof digits - len, len));
    }

    [[nodiscard]] result<std::size_t> finish() const noexcept {
        if (_overflow) {
            return fail(errc::buffer_too_small);
        }
        return _used;
    }

private:
    std::span<char> _out;
    std::size_t _used = 0;
    bool _overflow = false;
};

bool is_safe_value(std::string_view s) noexcept {
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 && c != '\t') {
            return false;
        }
        if (c == 0x7f) {
            return false;
        }
    }
    return true;
}

bool is_safe_name(std::string_view s) noexcept {
    if (s.empty()) {
        return false;
    }
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c >= 0x7f || c == ':') {
            return false;
        }
    }
    return true;
}

} // namespace

std::string_view reason_phrase(int status) noexcept {
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

result<std::size_t> write_head(std::span<char> out, const response_head& head) noexcept {
    KEYRAIL_ASSERT(head.status >= 100 && head.status <= 599, "status %d", head.status);
    if (!is_safe_value(head.content_type)) {
        return fail(errc::invalid_field);
    }
    for (const auto& h : head.extra_headers) {
        if (!is_safe_name(h.name) || !is_safe_value(h.value)) {
            return fail(errc::invalid_field);
        }
    }
    writer w(out);
    w.put("HTTP/1.1 ");
    w.put_uint(static_cast<std::uint64_t>(head.status));
    w.put(" ");
    w.put(reason_phrase(head.status));
    w.put("\r\n");
    if (!head.content_type.empty()) {
        w.put("Content-Type: ");
        w.put(head.content_type);
        w.put("\r\n");
    }
    w.put("Content-Length: ");
    w.put_uint(head.content_length_bytes);
    w.put("\r\n");
    w.put(head.conn == connection::close ? "Connection: close\r\n" : "Connection: keep-alive\r\n");
    for (const auto& h : head.extra_headers) {
        w.put(h.name);
        w.put(": ");
        w.put(h.value);
        w.put("\r\n");
    }
    w.put("\r\n");
    return w.finish();
}

result<std::size_t> write_response(std::span<char> out, response_head head,
                                   std::string_view body) noexcept {
    head.content_length_bytes = body.size();
    auto head_bytes = write_head(out, head);
    if (!head_bytes) {
        return head_bytes;
    }
    if (body.size() > out.size() - *head_bytes) {
        return fail(errc::buffer_too_small);
    }
    if (!body.empty()) {
        std::memcpy(out.data() + *head_bytes, body.data(), body.size());
    }
    return *head_bytes + body.size();
}

result<std::size_t> write_continue(std::span<char> out) noexcept {
    writer w(out);
    w.put("HTTP/1.1 100 Continue\r\n\r\n");
    return w.finish();
}

result<std::size_t> write_parse_error(std::span<char> out, const parse_result& error) noexcept {
    KEYRAIL_ASSERT(error.status == parse_status::error, "not an error result");
    response_head head;
    head.status = error.http_status;
    head.content_type = "text/plain";
    head.conn = connection::close;
    return write_response(out, head, error.reason);
}

} // namespace keyrail::engine::http
