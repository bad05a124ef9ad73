// Fuzz target: raw bytes through the HTTP parser and the ETSI 014 handler with the in-memory
// key service. The first byte picks the caller ('a' master sae-a, 'b' slave sae-b, else
// sae-c); the rest is one or more pipelined HTTP requests. Checks that every answer is a
// well-formed response with an ETSI status code and a matching Content-Length.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "dataplane/etsi014/fake_key_service.h"
#include "dataplane/etsi014/handler.h"
#include "engine/http/parser.h"

namespace etsi = keyrail::dataplane::etsi014;
namespace http = keyrail::engine::http;

namespace {

void check(bool ok) {
    if (!ok) {
        std::abort();
    }
}

etsi::workspace& shared_workspace() {
    static etsi::workspace ws([] {
        etsi::workspace_limits lim;
        lim.keys_max = 256;
        lim.key_bytes_max = 64 * 1024;
        lim.json_tokens_max = 1024;
        lim.body_bytes_max = 16 * 1024;
        return lim;
    }());
    return ws;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    const char* caller = data[0] == 'a' ? "sae-a" : (data[0] == 'b' ? "sae-b" : "sae-c");
    const std::span<const char> buf(reinterpret_cast<const char*>(data) + 1, size - 1);

    // Fresh service state per input, so runs are reproducible.
    etsi::testing::fake_key_service svc;
    svc.allow("sae-a", "sae-b");
    svc.allow("sae-a", "sae-c");
    svc.available = 300;
    // One key sae-a reserved for sae-b, so dec_keys can succeed without a prior enc_keys.
    etsi::testing::fake_key_service::record rec;
    rec.master = "sae-a";
    rec.slaves = {"sae-b"};
    rec.bytes.assign(32, std::byte{0x5a});
    svc.records[etsi::parse_uuid("00000000-0000-4000-8000-000000000001")->bytes] = rec;

    auto& ws = shared_workspace();
    static std::vector<char> out(ws.response_bytes_max());
    http::limits lim;
    lim.body_bytes_max = 16 * 1024;

    std::size_t offset = 0;
    for (int i = 0; i < 16 && offset < buf.size(); ++i) {
        http::request req;
        const auto r = http::parse(buf.subspan(offset), req, lim);
        if (r.status != http::parse_status::complete) {
            break;
        }
        offset += r.consumed_bytes;
        const auto hr = etsi::handle(req, caller, svc, ws, out);
        const int s = hr.http_status;
        check(s == 200 || s == 400 || s == 401 || s == 404 || s == 405 || s == 503);
        const std::string_view text(out.data(), hr.response_bytes);
        check(text.starts_with("HTTP/1.1 "));
        const auto end = text.find("\r\n\r\n");
        check(end != std::string_view::npos);
        const auto body = text.substr(end + 4);
        check((s == 401) == body.empty());
        const auto cl = text.find("Content-Length: ");
        check(cl != std::string_view::npos && cl < end);
        std::size_t n = 0;
        for (std::size_t p = cl + 16; text[p] >= '0' && text[p] <= '9'; ++p) {
            n = n * 10 + static_cast<std::size_t>(text[p] - '0');
        }
        check(n == body.size());
        // The workspace holds no key bytes once a response is written.
        static const std::vector<std::byte> zeros(ws.key_bytes().size());
        check(std::memcmp(ws.key_bytes().data(), zeros.data(), zeros.size()) == 0);
    }
    return 0;
}
