#pragma once
// The client side of mutual TLS for keyrail-bench: one SSL_CTX per endpoint (CA, client
// certificate, TLS 1.2+), SSL objects bound to the URL's host name or IP address, and the
// translation of an OpenSSL failure into one line a person can act on ("unknown CA",
// "server refused our client certificate", "hostname mismatch") instead of an error stack.
// Lives on: the context is built on the main thread, then shared read-only by load threads
// (SSL_new on a shared SSL_CTX is thread-safe); each SSL lives on one load thread.
#include <memory>
#include <string>

#include <openssl/ssl.h>

#include "tools/keyrail-bench/options.h"

namespace keyrail::bench_client {

struct ssl_ctx_free {
    void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};
using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, ssl_ctx_free>;

// Loads the CA, certificate and key; throws std::runtime_error naming the file that failed.
[[nodiscard]] ssl_ctx_ptr make_client_context(const endpoint& ep);

// A client SSL for ep's host: SNI for names, and certificate verification of the name or IP.
// Returns nullptr only when OpenSSL runs out of memory.
[[nodiscard]] SSL* new_client_ssl(SSL_CTX* ctx, const base_url& url) noexcept;

// Why the last operation on ssl failed, as one line; pops the thread's OpenSSL error queue.
// ssl_error is SSL_get_error's result.
[[nodiscard]] std::string describe_tls_failure(SSL* ssl, int ssl_error);

} // namespace keyrail::bench_client
