#pragma once
// TLS 1.3 with mandatory client certificates, in user space over a BIO pair: the reactor moves
// ciphertext between the socket and the pair, OpenSSL never touches the socket. The kernels we
// run on offer no kTLS; a kTLS session would implement the same calls (feed/drain become
// no-ops once the handshake is done) without changing the reactor's state machine.
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/ssl.h>

#include "engine/result.h"

namespace keyrail::engine {

struct tls_config {
    std::filesystem::path cert_file; // server certificate chain (PEM)
    std::filesystem::path key_file;  // its private key (PEM)
    std::filesystem::path ca_file;   // CAs whose client certificates are accepted (PEM)
    int verify_depth = 4;            // longest client chain, leaf excluded
    std::size_t session_tickets_count = 2; // TLS 1.3 tickets sent after each full handshake
};

// The client side of an outbound mTLS connection (the peer protocol dials its neighbours).
struct client_tls_config {
    std::filesystem::path cert_file; // our certificate chain, presented to the server (PEM)
    std::filesystem::path key_file;  // its private key (PEM)
    std::filesystem::path ca_file;   // CAs whose server certificates are accepted (PEM)
    int verify_depth = 4;            // longest server chain, leaf excluded
    // The server must present this URI SAN (e.g. "urn:keyrail:node:2"), else the connection
    // is refused after the handshake with a logged reason. Empty: any certificate from ca_file.
    std::string expected_peer_uri;
};

// Why a client was refused during the handshake. The log line names it.
enum class tls_refusal : unsigned char {
    none,
    no_certificate,   // SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE
    unknown_ca,       // chain does not end at a CA in ca_file
    expired,          // X509_V_ERR_CERT_HAS_EXPIRED
    not_yet_valid,    // X509_V_ERR_CERT_NOT_YET_VALID
    chain_too_long,   // longer than verify_depth
    bad_certificate,  // any other X509_V_ERR_*
    protocol,         // not a certificate problem: version, cipher, garbage, ...
};
inline constexpr std::size_t tls_refusal_count = 8;

[[nodiscard]] const char* to_string(tls_refusal r) noexcept;

// Ticket encryption keys shared by every shard's context, so a session resumes on any shard.
using tls_ticket_keys = std::array<unsigned char, 80>;

// A server SSL_CTX. Built at start-up; one per shard so SSL_new only touches shard-local state.
// Lives on: built by the server at start-up, then used only by its shard.
class tls_context {
public:
    [[nodiscard]] static result<tls_context> create(const tls_config& config,
                                                    const tls_ticket_keys& ticket_keys) noexcept;
    [[nodiscard]] SSL_CTX* native() const noexcept { return _ctx.get(); }

private:
    struct ctx_free {
        void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
    };
    std::unique_ptr<SSL_CTX, ctx_free> _ctx;
};

// A client SSL_CTX for outbound connections: TLS 1.3 only, verifies the server's chain against
// ca_file (the identity is checked by URI SAN after the handshake, not by host name).
// Lives on: built by the server at start-up, then used only by the shard that owns the link.
class tls_client_context {
public:
    [[nodiscard]] static result<tls_client_context> create(const client_tls_config& config) noexcept;
    [[nodiscard]] SSL_CTX* native() const noexcept { return _ctx.get(); }

private:
    struct ctx_free {
        void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
    };
    std::unique_ptr<SSL_CTX, ctx_free> _ctx;
};

// The client's verified certificate, reduced to what the layer above derives an SAE identity
// from. Filled once per connection after the handshake.
struct peer_identity {
    std::string subject_cn;            // empty when the subject has no CN
    std::vector<std::string> san_uris; // every URI SAN, in certificate order
    void clear() noexcept {
        subject_cn.clear();
        san_uris.clear();
    }
};

// One connection's TLS state over a BIO pair.
// Lives on: the shard that accepted the connection.
class tls_session {
public:
    enum class status : std::uint8_t { done, want_io, closed, failed };

    tls_session() noexcept = default;
    tls_session(const tls_session&) = delete;
    tls_session& operator=(const tls_session&) = delete;
    ~tls_session() { reset(); }

    // A fresh server session; the BIO pair holds pair_bytes in each direction.
    [[nodiscard]] result<void> open(SSL_CTX* ctx, std::size_t pair_bytes) noexcept;
    // A fresh client session (outbound connection): handshake() sends the ClientHello.
    [[nodiscard]] result<void> open_client(SSL_CTX* ctx, std::size_t pair_bytes) noexcept;
    void reset() noexcept;
    [[nodiscard]] bool is_open() const noexcept { return _ssl != nullptr; }

    // done: handshake complete; want_io: feed or drain more; failed: see refusal().
    [[nodiscard]] status handshake() noexcept;

    // Ciphertext from the network: room in the pair, then feed (returns bytes taken).
    [[nodiscard]] std::size_t feed_space() const noexcept;
    std::size_t feed(std::span<const char> ciphertext) noexcept;
    // Ciphertext for the network: bytes waiting, then drain (returns bytes copied).
    [[nodiscard]] std::size_t drain_pending() const noexcept;
    std::size_t drain(std::span<char> into) noexcept;

    // Plaintext. read: done with got > 0, want_io, closed (close_notify), failed.
    [[nodiscard]] status read(std::span<char> into, std::size_t& got) noexcept;
    // write: done with wrote > 0, want_io (pair full), failed.
    [[nodiscard]] status write(std::span<const char> from, std::size_t& wrote) noexcept;
    // Queues close_notify.
    void shutdown() noexcept;

    // After a failed handshake: why, and a detail text for the log.
    [[nodiscard]] tls_refusal refusal() const noexcept { return _refusal; }
    [[nodiscard]] const char* refusal_detail() const noexcept { return _detail.data(); }

    [[nodiscard]] bool resumed() const noexcept;
    // The verified client certificate; owned by the session, valid until reset().
    [[nodiscard]] X509* peer_certificate() const noexcept;
    // RFC 8446 section 7.5 exporter: out.size() bytes both ends of this session derive alike
    // from label (no context), so a protocol can bind a value to this very session.
    [[nodiscard]] bool export_keying_material(std::string_view label,
                                              std::span<std::byte> out) const noexcept;
    void extract_identity(peer_identity& into) const noexcept;

private:
    void classify_failure(unsigned long first_error) noexcept;

    SSL* _ssl = nullptr;
    BIO* _network = nullptr; // our end of the pair; the other end belongs to _ssl
    tls_refusal _refusal = tls_refusal::none;
    std::array<char, 192> _detail{};
};

} // namespace keyrail::engine
