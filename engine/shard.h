#pragma once
// One shard: a pinned thread with its own io_uring, listening sockets, connection slots and
// buffers. Internal to the engine; protocols see it as a shard_context.
#include <liburing.h>
#include <netinet/in.h>
#include <sys/socket.h>

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
struct outbound_config;

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
    std::atomic<std::uint64_t> timers_fired{0};
    std::atomic<std::uint64_t> wakes{0};
    std::atomic<std::uint64_t> outbound_connected{0};
    std::atomic<std::uint64_t> outbound_failures{0};
    std::atomic<std::uint64_t> outbound_refused{0};
    std::atomic<std::uint64_t> outbound_open{0};
};

// Server-wide phases, published by the supervisor (run()'s thread) and read by shards.
enum class server_phase : int { running = 0, draining = 1, force_close = 2, shard_drain = 3, exit = 4 };

namespace detail {

enum class conn_state : std::uint8_t { free, connecting, handshaking, open, closing };
enum class wait_kind : std::uint8_t { handshake, request, idle, parked };

inline constexpr std::uint32_t no_slot = 0xffff'ffffu;

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
    bool parked = false;            // on_data answered after_flush::park; no on_data until wake
    bool ready_queued = false;      // on the shard's ready list (pump at the end of the turn)
    bool output_overflowed = false; // on_wake overflowed its output: close from the ready list
    std::uint32_t next_ready = no_slot;
    std::uint32_t outbound = no_slot; // index into shard::_outbound for a slot a link owns

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
    std::uint64_t parked_since_ns = 0;
    // While a recv (send) is in flight: when the shard's sweep closes the connection.
    std::uint64_t recv_deadline_ns = 0;
    std::uint64_t send_deadline_ns = 0;

    tls_session tls;
    peer_identity peer;
    connection_context ctx;
    char remote[64] = {};
};

// One timer slot. Lives on: its shard. The timespec is read by the kernel at submission.
struct timer_slot {
    timer_handler* handler = nullptr;
    std::uint64_t arg = 0;
    std::uint64_t deadline_ns = 0; // absolute, CLOCK_MONOTONIC (io_uring's timeout clock)
    std::uint64_t period_ns = 0;   // 0: one-shot
    __kernel_timespec ts{};
    std::uint32_t generation = 0;
    std::uint32_t next_free = 0;
    bool active = false;   // armed and not cancelled
    bool inflight = false; // a timeout SQE whose CQE has not arrived
};

// One outbound connection the shard keeps up. Lives on: its home shard.
struct outbound_link {
    const outbound_config* config = nullptr;
    std::size_t index = 0;          // position in server_config::outbound
    tls_client_context tls;
    sockaddr_storage address{};
    socklen_t address_bytes = 0;
    char remote[64] = {};
    std::uint32_t slot = no_slot;   // its reserved connection slot
    std::size_t protocol_index = 0; // into shard::_protocols
    std::uint64_t backoff_ns = 0;   // the next retry's upper bound
    timer_id retry{};
    bool retry_armed = false;
    bool up = false;                // handshake and identity check passed, not yet closed
    __kernel_timespec connect_ts{};
};

} // namespace detail

// Lives on: its own thread (created by server::run), pinned to one core.
class shard final : public shard_context, private timer_handler {
public:
    shard(server& owner, std::size_t index, std::vector<int> listen_fds,
          std::vector<tls_context> tls, std::vector<detail::outbound_link> outbound) noexcept;
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
    [[nodiscard]] result<timer_id> add_timer(std::uint64_t first_ns, std::uint64_t period_ns,
                                             timer_handler& handler,
                                             std::uint64_t arg) noexcept override;
    bool cancel_timer(timer_id id) noexcept override;
    bool wake(connection_id id, std::uint64_t arg) noexcept override;
    [[nodiscard]] result<void> send(connection_id id, std::span<const char> bytes) noexcept override;
    [[nodiscard]] result<connection_id> outbound_connection(std::size_t index) const noexcept override;

