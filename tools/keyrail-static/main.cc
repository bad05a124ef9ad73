// keyrail-static: the keyrail engine serving fixed files, for benchmarks only. The same shard
// loop, io_uring, TLS 1.3 with mandatory client certificates, HTTP/1.1 parser and response
// writer as keyraild, and no key work at all: a path ending in /status gets DIR/status.json, one
// ending in /enc_keys or /dec_keys gets DIR/enc_keys.json, anything else 404. The etsi014 suite
// runs it with the bytes of keyraild's own answers (keys replaced by random values), so
// keyraild's rate over this one's is what the key path costs, and this one's rate is the ceiling
// of a request of that size on the machine. dec_keys gets the enc_keys file too: two instances
// under keyrail-bench's paired mode give the latency floor of a pair (two requests in sequence
// to two servers, with no key work and no peer notice).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/http/parser.h"
#include "engine/http/response.h"
#include "engine/protocol.h"
#include "engine/server.h"

namespace {

namespace engine = keyrail::engine;
namespace http = keyrail::engine::http;

constexpr std::string_view usage_text =
    "usage: keyrail-static --port N --cert FILE --key FILE --ca FILE --body-dir DIR\n"
    "                      [--address A] [--shards N]\n"
    "Serves DIR/status.json for paths ending in /status and DIR/enc_keys.json for paths ending\n"
    "in /enc_keys or /dec_keys, over TLS 1.3 with client certificates from CA; others get 404.\n"
    "A benchmark reference: the keyrail engine with no key work. Stops on SIGTERM or SIGINT.\n";

struct bodies {
    std::string status;
    std::string enc_keys;
};

class static_protocol final : public engine::protocol {
public:
    explicit static_protocol(const bodies& b) noexcept : _bodies(b) {}

    engine::handler_result on_data(engine::connection_context& ctx, std::span<const char> in,
                                   engine::output& out) noexcept override {
        (void)ctx;
        const http::parse_result parsed = http::parse(in, _request, _limits);
        if (parsed.status == http::parse_status::need_more) {
            return {};
        }
        if (parsed.status == http::parse_status::error) {
            commit(out, http::write_parse_error(out.free_space(), parsed));
            return {in.size(), engine::after_flush::close};
        }
        const std::string* body = nullptr;
        if (_request.path.ends_with("/status")) {
            body = &_bodies.status;
        } else if (_request.path.ends_with("/enc_keys") || _request.path.ends_with("/dec_keys")) {
            body = &_bodies.enc_keys;
        }
        const http::response_head head{body != nullptr ? 200 : 404, "application/json", 0,
                                       _request.conn, {}};
        commit(out, http::write_response(out.free_space(), head,
                                         body != nullptr ? std::string_view(*body) : "{}"));
        return {parsed.consumed_bytes, _request.conn == http::connection::close
                                           ? engine::after_flush::close
                                           : engine::after_flush::keep_open};
    }

private:
    static void commit(engine::output& out, const keyrail::result<std::size_t>& n) noexcept {
        if (!n) {
            out.mark_overflowed();
        } else {
            out.commit(*n);
        }
    }

    const bodies& _bodies;
    http::request _request;
    http::limits _limits;
};

bool read_file(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return false;
    }
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return true;
}

int usage_error(const char* what, const std::string& arg) {
    std::fprintf(stderr, "keyrail-static: %s%s\n%s", what, arg.c_str(), usage_text.data());
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    std::string address = "127.0.0.1";
    std::string cert;
    std::string key;
    std::string ca;
    std::string dir;
    unsigned long port = 0;
    unsigned long shards = 1;
    const std::vector<std::string> args(argv + 1, argv + argc);
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--help" || a == "-h") {
            std::fputs(usage_text.data(), stdout);
            return 0;
        }
        if (i + 1 >= args.size()) {
            return usage_error("a value is missing after ", a);
        }
        const std::string& v = args[++i];
        char* end = nullptr;
        if (a == "--address") {
            address = v;
        } else if (a == "--port") {
            port = std::strtoul(v.c_str(), &end, 10);
            if (*end != '\0' || port == 0 || port > 65535) {
                return usage_error("not a port number: ", v);
            }
        } else if (a == "--shards") {
            shards = std::strtoul(v.c_str(), &end, 10);
            if (*end != '\0' || shards == 0 || shards > 1024) {
                return usage_error("not a shard count: ", v);
            }
        } else if (a == "--cert") {
            cert = v;
        } else if (a == "--key") {
            key = v;
        } else if (a == "--ca") {
            ca = v;
        } else if (a == "--body-dir") {
            dir = v;
        } else {
            return usage_error("unknown option ", a);
        }
    }
    if (port == 0 || cert.empty() || key.empty() || ca.empty() || dir.empty()) {
        return usage_error("--port, --cert, --key, --ca and --body-dir are needed", "");
    }
    static bodies files;
    for (const auto& [name, body] : {std::pair{"status.json", &files.status},
                                     std::pair{"enc_keys.json", &files.enc_keys}}) {
        if (!read_file(dir + "/" + name, *body)) {
            std::fprintf(stderr, "keyrail-static: cannot read %s/%s\n", dir.c_str(), name);
            return 1;
        }
    }

    engine::server_config sc;
    sc.shard_count = shards;
    sc.signals = engine::stop_signals::handle;
    sc.connections_per_shard_max = 128;
    sc.input_buffer_bytes = 64 * 1024;
    sc.output_buffer_bytes = std::max<std::size_t>(64 * 1024, files.enc_keys.size() * 2 + 4096);
    engine::listener_config l;
    l.address = address;
    l.port = static_cast<std::uint16_t>(port);
    l.tls.cert_file = cert;
    l.tls.key_file = key;
    l.tls.ca_file = ca;
    l.make_protocol = [](std::size_t) { return std::make_unique<static_protocol>(files); };
    sc.listeners.push_back(std::move(l));
    auto server = engine::server::create(std::move(sc));
    if (!server) {
        std::fprintf(stderr, "keyrail-static: %s:%lu: %s\n", address.c_str(), port,
                     server.error().message().c_str());
        return 1;
    }
    if (auto ran = (*server)->run(); !ran) {
        std::fprintf(stderr, "keyrail-static: %s\n", ran.error().message().c_str());
        return 1;
    }
    return 0;
}
