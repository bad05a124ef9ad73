#pragma once
// HTTP/1.1 response parsing for keyrail-bench: stateless, looks at the bytes received so far
// and says complete (with the bytes consumed), need_more or error. Bodies must carry a
// Content-Length (ETSI 014 bodies are small JSON documents; chunked encoding is reported as an
// error). Views point into the caller's buffer. Lives on: any thread.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace keyrail::bench_client {

struct http_response {
    int status = 0;
    std::string_view content_type;
    std::string_view body;
    bool close = false; // "Connection: close" (or HTTP/1.0 without keep-alive)
};

enum class response_status : std::uint8_t { complete, need_more, error };

struct response_parse {
    response_status status = response_status::need_more;
    std::size_t consumed_bytes = 0;
    std::string_view error; // static text when status == error
};

inline constexpr std::size_t response_header_bytes_max = 16 * 1024;
inline constexpr std::size_t response_body_bytes_max = 64 * 1024 * 1024;

[[nodiscard]] response_parse parse_response(std::string_view buf, http_response& out) noexcept;

} // namespace keyrail::bench_client
