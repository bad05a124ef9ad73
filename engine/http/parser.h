#pragma once
// HTTP/1.1 request parser. Stateless and allocation-free: parse() looks at the bytes received
// so far and says complete (with the bytes consumed), need_more, or error (with the status to
// answer before closing). The request holds views into the caller's buffer, so the buffer must
// outlive it. When more bytes arrive the caller parses again from the start of the request;
// pipelined requests are parsed by calling parse() on the bytes after `consumed_bytes`.
// Lives on: any thread; it touches only its arguments.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace keyrail::engine::http {

// The most header fields a request can carry; limits::header_count_max may lower it.
inline constexpr std::size_t header_capacity = 64;

struct limits {
    std::size_t request_line_bytes_max = 8 * 1024; // without CRLF; longer -> 414
    std::size_t header_count_max = 32;             // <= header_capacity; more -> 431
    std::size_t header_bytes_max = 16 * 1024;      // all header lines with CRLFs; more -> 431
    std::size_t body_bytes_max = 1024 * 1024;      // Content-Length above it -> 413
};

struct header {
    std::string_view name;  // as received; compare case-insensitively
    std::string_view value; // leading and trailing whitespace removed
};

enum class connection : std::uint8_t { keep_alive, close };

struct request {
    std::string_view method;  // case-sensitive token, e.g. "GET"
    std::string_view target;  // origin-form, e.g. "/api/v1/keys/a/status?x=1"
    std::string_view path;    // target before '?', still percent-encoded
    std::string_view query;   // target after '?', without it; empty if none
    std::string_view version; // "HTTP/1.1" or "HTTP/1.0" (1.x above 1 reads as 1.1)
    std::uint8_t version_minor = 1;
    std::array<header, header_capacity> headers{};
    std::size_t header_count = 0;
    bool has_content_length = false;
    std::uint64_t content_length_bytes = 0;
    std::string_view body;
    connection conn = connection::keep_alive;
    bool expect_continue = false; // "Expect: 100-continue" was sent

    // The first header with this name (ASCII case-insensitive), or an empty view.
    [[nodiscard]] std::string_view find_header(std::string_view name) const noexcept;
    [[nodiscard]] std::span<const header> header_list() const noexcept {
        return {headers.data(), header_count};
    }
};

enum class parse_status : std::uint8_t { complete, need_more, error };

struct parse_result {
    parse_status status = parse_status::need_more;
    std::size_t consumed_bytes = 0; // complete: bytes of this request, including its body
    int http_status = 0;            // error: 400, 413, 414, 417, 431, 501 or 505
    std::string_view reason;        // error: a short static explanation for the response body
    // need_more after a complete header section that asked for "100-continue": the caller
    // sends write_continue() once, then waits for the body.
    bool send_continue = false;
};

// Parses one request from the start of buf into out. out is fully overwritten.
[[nodiscard]] parse_result parse(std::span<const char> buf, request& out,
                                 const limits& lim) noexcept;

// ASCII case-insensitive equality, for header names and tokens.
[[nodiscard]] bool iequals(std::string_view a, std::string_view b) noexcept;

} // namespace keyrail::engine::http
