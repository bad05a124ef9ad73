#include "tools/keyrail-bench/client_tls.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace keyrail::bench_client {
namespace {

bool is_ip_literal(const std::string& host) {
    unsigned char buf[16];
    return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
           inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string openssl_reason(unsigned long e) {
    const char* r = ERR_reason_error_string(e);
    return r != nullptr ? r : "error " + std::to_string(ERR_GET_REASON(e));
}

std::string verify_failure(long verify) {
    switch (verify) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return "hostname mismatch: the server certificate does not name the host in the URL";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return "unknown CA: the server certificate is not signed by a CA in --ca";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "the server certificate has expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "the server certificate is not yet valid";
    default:
        return std::string("server certificate rejected: ") +
               X509_verify_cert_error_string(verify);
    }
}

} // namespace

ssl_ctx_ptr make_client_context(const endpoint& ep) {
    ssl_ctx_ptr ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) {
        throw std::runtime_error("OpenSSL: cannot create a TLS context");
    }
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    // Memory BIOs take every write whole; these only make partial writes harmless.
    SSL_CTX_set_mode(ctx.get(),
                     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    auto fail = [](const std::string& what, const std::string& file) {
        const unsigned long e = ERR_get_error();
        ERR_clear_error();
        return std::runtime_error("cannot load " + what + " '" + file + "': " +
                                  (e != 0 ? openssl_reason(e) : "unknown error"));
    };
    if (SSL_CTX_load_verify_locations(ctx.get(), ep.ca_file.c_str(), nullptr) != 1) {
        throw fail("CA file", ep.ca_file);
    }
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), ep.cert_file.c_str()) != 1) {
        throw fail("certificate", ep.cert_file);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), ep.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        throw fail("private key", ep.key_file);
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) {
        throw fail("private key (it does not match the certificate)", ep.key_file);
    }
    return ctx;
}

SSL* new_client_ssl(SSL_CTX* ctx, const base_url& url) noexcept {
    SSL* ssl = SSL_new(ctx);
    if (ssl == nullptr) {
        return nullptr;
    }
    if (is_ip_literal(url.host)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url.host.c_str());
    } else {
        SSL_set_tlsext_host_name(ssl, url.host.c_str());
        SSL_set1_host(ssl, url.host.c_str());
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

std::string describe_tls_failure(SSL* ssl, int ssl_error) {
    const unsigned long e = ERR_peek_error();
    ERR_clear_error();
    if (ssl_error == SSL_ERROR_SYSCALL && e == 0) {
        if (errno == ECONNRESET || errno == EPIPE || errno == 0) {
            // TLS 1.3 servers check the client certificate after the client's handshake ends,
            // so a refusal often shows only as a closed connection.
            return std::string("the server ") + (errno == 0 ? "closed" : "reset") +
                   " the connection during TLS (certificate refused? check that --cert is "
                   "signed by a CA the server trusts)";
        }
        return std::string("connection failed during TLS: ") + std::strerror(errno);
    }
    if (ssl_error == SSL_ERROR_ZERO_RETURN) {
        return "the server closed the TLS session";
    }
    if (e == 0) {
        return "TLS failure (SSL_get_error " + std::to_string(ssl_error) + ")";
    }
    const int reason = ERR_GET_REASON(e);
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && ssl != nullptr) {
        return verify_failure(SSL_get_verify_result(ssl));
    }
    switch (reason) {
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
        return "certificate refused: the server rejected our client certificate (" +
               openssl_reason(e) + ")";
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
        return "not a TLS server (" + openssl_reason(e) + ")";
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return "the server closed the connection during the TLS exchange";
    default:
        return "TLS failure: " + openssl_reason(e);
    }
}

} // namespace keyrail::bench_client