    // Read by the supervisor.
    enum class start_state : int { pending = 0, ok = 1, failed = 2 };
    std::atomic<int> started{0};
    std::error_code start_error; // written before started becomes failed (release)
    std::atomic<bool> drained{false};
    std::atomic<bool> hooks_done{false};
    shard_counters counters;

private:
    enum class op : std::uint8_t { accept = 1, doorbell, recv, send, cancel, timer, connect,
                                   connect_timeout, sweep };

    [[nodiscard]] result<void> start() noexcept;
    void loop() noexcept;
    // Every io_uring submission goes through here: the hooks' output barrier first.
    void output_barrier() noexcept;
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
    // The wait a recv is under now (handshake, parked, request or idle) and its deadline.
    [[nodiscard]] static detail::wait_kind wanted_wait(const detail::connection& c) noexcept;
    void set_recv_deadline(detail::connection& c) noexcept;
    void refresh_recv_deadline(detail::connection& c) noexcept;
    void finish_close(detail::connection& c) noexcept;
    void abort_close(detail::connection& c) noexcept;
    void maybe_release(detail::connection& c) noexcept;

    // Connection deadlines: one periodic timeout walks every connection (no timeout SQE per
    // recv or send, so no hrtimer armed and cancelled per operation).
    void arm_sweep() noexcept;
    void sweep() noexcept;

    // Timers.
    void arm_timer(std::uint32_t slot) noexcept;
    void free_timer(std::uint32_t slot) noexcept;
    void on_timer_cqe(std::uint32_t slot, std::uint32_t generation, int res) noexcept;
    // The shard's own timers: outbound reconnects (arg: index into _outbound).
    void on_timer(shard_context& self, timer_id id, std::uint64_t arg) noexcept override;

    // Deferred work: connections to pump once the current callbacks returned.
    [[nodiscard]] detail::connection* lookup(connection_id id) noexcept;
    void queue_ready(detail::connection& c) noexcept;
    void run_ready() noexcept;

    // Outbound connections.
    void start_connect(std::size_t link_index) noexcept;
    void on_connect(detail::connection& c, int res) noexcept;
    void schedule_retry(detail::outbound_link& link) noexcept;
    [[nodiscard]] bool check_outbound_identity(detail::connection& c) noexcept;

    server& _server;
    const server_config& _config;
    std::size_t _index;
    // Log lines about unauthenticated connections (refused or abandoned handshakes) are
    // limited per shard, so a client without a certificate cannot flood the log.
    [[nodiscard]] bool unauthenticated_log_allowed() noexcept;
    std::uint64_t _unauth_log_window_ns = 0;
    std::uint32_t _unauth_logged = 0;
    std::uint64_t _unauth_suppressed = 0;
    std::vector<int> _listen_fds; // -1 once closed
    std::size_t _listeners_open = 0;
    std::vector<tls_context> _tls; // one per listener
    std::vector<std::unique_ptr<protocol>> _protocols; // one per listener
    std::unique_ptr<shard_hooks> _hooks;
    // Connections (slot, generation) with a send queued since the last output barrier.
    std::vector<std::pair<std::uint32_t, std::uint32_t>> _sent_since_barrier;

    io_uring _ring{};
    bool _ring_ready = false;
    bool _multishot_accept = true;
    bool _draining = false;
    bool _exit = false;
    server_phase _phase_seen = server_phase::running;
    std::uint64_t _now_ns = 0;
    std::uint64_t _sweep_period_ns = 0;
    __kernel_timespec _sweep_ts{};
    bool _look_again = false; // messages wait in the rings: the next submit does not sleep
    std::uint64_t _doorbell_value = 0;

    std::unique_ptr<char[]> _arena;
    std::unique_ptr<detail::connection[]> _connections;
    std::uint32_t _connection_count = 0;
    std::uint32_t _free_head = 0; // index into _connections; == _connection_count when none free
    std::size_t _open_count = 0;
    std::uint32_t _ready_head = detail::no_slot;
    std::uint32_t _ready_tail = detail::no_slot;

    std::unique_ptr<detail::timer_slot[]> _timers;
    std::uint32_t _timer_count = 0;
    std::uint32_t _timer_free_head = 0; // == _timer_count when none free

    std::vector<detail::outbound_link> _outbound;
    std::uint64_t _jitter_state = 0; // splitmix64, for reconnect jitter
};

} // namespace keyrail::engine
