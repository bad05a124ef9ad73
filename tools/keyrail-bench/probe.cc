#include "tools/keyrail-bench/probe.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include <openssl/err.h>

#include "tools/keyrail-bench/client_tls.h"
#include "tools/keyrail-bench/etsi.h"
#include "tools/keyrail-bench/http_response.h"

namespace keyrail::bench_client {
namespace {

using clock_type = std::chrono::steady_clock;

class fd_guard {
public:
    explicit fd_guard(int fd) noexcept : _fd(fd) {}
    ~fd_guard() {
        if (_fd >= 0) {
            ::close(_fd);
        }
    }
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    [[nodiscard]] int get() const noexcept { return _fd; }

private:
    int _fd;
};

struct ssl_free {
    void operator()(SSL* s) const noexcept { SSL_free(s); }
};

// Waits until fd is readable or writable; false on timeout.
bool wait_fd(int fd, short events, clock_type::time_point deadline) {
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - clock_type::now());
        if (left.count() <= 0) {
            return false;
        }
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, static_cast<int>(left.count()));
        if (n > 0) {
            return true;
        }
        if (n < 0 && errno != EINTR) {
            return false;
        }
    }
}

} // namespace

void probe_endpoint(SSL_CTX* ctx, const base_url& url, const resolved_address& address,
                    const std::string& sae_id_in_path, const std::string& expected_slave_sae_id,
                    double timeout_s) {
    const std::string where = url.text();
    const auto deadline =
        clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                std::chrono::duration<double>(timeout_s));
    fd_guard fd(::socket(address.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd.get() < 0) {
        throw setup_error("cannot create a socket: " + std::string(std::strerror(errno)));
    }
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address.addr),
                  address.addr_bytes) != 0) {
        if (errno != EINPROGRESS) {
            throw setup_error("cannot connect to " + where + ": " + std::strerror(errno));
        }
        if (!wait_fd(fd.get(), POLLOUT, deadline)) {
            throw setup_error("cannot connect to " + where + ": timed out");
        }
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            throw setup_error("cannot connect to " + where + ": " + std::strerror(err));
        }
    }
    std::unique_ptr<SSL, ssl_free> ssl(new_client_ssl(ctx, url));
    if (!ssl) {
        throw setup_error("OpenSSL: out of memory");
    }
    SSL_set_fd(ssl.get(), fd.get());
    // One loop drives handshake, write and read on the non-blocking socket.
    auto drive = [&](auto&& op, const char* what) {
        for (;;) {
            ERR_clear_error();
            errno = 0;
            const int rc = op();
            if (rc > 0) {
                return rc;
            }
            const int err = SSL_get_error(ssl.get(), rc);
            short events = 0;
            if (err == SSL_ERROR_WANT_READ) {
                events = POLLIN;
            } else if (err == SSL_ERROR_WANT_WRITE) {
                events = POLLOUT;
            } else {
                throw setup_error("TLS with " + where + " failed: " +
                                  describe_tls_failure(ssl.get(), err));
            }
            if (!wait_fd(fd.get(), events, deadline)) {
                throw setup_error(std::string("no answer from ") + where + " (timed out " + what +
                                  ")");
            }
        }
    };
    drive([&] { return SSL_connect(ssl.get()); }, "in the TLS handshake");
    const std::string req = status_request(url, sae_id_in_path);
    std::size_t sent = 0;
    while (sent < req.size()) {
        const int n = drive(
            [&] {
                return SSL_write(ssl.get(), req.data() + sent,
                                 static_cast<int>(req.size() - sent));
            },
            "sending the status request");
        sent += static_cast<std::size_t>(n);
    }
    std::string in;
    http_response resp;
    for (;;) {
        char buf[16384];
        const int n = drive([&] { return SSL_read(ssl.get(), buf, sizeof buf); },
                            "waiting for the status response");
        in.append(buf, static_cast<std::size_t>(n));
        const response_parse p = parse_response(in, resp);
        if (p.status == response_status::error) {
            throw setup_error(where + " is not an ETSI 014 server: " + std::string(p.error));
        }
        if (p.status == response_status::complete) {
            break;
        }
    }
    const std::string path = url.prefix + "/api/v1/keys/" + sae_id_in_path + "/status";
    if (resp.status == 401) {
        throw setup_error(where + " refused the SAE (401 on GET " + path +
                          "): is the client certificate registered for this SAE?");
    }
    if (resp.status == 404 || resp.status == 405 || resp.status == 501) {
        throw setup_error(where + " is not an ETSI 014 server: GET " + path + " answered " +
                          std::to_string(resp.status));
    }
    if (resp.status != 200) {
        const std::string body(resp.body.substr(0, 200));
        throw setup_error(where + ": GET " + path + " answered " + std::to_string(resp.status) +
                          (body.empty() ? "" : ": " + body));
    }
    verifier v;
    if (const char* why = v.check_status(resp.body, expected_slave_sae_id); why != nullptr) {
        throw setup_error(where + " is not an ETSI 014 server: " + why);
    }
    SSL_shutdown(ssl.get());
}

} // namespace keyrail::bench_client
