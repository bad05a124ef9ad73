#pragma once
// A small blocking TLS 1.3 ETSI 014 server for keyrail-bench's tests: one accept thread on
// 127.0.0.1 (port 0), one thread per connection, answers status, enc_keys (GET or POST) and
// dec_keys with valid JSON and random keys. On demand it corrupts the base64 of the next
// responses, pauses every answer for a while, or speaks something other than ETSI 014.
// Lives on: its own threads; the control methods are safe from any thread.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <openssl/ssl.h>

namespace keyrail::test {

struct bench_server_config {
    std::string cert_file;
    std::string key_file;
    std::string ca_file;              // client certificates must chain to it
    std::string slave_sae_id = "b";   // reported in status
    std::string master_sae_id = "a";
    bool etsi = true;                 // false: 404 with an HTML body for every request
    bool remember_keys = false;       // keep enc_keys results for dec_keys (paired tests)
    unsigned key_bits_override = 0;   // non-zero: every key has this size, whatever was asked
};

class bench_test_server {
public:
    // Binds 127.0.0.1:0 and starts accepting; throws std::runtime_error on failure.
    explicit bench_test_server(const bench_server_config& config);
    ~bench_test_server();
    bench_test_server(const bench_test_server&) = delete;
    bench_test_server& operator=(const bench_test_server&) = delete;

    [[nodiscard]] std::uint16_t port() const noexcept { return _port; }
    // The base64 of the first key in each of the next n key responses gets an invalid byte.
    void corrupt_next(unsigned n) noexcept { _corrupt_left.fetch_add(n); }
    // No answer leaves the server until now + d (requests queue up in the meantime).
    void pause_for(std::chrono::milliseconds d) noexcept;
    [[nodiscard]] std::uint64_t requests_served() const noexcept { return _served.load(); }
    void stop();

private:
    void accept_loop();
    void serve(int fd);
    std::string answer(const std::string& method, const std::string& target,
                       const std::string& body, int& status);

    bench_server_config _config;
    SSL_CTX* _ctx = nullptr;
    int _listen_fd = -1;
    std::uint16_t _port = 0;
    std::atomic<bool> _stopping{false};
    std::atomic<unsigned> _corrupt_left{0};
    std::atomic<std::int64_t> _pause_until_ns{0};
    std::atomic<std::uint64_t> _served{0};
    std::thread _acceptor;
    std::mutex _mutex; // guards _workers, _fds, _keys
    std::vector<std::thread> _workers;
    std::vector<int> _fds;
    std::map<std::string, std::string> _keys; // key_ID -> base64
};

} // namespace keyrail::test
