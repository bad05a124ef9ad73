#include "tests/support/bench_test_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <array>
#include <cstring>
#include <stdexcept>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "dataplane/etsi014/base64.h"
#include "dataplane/etsi014/uuid.h"
#include "engine/http/parser.h"

namespace keyrail::test {
namespace {

std::int64_t steady_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

unsigned query_uint(const std::string& text, const std::string& name, unsigned fallback) {
    const auto pos = text.find(name);
    if (pos == std::string::npos) {
        return fallback;
    }
    return static_cast<unsigned>(std::strtoul(text.c_str() + pos + name.size(), nullptr, 10));
}

const char* reason(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    default:
        return "Error";
    }
}

} // namespace

bench_test_server::bench_test_server(const bench_server_config& config) : _config(config) {
    // Writes to a client that went away must fail with EPIPE, not kill the test.
    std::signal(SIGPIPE, SIG_IGN);
    _ctx = SSL_CTX_new(TLS_server_method());
    if (_ctx == nullptr) {
        throw std::runtime_error("SSL_CTX_new");
    }
    SSL_CTX_set_min_proto_version(_ctx, TLS1_3_VERSION);
    if (SSL_CTX_use_certificate_chain_file(_ctx, config.cert_file.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(_ctx, config.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(_ctx, config.ca_file.c_str(), nullptr) != 1) {
        SSL_CTX_free(_ctx);
        throw std::runtime_error("bench_test_server: cannot load certificates");
    }
    SSL_CTX_set_verify(_ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    _listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (_listen_fd < 0 ||
        ::bind(_listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(_listen_fd, 128) != 0 ||
        ::getsockname(_listen_fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        SSL_CTX_free(_ctx);
        throw std::runtime_error("bench_test_server: cannot listen on 127.0.0.1");
    }
    _port = ntohs(addr.sin_port);
    _acceptor = std::thread([this] { accept_loop(); });
}

bench_test_server::~bench_test_server() {
    stop();
    SSL_CTX_free(_ctx);
}

void bench_test_server::pause_for(std::chrono::milliseconds d) noexcept {
    const auto d_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    _pause_until_ns.store(steady_ns() + d_ns);
}

void bench_test_server::stop() {
    if (_stopping.exchange(true)) {
        return;
    }
    _acceptor.join();
    {
        std::lock_guard<std::mutex> lock(_mutex);
        for (int fd : _fds) {
            ::shutdown(fd, SHUT_RDWR);
        }
    }
    for (auto& t : _workers) {
        t.join();
    }
    ::close(_listen_fd);
}

void bench_test_server::accept_loop() {
    while (!_stopping.load()) {
        pollfd p{_listen_fd, POLLIN, 0};
        if (::poll(&p, 1, 20) <= 0) {
            continue;
        }
        const int fd = ::accept4(_listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        std::lock_guard<std::mutex> lock(_mutex);
        _fds.push_back(fd);
        _workers.emplace_back([this, fd] { serve(fd); });
    }
}

void bench_test_server::serve(int fd) {
    SSL* ssl = SSL_new(_ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
        std::string in;
        std::array<char, 16384> buf{};
        engine::http::limits lim;
        for (;;) {
            engine::http::request req;
            const auto p =
                engine::http::parse(std::span<const char>(in.data(), in.size()), req, lim);
            if (p.status == engine::http::parse_status::error) {
                break;
            }
            if (p.status == engine::http::parse_status::need_more) {
                const int n = SSL_read(ssl, buf.data(), static_cast<int>(buf.size()));
                if (n <= 0) {
                    break;
                }
                in.append(buf.data(), static_cast<std::size_t>(n));
                continue;
            }
            while (steady_ns() < _pause_until_ns.load() && !_stopping.load()) {
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
            int status = 200;
            const std::string body = answer(std::string(req.method), std::string(req.target),
                                            std::string(req.body), status);
            std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) +
                              "\r\nContent-Type: " +
                              (_config.etsi ? "application/json" : "text/html") +
                              "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                              body;
            in.erase(0, p.consumed_bytes);
            _served.fetch_add(1);
            if (SSL_write(ssl, out.data(), static_cast<int>(out.size())) <= 0) {
                break;
            }
        }
        SSL_shutdown(ssl);
    } else {
        // Like a careful server: let the alert reach the client before the socket closes,
        // instead of a reset caused by unread bytes.
        ::shutdown(fd, SHUT_WR);
        pollfd p{fd, POLLIN, 0};
        char sink[4096];
        while (::poll(&p, 1, 200) > 0 && ::read(fd, sink, sizeof sink) > 0) {
        }
    }
    SSL_free(ssl);
    ERR_clear_error();
    std::lock_guard<std::mutex> lock(_mutex);
    ::close(fd);
    _fds.erase(std::find(_fds.begin(), _fds.end(), fd));
}

std::string bench_test_server::answer(const std::string& method, const std::string& target,
                                      const std::string& body, int& status) {
    status = 404;
    if (!_config.etsi) {
        return "<html><body>Not Found</body></html>";
    }
    const std::string prefix = "/api/v1/keys/";
    if (target.rfind(prefix, 0) != 0) {
        return R"({"message":"not found"})";
    }
    const std::string rest = target.substr(prefix.size());
    const auto slash = rest.find('/');
    if (slash == std::string::npos) {
        return R"({"message":"not found"})";
    }
    const std::string action = rest.substr(slash + 1);
    if (action == "status") {
        status = 200;
        return R"({"source_KME_ID":"kme-1","target_KME_ID":"kme-2","master_SAE_ID":")" +
               _config.master_sae_id + R"(","slave_SAE_ID":")" + _config.slave_sae_id +
               R"(","key_size":256,"stored_key_count":100000,"max_key_count":100000,)"
               R"("max_key_per_request":1000,"max_key_size":8192,"min_key_size":64,)"
               R"("max_SAE_ID_count":0})";
    }
    if (action.rfind("enc_keys", 0) == 0) {
        const std::string& params = method == "GET" ? action : body;
        const unsigned number = query_uint(params, method == "GET" ? "number=" : "\"number\":", 1);
        const char* size_name = method == "GET" ? "size=" : "\"size\":";
        const unsigned size = _config.key_bits_override != 0
                                  ? _config.key_bits_override
                                  : query_uint(params, size_name, 256);
        bool corrupt = false;
        unsigned left = _corrupt_left.load();
        while (left > 0 && !_corrupt_left.compare_exchange_weak(left, left - 1)) {
        }
        corrupt = left > 0;
        std::string out = R"({"keys":[)";
        for (unsigned i = 0; i < number; ++i) {
            std::string raw(size / 8, '\0');
            RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(raw.size()));
            std::string b64(dataplane::etsi014::base64_encoded_bytes(raw.size()), '\0');
            (void)dataplane::etsi014::base64_encode(std::as_bytes(std::span(raw)),
                                                    std::span<char>(b64));
            std::array<char, 36> id{};
            const auto uuid = dataplane::etsi014::generate_uuid_v4();
            dataplane::etsi014::format_uuid(*uuid, std::span<char, 36>(id));
            const std::string id_text(id.data(), id.size());
            if (_config.remember_keys) {
                std::lock_guard<std::mutex> lock(_mutex);
                _keys[id_text] = b64;
            }
            if (corrupt && i == 0 && !b64.empty()) {
                b64[b64.size() / 2] = '!';
            }
            out += (i == 0 ? "" : ",") + std::string(R"({"key_ID":")") + id_text +
                   R"(","key":")" + b64 + "\"}";
        }
        status = 200;
        return out + "]}";
    }
    if (action == "dec_keys") {
        std::string out = R"({"keys":[)";
        std::size_t pos = 0;
        bool first = true;
        const std::string tag = "\"key_ID\":\"";
        while ((pos = body.find(tag, pos)) != std::string::npos) {
            pos += tag.size();
            const std::string id = body.substr(pos, 36);
            std::string b64;
            {
                std::lock_guard<std::mutex> lock(_mutex);
                const auto it = _keys.find(id);
                if (it == _keys.end()) {
                    status = 400;
                    return R"({"message":"one or more keys specified are not found on KME"})";
                }
                b64 = it->second;
                _keys.erase(it);
            }
            out += (first ? "" : ",") + std::string(R"({"key_ID":")") + id + R"(","key":")" +
                   b64 + "\"}";
            first = false;
        }
        status = 200;
        return out + "]}";
    }
    return R"({"message":"not found"})";
}

} // namespace keyrail::test
