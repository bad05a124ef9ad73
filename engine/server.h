#pragma once
// The sharded TLS server: one pinned shard thread per core, each with its own io_uring and
// its own SO_REUSEPORT listening socket per listener, so the kernel spreads connections and
// nothing on the request path is shared or locked.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/protocol.h"
#include "engine/result.h"
#include "engine/ring_matrix.h"
#include "engine/tls.h"
#include "engine/topology.h"

namespace keyrail::engine {

class shard;

struct listener_config {
    std::string address = "127.0.0.1"; // IPv4 or IPv6 literal
    std::uint16_t port = 0;            // 0: an ephemeral port, read back with server::port()
    tls_config tls;
    // Set: only this shard listens (and accepts) on the port; the others never see its
    // connections (a protocol whose state lives on one shard, like keyraild's peer API).
    // Unset: every shard listens with SO_REUSEPORT and the kernel spreads the connections.
    std::optional<std::size_t> only_shard;
    // Called once per shard, on the shard's thread, at start.
    std::function<std::unique_ptr<protocol>(std::size_t shard_index)> make_protocol;
};

// A connection this server dials and keeps up (the peer protocol's links to its neighbours).
// Its home shard connects through io_uring, runs the TLS client handshake, checks the server's
// identity (client_tls_config::expected_peer_uri), then drives the protocol exactly like an
// accepted connection. On a failure or a close it reconnects after a backoff that doubles from
// backoff_min to backoff_max, with jitter (a uniform draw in [backoff/2, backoff]); a completed
// handshake resets it. The drain closes it and stops the reconnects.
struct outbound_config {
    std::string address = "127.0.0.1"; // IPv4 or IPv6 literal
    std::uint16_t port = 0;
    client_tls_config tls;
    std::size_t shard_index = 0; // its home shard
    // The protocol: its own instance (made once, on the home shard), or, when make_protocol is
    // empty, the instance of listener protocol_listener on the home shard (a peer protocol that
    // both accepts and dials).
    std::function<std::unique_ptr<protocol>(std::size_t shard_index)> make_protocol;
    std::size_t protocol_listener = 0;
    std::chrono::milliseconds connect_timeout{5'000}; // TCP connect; then handshake_timeout
    std::chrono::milliseconds backoff_min{50};
    std::chrono::milliseconds backoff_max{5'000};
};

enum class stop_signals : std::uint8_t {
    handle, // run() blocks SIGTERM and SIGINT and drains on either (call it before other threads)
    ignore, // only request_stop() drains (tests, embedding)
};

enum class thread_pinning : std::uint8_t { pin, none };

struct server_config {
    std::size_t shard_count = 0; // 0: one per core the process may use
    thread_pinning pinning = thread_pinning::pin;
    stop_signals signals = stop_signals::handle;
    std::vector<listener_config> listeners; // may be empty when outbound is not
    std::vector<outbound_config> outbound;  // each takes one connection slot of its home shard

    // Per shard, allocated at start: connections_per_shard_max x (input + output + 2 socket
    // staging buffers), plus OpenSSL's BIO pair (2 x tls_pair_bytes) per open connection.
    std::size_t connections_per_shard_max = 256;
    std::size_t input_buffer_bytes = 16 * 1024;  // largest request a handler may need whole
    std::size_t output_buffer_bytes = 64 * 1024; // largest output of one on_data call
    std::size_t socket_buffer_bytes = 16 * 1024; // ciphertext staged for one recv or send
    std::size_t tls_pair_bytes = 20 * 1024;      // BIO pair, each direction (>= one record)
    // Timers the layer above may arm per shard (shard_context::add_timer); the engine adds one
    // per outbound connection for its reconnects.
    std::size_t timers_per_shard_max = 256;
    unsigned io_uring_entries = 1024;
    int listen_backlog = 1024;

    std::chrono::milliseconds handshake_timeout{5'000}; // accept to handshake done
    std::chrono::milliseconds request_timeout{10'000};  // first byte of a request to all of it
    std::chrono::milliseconds idle_timeout{60'000};     // no request in progress
    std::chrono::milliseconds send_timeout{10'000};     // a client not reading its responses
    std::chrono::milliseconds drain_timeout{10'000};    // in-flight requests after a stop
    // A parked connection (after_flush::park) waiting for its wake; the protocol's own deadline
    // should be shorter. Request and idle timeouts do not run while a connection is parked.
    std::chrono::milliseconds park_timeout{60'000};

    std::function<std::unique_ptr<shard_hooks>(std::size_t shard_index)> make_shard_hooks;
    // On run()'s thread after every shard's on_drain, before run() returns.
    std::function<void()> drain_hook;
};

// Counters, summed over shards. Each shard writes its own with relaxed stores; readers get a
// recent, not an atomic, snapshot.
struct server_stats {
    std::uint64_t accepted = 0;
    std::uint64_t handshakes = 0;
    std::uint64_t resumed = 0;
    std::uint64_t refused[tls_refusal_count] = {};
    std::uint64_t timeouts = 0;
    std::uint64_t limit_closes = 0; // input or output over its buffer, or no free slot
    std::uint64_t messages_received = 0;
    std::uint64_t open_connections = 0;
    std::uint64_t timers_fired = 0;
    std::uint64_t wakes = 0;               // parked connections woken
    std::uint64_t outbound_connected = 0;  // outbound handshakes that passed the identity check
    std::uint64_t outbound_failures = 0;   // connect, handshake or identity failures
    std::uint64_t outbound_refused = 0;    // of which: the server's identity did not match
    std::uint64_t outbound_open = 0;       // outbound connections up now
};

// Lives on: created on the starting thread; run() there; shards on their own threads.
class server {
public:
    // Start-up: validates the config, finds cores, loads TLS contexts and binds every shard's
    // listening sockets (so port() is known before run()).
    [[nodiscard]] static result<std::unique_ptr<server>> create(server_config config) noexcept;
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    [[nodiscard]] std::uint16_t port(std::size_t listener_index) const noexcept;
    [[nodiscard]] std::size_t shard_count() const noexcept { return _shard_count; }

    // Starts the shards and blocks until a stop has drained them: stop accepting, let
    // in-flight requests finish (drain_timeout), shard on_drain hooks, drain_hook. Returns
    // the first start-up error of any shard, else success.
    [[nodiscard]] result<void> run() noexcept;

    // Any thread, and async-signal-safe: begins the drain.
    void request_stop() noexcept;

    [[nodiscard]] server_stats stats() const noexcept;
    [[nodiscard]] server_stats shard_stats(std::size_t shard_index) const noexcept;

private:
    friend class shard;
    explicit server(server_config config) noexcept;
    void notify_supervisor() noexcept;
    [[nodiscard]] bool wait_supervisor(int timeout_ms) noexcept;

    server_config _config;
    std::size_t _shard_count = 0;
    std::vector<core> _cores;
    std::vector<std::uint16_t> _ports;
    std::unique_ptr<ring_matrix<shard_message>> _matrix;
    std::vector<std::unique_ptr<shard>> _shards;
    int _stop_fd = -1;       // eventfd: request_stop() writes it
    int _supervisor_fd = -1; // eventfd: shards write it when they reach a phase
    std::atomic<int> _phase{0}; // server_phase, written by run(), read by shards
    std::atomic<bool> _stop_requested{false};
    std::atomic<bool> _running{false};
};

} // namespace keyrail::engine
