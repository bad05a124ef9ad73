#pragma once
// A blocking OpenSSL TLS 1.3 client for tests: connects to 127.0.0.1, verifies the server
// against a CA file and 127.0.0.1, optionally presents a client certificate, and can resume a
// session. Every read has a timeout so a broken server fails the test instead of hanging it.
#include <openssl/ssl.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace keyrail::test {

struct tls_client_config {
    std::string ca_file;
    std::string cert_file; // empty: present no client certificate
    std::string key_file;
    int read_timeout_ms = 5000;
};

class tls_client {
public:
    explicit tls_client(const tls_client_config& config);
    ~tls_client();
    tls_client(const tls_client&) = delete;
    tls_client& operator=(const tls_client&) = delete;

    // TCP connect and TLS handshake. resume: a session to offer (not consumed).
    // TLS 1.3 clients finish before the server has checked their certificate, so a refusal
    // usually shows on the first read, not here.
    bool connect(std::uint16_t port, SSL_SESSION* resume = nullptr);
    bool write_all(std::string_view bytes);
    // Reads one line (without '\n'). False on EOF, alert, error or timeout.
    bool read_line(std::string& line);
    // Reads until the server closes; true if it closed (EOF, close_notify or an alert)
    // rather than sending data or timing out. what: the OpenSSL error text, if any.
    bool wait_closed(std::string& what);
    // The current session (with its ticket) for resumption; free with SSL_SESSION_free.
    [[nodiscard]] SSL_SESSION* session() const;
    [[nodiscard]] bool resumed() const;
    [[nodiscard]] const std::string& error() const { return _error; }
    void close();

private:
    void record_error(const char* what, int rc);

    SSL_CTX* _ctx = nullptr;
    SSL* _ssl = nullptr;
    int _fd = -1;
    int _read_timeout_ms;
    std::string _error;
    std::string _pending; // bytes read past the last line
};

} // namespace keyrail::test
