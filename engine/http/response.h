#pragma once
// HTTP/1.1 response writer: status line, Content-Type, Content-Length, Connection, extra
// headers, then the body, into a caller-provided buffer. Nothing is written past out.size();
// if the response does not fit, the result is errc::buffer_too_small and the bytes already in
// `out` are unspecified. Lives on: any thread; it touches only its arguments.
#include <cstddef>
#include <span>
#include <string_view>

#include "engine/http/errc.h"
#include "engine/http/parser.h"
#include "engine/result.h"

namespace keyrail::engine::http {

struct response_head {
    int status = 200;              // 100..599
    std::string_view content_type; // empty: no Content-Type header
    std::size_t content_length_bytes = 0;
    connection conn = connection::keep_alive;
    std::span<const header> extra_headers; // e.g. Allow; names must be tokens
};

// The standard reason phrase of a status ("Bad Request"), or "Unknown".
[[nodiscard]] std::string_view reason_phrase(int status) noexcept;

// Writes the status line and headers (ending with the blank line). Returns bytes written.
[[nodiscard]] result<std::size_t> write_head(std::span<char> out,
                                             const response_head& head) noexcept;

// Writes head and body; head.content_length_bytes is set from body. Returns bytes written.
[[nodiscard]] result<std::size_t> write_response(std::span<char> out, response_head head,
                                                 std::string_view body) noexcept;

// "HTTP/1.1 100 Continue\r\n\r\n", for parse_result::send_continue.
[[nodiscard]] result<std::size_t> write_continue(std::span<char> out) noexcept;

// The answer to a parse error: its status, a text/plain reason, Connection: close.
[[nodiscard]] result<std::size_t> write_parse_error(std::span<char> out,
                                                    const parse_result& error) noexcept;

} // namespace keyrail::engine::http
