// Fuzz target: the HTTP/1.1 request parser and the error writer. Besides memory safety it
// checks the stateless contract: a prefix of the input parses as need_more, as the same error,
// or (if it covers the request) as the same complete request; and pipelined parsing advances.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "engine/http/parser.h"
#include "engine/http/response.h"

namespace http = keyrail::engine::http;

namespace {

void check(bool ok) {
    if (!ok) {
        std::abort();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const char> buf(reinterpret_cast<const char*>(data), size);
    http::limits lim;
    lim.request_line_bytes_max = 256;
    lim.header_count_max = 8;
    lim.header_bytes_max = 512;
    lim.body_bytes_max = 1024;

    http::request req;
    const auto full = http::parse(buf, req, lim);
    if (full.status == http::parse_status::complete) {
        check(full.consumed_bytes <= size);
        check(req.header_count <= lim.header_count_max);
        check(req.body.size() == req.content_length_bytes);
        check(req.path.size() <= req.target.size());
    }
    if (full.status == http::parse_status::error) {
        check(full.http_status >= 400 && full.http_status <= 505);
        check(!full.reason.empty());
        std::array<char, 512> out{};
        check(http::write_parse_error(out, full).has_value());
    }

    // A split point derived from the input, so the fuzzer can steer it.
    const std::size_t split = size == 0 ? 0 : (data[0] * 131u + size) % (size + 1);
    http::request part;
    const auto pr = http::parse(buf.first(split), part, lim);
    switch (pr.status) {
    case http::parse_status::need_more:
        check(full.status != http::parse_status::complete || split < full.consumed_bytes);
        break;
    case http::parse_status::error:
        check(full.status == http::parse_status::error);
        check(pr.http_status == full.http_status);
        break;
    case http::parse_status::complete:
        check(full.status == http::parse_status::complete);
        check(pr.consumed_bytes == full.consumed_bytes);
        check(part.method == req.method && part.target == req.target && part.body == req.body);
        break;
    }

    // Pipelining: every complete request consumes at least one byte.
    std::size_t offset = 0;
    for (int i = 0; i < 64 && offset < size; ++i) {
        const auto r = http::parse(buf.subspan(offset), part, lim);
        if (r.status != http::parse_status::complete) {
            break;
        }
        check(r.consumed_bytes > 0);
        offset += r.consumed_bytes;
    }
    return 0;
}
