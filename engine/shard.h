#pragma once
// One shard: a pinned thread with its own io_uring, listening sockets, connection slots and
// buffers. Internal to the engine; protocols see it as a shard_context.
#include <liburing.h>
#include <netinet/in.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <system_error>
#include <vector>

#include "engine/protocol.h"
#include "engine/ring_matrix.h"
#include "engine/tls.h"

namespace keyrail::engine {

class server;
struct server_config;

// Counters of one shard. Lives on: written by its shard (relaxed), read by any thread.
struct shard_counters {
    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> handshakes{0};
    std::atomic<std::uint64_t> resumed{0};
    std::atomic<std::uint64_t> refused[tls_refusal_count] = {};
    std::atomic<std::uint64_t> timeouts{0};
    std::atomic<std::uint64_t> limit_closes{0};
    std::atomic<std::uint64_t> messages_received{0};
    std::atomic<std::uint64_t> open_connections{0};
};

// Server-wide phases, published by the supervisor (run()'s thread) and read by shards.
enum class server_phase : int { running = 0, draining = 1, force_close = 2, shard_drain = 3, exit = 4 };

namespace detail {

enum class conn_state : std::uint8_t { free, handshaking, open, closing };
enum class wait_kind : std::uint8_t { handshake, request, idle };

// One connection slot. Lives on: its shard. Buffers point into the shard's arena.
struct connection {
    int fd = -1;
    std::uint32_t generation = 0;
    std::uint32_t listener = 0;
    std::uint32_t next_free = 0;
    conn_state state = conn_state::free;
    wait_kind recv_wait = wait_kind::idle;
    std::uint8_t inflight_count = 0; // SQEs whose CQE has not arrived, linked timeouts included
    bool recv_inflight = false;
    bool send_inflight = false;
    bool opened = false;            // on_open was called, so on_close is owed
    bool close_after_flush = false;
    bool handshake_failed = false;
    bool shutdown_sent = false;     // close_notify queued
    bool peer_closed = false;       // close_notify or FIN received

    char* rx = nullptr; // ciphertext received, fed to TLS at once
    char* tx = nullptr; // ciphertext being sent
    std::size_t tx_len = 0;
    std::size_t tx_sent = 0;
    char* in = nullptr; // plaintext not yet consumed by the protocol
    std::size_t in_len = 0;
    char* out = nullptr; // plaintext produced by the protocol, not yet encrypted
    std::size_t out_len = 0;
    std::size_t out_written = 0;

    std::uint64_t handshake_deadline_ns = 0;
    std::uint64_t request_started_ns = 0; // first byte of the request being received, or 0
    __kernel_timespec recv_ts{};
    __kernel_timespec send_ts{};

    tls_session tls;
    peer_identity peer;
    connection_context ctx;
    char remote[64] = {};
};

} // namespace detail

// Lives on: its own thread (created by server::run), pinned to one core.
class shard final : public shard_context {
public:
    shard(server& owner, std::size_t index, std::vector<int> listen_fds,
          std::vector<tls_context> tls) noexcept;
    ~shard();
    shard(const shard&) = delete;
    shard& operator=(const shard&) = delete;

    // The thread body; reports start-up and the phases it reached to the server.
    void thread_main() noexcept;

    // shard_context
    [[nodiscard]] std::size_t shard_index() const noexcept override { return _index; }
    [[nodiscard]] std::size_t shard_count() const noexcept override;
    [[nodiscard]] std::uint64_t now_ns() const noexcept override { return _now_ns; }
    [[nodiscard]] result<void> post(std::size_t to, shard_message message) noexcept override;

    // Read by the supervisor.
    enum class start_state : int { pending = 0, ok = 1, failed = 2 };
    std::atomic<int> started{0};
    std::error_code start_error; // written before started becomes failed (release)
    std::atomic<bool> drained{false};
    std::atomic<bool> hooks_done{false};
    shard_counters counters;

private:
    enum class op : std::uint8_t { accept = 1, doorbell, recv, recv_timeout, send, send_timeout,
                                   cancel };

    [[nodiscard]] result<void> start() noexcept;
    void loop() noexcept;
    void stop_everything() noexcept;
    void handle(const io_uring_cqe& cqe) noexcept;
    void follow_phase() noexcept;
    void begin_drain() noexcept;
    void report(std::atomic<bool>& flag) noexcept;

    [[nodiscard]] io_uring_sqe* sqe() noexcept;
    void reserve_sqes(unsigned count) noexcept;
    void arm_accept(std::size_t listener) noexcept;
    void arm_doorbell() noexcept;
    void on_accept(std::size_t listener, int res, unsigned flags) noexcept;
    void accept_connection(std::size_t listener, int fd) noexcept;

    void on_recv(detail::connection& c, int res) noexcept;
    void on_send(detail::connection& c, int res) noexcept;
    void on_linked_timeout(detail::connection& c) noexcept;
    void pump(detail::connection& c) noexcept;
    [[nodiscard]] bool process_input(detail::connection& c) noexcept;
    [[nodiscard]] bool encrypt_output(detail::connection& c) noexcept;
    void flush_network(detail::connection& c) noexcept;
    void submit_send(detail::connection& c) noexcept;
    void arm_recv(detail::connection& c) noexcept;
    void finish_close(detail::connection& c) noexcept;
    void abort_close(detail::connection& c) noexcept;
    void maybe_release(detail::connection& c) noexcept;

    server& _server;
    const server_config& _config;
    std::size_t _index;
    std::vector<int> _listen_fds; // -1 once closed
    std::size_t _listeners_open = 0;
    std::vector<tls_context> _tls; // one per listener
    std::vector<std::unique_ptr<protocol>> _protocols; // one per listener
    std::unique_ptr<shard_hooks> _hooks;

    io_uring _ring{};
    bool _ring_ready = false;
    bool _multishot_accept = true;
    bool _draining = false;
    bool _exit = false;
    server_phase _phase_seen = server_phase::running;
    std::uint64_t _now_ns = 0;
    std::uint64_t _doorbell_value = 0;

    std::unique_ptr<char[]> _arena;
    std::unique_ptr<detail::connection[]> _connections;
    std::uint32_t _connection_count = 0;
    std::uint32_t _free_head = 0; // index into _connections; == _connection_count when none free
    std::size_t _open_count = 0;
};

} // namespace keyrail::engine
