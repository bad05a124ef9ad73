#include "tests/support/tls_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace keyrail::test {

tls_client::tls_client(const tls_client_config& config) : _read_timeout_ms(config.read_timeout_ms) {
    _ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(_ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(_ctx, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_load_verify_locations(_ctx, config.ca_file.c_str(), nullptr) != 1) {
        _error = "cannot load CA " + config.ca_file;
    }
    X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(_ctx), "127.0.0.1");
    if (!config.cert_file.empty()) {
        if (SSL_CTX_use_certificate_chain_file(_ctx, config.cert_file.c_str()) != 1 ||
            SSL_CTX_use_PrivateKey_file(_ctx, config.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
            _error = "cannot load client certificate " + config.cert_file;
        }
    }
    // No client session cache: freeing a context with a cache marks its sessions not
    // resumable, and tests resume a session after its client object is gone.
}

tls_client::~tls_client() {
    close();
    SSL_CTX_free(_ctx);
}

void tls_client::close() {
    if (_ssl != nullptr) {
        // Without a shutdown, SSL_free marks the session not resumable.
        if (SSL_is_init_finished(_ssl)) {
            (void)SSL_shutdown(_ssl);
        }
        ERR_clear_error();
        SSL_free(_ssl);
        _ssl = nullptr;
    }
    if (_fd >= 0) {
        ::close(_fd);
        _fd = -1;
    }
    _pending.clear();
}

void tls_client::record_error(const char* what, int rc) {
    _error = what;
    if (_ssl != nullptr) {
        _error += " ssl_error=" + std::to_string(SSL_get_error(_ssl, rc));
    }
    unsigned long e = 0;
    while ((e = ERR_get_error()) != 0) {
        char text[256];
        ERR_error_string_n(e, text, sizeof text);
        _error += " ";
        _error += text;
    }
}

bool tls_client::connect(std::uint16_t port, SSL_SESSION* resume) {
    close();
    ERR_clear_error();
    _fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (_fd < 0) {
        _error = "socket failed";
        return false;
    }
    timeval tv{};
    tv.tv_sec = _read_timeout_ms / 1000;
    tv.tv_usec = (_read_timeout_ms % 1000) * 1000;
    setsockopt(_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    const int one = 1;
    setsockopt(_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(_fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        _error = "connect failed";
        return false;
    }
    _ssl = SSL_new(_ctx);
    SSL_set_fd(_ssl, _fd);
    if (resume != nullptr) {
        SSL_set_session(_ssl, resume);
    }
    const int rc = SSL_connect(_ssl);
    if (rc != 1) {
        record_error("handshake failed", rc);
        return false;
    }
    return true;
}

bool tls_client::write_all(std::string_view bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
        std::size_t n = 0;
        const int rc = SSL_write_ex(_ssl, bytes.data() + done, bytes.size() - done, &n);
        if (rc != 1) {
            record_error("write failed", rc);
            return false;
        }
        done += n;
    }
    return true;
}

bool tls_client::read_line(std::string& line) {
    for (;;) {
        const auto nl = _pending.find('\n');
        if (nl != std::string::npos) {
            line = _pending.substr(0, nl);
            _pending.erase(0, nl + 1);
            return true;
        }
        char buf[4096];
        std::size_t n = 0;
        const int rc = SSL_read_ex(_ssl, buf, sizeof buf, &n);
        if (rc != 1) {
            record_error("read failed", rc);
            return false;
        }
        _pending.append(buf, n);
    }
}

bool tls_client::wait_closed(std::string& what) {
    for (;;) {
        char buf[4096];
        std::size_t n = 0;
        ERR_clear_error();
        errno = 0;
        const int rc = SSL_read_ex(_ssl, buf, sizeof buf, &n);
        const int saved_errno = errno;
        if (rc == 1) {
            continue; // data before the close is allowed
        }
        const int err = SSL_get_error(_ssl, rc);
        record_error("closed", rc);
        what = _error;
        if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SSL) {
            return true;
        }
        if (err == SSL_ERROR_SYSCALL) {
            // EOF (errno 0) or reset is a close; a timeout (EAGAIN) is not.
            return saved_errno != EAGAIN && saved_errno != EWOULDBLOCK;
        }
        return false;
    }
}

SSL_SESSION* tls_client::session() const { return _ssl ? SSL_get1_session(_ssl) : nullptr; }

bool tls_client::resumed() const { return _ssl != nullptr && SSL_session_reused(_ssl) == 1; }

} // namespace keyrail::test
