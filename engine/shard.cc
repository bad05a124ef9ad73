#include "engine/shard.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include "engine/assert.h"
#include "engine/errc.h"
#include "engine/limits.h"
#include "engine/log.h"
#include "engine/secure.h"
#include "engine/server.h"

namespace keyrail::engine {
namespace {

using detail::conn_state;
using detail::connection;
using detail::wait_kind;

constexpr std::uint32_t slot_bits = 24;
constexpr std::uint32_t slot_mask = (1u << slot_bits) - 1;

[[nodiscard]] std::uint64_t tag(std::uint8_t o, std::uint32_t slot, std::uint32_t generation) {
    return (std::uint64_t{o} << 56) | (std::uint64_t{slot & slot_mask} << 32) | generation;
}

[[nodiscard]] std::uint64_t monotonic_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

[[nodiscard]] std::uint64_t to_ns(std::chrono::milliseconds ms) noexcept {
    return static_cast<std::uint64_t>(ms.count()) * 1'000'000u;
}

void set_timespec(__kernel_timespec& ts, std::uint64_t ns) noexcept {
    ts.tv_sec = static_cast<long long>(ns / 1'000'000'000u);
    ts.tv_nsec = static_cast<long long>(ns % 1'000'000'000u);
}

// Sanitizers cannot see the kernel side of io_uring: check that every buffer handed to the
// kernel is addressable before it goes into an SQE.
void check_sqe_buffer(const void* p, std::size_t bytes) noexcept {
#if defined(__SANITIZE_ADDRESS__)
    void* bad = __asan_region_is_poisoned(const_cast<void*>(p), bytes);
    KEYRAIL_ASSERT(bad == nullptr, "SQE buffer %p+%zu poisoned at %p", p, bytes, bad);
#else
    (void)p;
    (void)bytes;
#endif
}

const char* wait_name(wait_kind k) noexcept {
    switch (k) {
    case wait_kind::handshake:
        return "handshake";
    case wait_kind::request:
        return "request";
    case wait_kind::idle:
        return "idle";
    case wait_kind::parked:
        return "parked";
    }
    return "?";
}

void bump(std::atomic<std::uint64_t>& counter) noexcept {
    // Single writer (this shard): a relaxed load and store, no locked RMW.
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void drop(std::atomic<std::uint64_t>& counter) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

void format_remote(int fd, char* text, std::size_t text_bytes) noexcept {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    std::snprintf(text, text_bytes, "?");
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        return;
    }
    char host[INET6_ADDRSTRLEN] = {};
    unsigned port = 0;
    if (addr.ss_family == AF_INET) {
        const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
        ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
        std::snprintf(text, text_bytes, "%s:%u", host, port);
    } else if (addr.ss_family == AF_INET6) {
        const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
        ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
        std::snprintf(text, text_bytes, "[%s]:%u", host, port);
    }
}

[[nodiscard]] std::uint64_t splitmix64(std::uint64_t& state) noexcept {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

} // namespace

shard::shard(server& owner, std::size_t index, std::vector<int> listen_fds,
             std::vector<tls_context> tls, std::vector<detail::outbound_link> outbound) noexcept
    : _server(owner), _config(owner._config), _index(index), _listen_fds(std::move(listen_fds)),
      _tls(std::move(tls)), _outbound(std::move(outbound)) {}

shard::~shard() {
    stop_everything();
}

std::size_t shard::shard_count() const noexcept { return _server._shard_count; }

result<void> shard::post(std::size_t to, shard_message message) noexcept {
    message.from_shard = static_cast<std::uint32_t>(_index);
    if (to == _index) {
        // No eventfd write and no extra wake: the loop receives again before it sleeps.
        auto posted = _server._matrix->try_post_to_self(_index, message);
        _look_again = _look_again || posted.has_value();
        return posted;
    }
    return _server._matrix->try_post(_index, to, message);
}

void shard::report(std::atomic<bool>& flag) noexcept {
    // Pairs with the acquire loads in server::run: what the shard did is visible there.
    flag.store(true, std::memory_order_release);
    _server.notify_supervisor();
}

result<void> shard::start() noexcept {
    // Connection slots and their buffers, allocated once. Per slot: the input limit, the
    // output limit, one recv staging buffer, one send staging buffer.
    const std::size_t slots = _config.connections_per_shard_max;
    // Rounded up so every slot's input buffer keeps the arena's 16-byte alignment: protocols
    // may read 8-byte fields in place (the peer protocol's frames).
    const std::size_t per_slot = (_config.input_buffer_bytes + _config.output_buffer_bytes +
                                  2 * _config.socket_buffer_bytes + 63) &
                                 ~std::size_t{63};
    _arena = std::make_unique<char[]>(slots * per_slot); // 16-aligned (operator new[])
    _connections = std::make_unique<connection[]>(slots);
    _sent_since_barrier.reserve(2 * slots);
    _connection_count = static_cast<std::uint32_t>(slots);
    for (std::uint32_t i = 0; i < _connection_count; ++i) {
        connection& c = _connections[i];
        char* base = _arena.get() + i * per_slot;
        c.in = base;
        c.out = c.in + _config.input_buffer_bytes;
        c.rx = c.out + _config.output_buffer_bytes;
        c.tx = c.rx + _config.socket_buffer_bytes;
        c.next_free = i + 1;
    }
    _free_head = 0;
    // Each outbound link owns one slot for good; accepts never take it.
    for (auto& link : _outbound) {
        KEYRAIL_ASSERT(_free_head < _connection_count, "no slot left for outbound %zu", link.index);
        link.slot = _free_head;
        connection& c = _connections[_free_head];
        _free_head = c.next_free;
        c.outbound = static_cast<std::uint32_t>(&link - _outbound.data());
        link.backoff_ns = to_ns(link.config->backoff_min);
    }

    // Timers: what the layer above may arm, plus one reconnect timer per outbound link.
    _timer_count = static_cast<std::uint32_t>(_config.timers_per_shard_max + _outbound.size());
    _timers = std::make_unique<detail::timer_slot[]>(_timer_count);
    for (std::uint32_t i = 0; i < _timer_count; ++i) {
        _timers[i].next_free = i + 1;
    }
    _timer_free_head = 0;
    _jitter_state = monotonic_ns() ^ (std::uint64_t{_index} << 48);

    // The best setup the kernel takes, newest first (-EINVAL: an older kernel):
    // - deferred task work (6.1+): completions are produced when this thread enters the kernel
    //   to wait, not by interrupting the loop while it works;
    // - single issuer and cooperative task running (6.0+);
    // - neither.
    constexpr std::uint32_t setups[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int rc = -EINVAL;
    for (const std::uint32_t setup : setups) {
        io_uring_params params{};
        params.flags = IORING_SETUP_CQSIZE | setup;
        params.cq_entries = _config.io_uring_entries * 4;
        rc = io_uring_queue_init_params(_config.io_uring_entries, &_ring, &params);
        if (rc != -EINVAL) {
            break;
        }
    }
    if (rc < 0) {
        return fail(errno_error(-rc));
    }
    _ring_ready = true;

    for (std::size_t i = 0; i < _config.listeners.size(); ++i) {
        auto p = _config.listeners[i].make_protocol(_index);
        KEYRAIL_ASSERT(p != nullptr, "listener %zu made no protocol", i);
        _protocols.push_back(std::move(p));
    }
    for (auto& link : _outbound) {
        if (link.config->make_protocol) {
            auto p = link.config->make_protocol(_index);
            KEYRAIL_ASSERT(p != nullptr, "outbound %zu made no protocol", link.index);
            link.protocol_index = _protocols.size();
            _protocols.push_back(std::move(p));
        } else {
            link.protocol_index = link.config->protocol_listener;
        }
    }
    if (_config.make_shard_hooks) {
        _hooks = _config.make_shard_hooks(_index);
    }
    _now_ns = monotonic_ns();
    if (_hooks) {
        _hooks->on_start(*this);
    }
    arm_doorbell();
    // An eighth of the shortest connection timeout (1 ms to 250 ms): a deadline is enforced
    // at most that late.
    const std::uint64_t shortest =
        std::min({to_ns(_config.handshake_timeout), to_ns(_config.request_timeout),
                  to_ns(_config.idle_timeout), to_ns(_config.send_timeout),
                  to_ns(_config.park_timeout)});
    _sweep_period_ns = std::clamp<std::uint64_t>(shortest / 8, 1'000'000, 250'000'000);
    arm_sweep();
    _listeners_open = 0;
    for (std::size_t i = 0; i < _listen_fds.size(); ++i) {
        if (_listen_fds[i] >= 0) { // -1: another shard alone listens there
            ++_listeners_open;
            arm_accept(i);
        }
    }
    for (std::size_t i = 0; i < _outbound.size(); ++i) {
        start_connect(i);
    }
    return {};
}

void shard::thread_main() noexcept {
    if (_config.pinning == thread_pinning::pin) {
        const core& c = _server._cores[_index % _server._cores.size()];
        auto pinned = pin_current_thread(c);
        if (!pinned) {
            KEYRAIL_LOG(warn, "engine", "shard %zu: cannot pin: %s", _index,
                        pinned.error().message().c_str());
        }
    }
    auto ok = start();
    if (!ok) {
        start_error = ok.error();
        // Pairs with the acquire load in server::run, which then reads start_error.
        started.store(static_cast<int>(start_state::failed), std::memory_order_release);
        _server.notify_supervisor();
        return;
    }
    started.store(static_cast<int>(start_state::ok), std::memory_order_release);
    _server.notify_supervisor();
    loop();
    stop_everything();
}

void shard::output_barrier() noexcept {
    if (!_hooks) {
        return;
    }
    if (!_hooks->before_output(*this)) {
        // Nothing queued since the last barrier may leave: a shut-down socket fails the send
        // (EPIPE), and the send completion closes the connection.
        std::size_t shut = 0;
        for (const auto& [slot, generation] : _sent_since_barrier) {
            detail::connection& c = _connections[slot];
            if (c.generation == generation && c.state != conn_state::free && c.fd >= 0) {
                (void)::shutdown(c.fd, SHUT_RDWR);
                ++shut;
            }
        }
        KEYRAIL_LOG(error, "engine", "shard %zu: output barrier failed: %zu connections closed "
                    "before their answers left", _index, shut);
    }
    _sent_since_barrier.clear();
}

io_uring_sqe* shard::sqe() noexcept {
    io_uring_sqe* s = io_uring_get_sqe(&_ring);
    if (s == nullptr) {
        output_barrier();
        (void)io_uring_submit(&_ring);
        s = io_uring_get_sqe(&_ring);
    }
    KEYRAIL_ASSERT(s != nullptr, "shard %zu: no SQE after submit", _index);
    return s;
}

void shard::reserve_sqes(unsigned count) noexcept {
    // A linked pair must not be split across two submissions.
    if (io_uring_sq_space_left(&_ring) < count) {
        output_barrier();
        (void)io_uring_submit(&_ring);
    }
}

void shard::arm_doorbell() noexcept {
    io_uring_sqe* s = sqe();
    doorbell& bell = _server._matrix->doorbell_of(_index);
    check_sqe_buffer(&_doorbell_value, sizeof _doorbell_value);
    io_uring_prep_read(s, bell.fd(), &_doorbell_value, sizeof _doorbell_value, 0);
    io_uring_sqe_set_data64(s, tag(static_cast<std::uint8_t>(op::doorbell), 0, 0));
}

void shard::arm_accept(std::size_t listener) noexcept {
    io_uring_sqe* s = sqe();
    const int fd = _listen_fds[listener];
    if (_multishot_accept) {
        io_uring_prep_multishot_accept(s, fd, nullptr, nullptr, SOCK_CLOEXEC);
    } else {
        io_uring_prep_accept(s, fd, nullptr, nullptr, SOCK_CLOEXEC);
    }
    io_uring_sqe_set_data64(
        s, tag(static_cast<std::uint8_t>(op::accept), static_cast<std::uint32_t>(listener), 0));
}

void shard::loop() noexcept {
    while (!_exit) {
        output_barrier();
        // A message to itself (or more than one batch of messages) waits: do not sleep.
        const int rc = _look_again ? io_uring_submit_and_get_events(&_ring)
                                   : io_uring_submit_and_wait(&_ring, 1);
        _look_again = false;
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            const std::error_code ec(-rc, std::system_category());
            KEYRAIL_ASSERT(false, "shard %zu: io_uring_submit_and_wait: %s", _index,
                           ec.message().c_str());
        }
        _now_ns = monotonic_ns();
        unsigned head = 0;
        unsigned seen = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&_ring, head, cqe) {
            handle(*cqe);
            ++seen;
        }
        io_uring_cq_advance(&_ring, seen);

        const std::size_t received = _server._matrix->receive(
            _index, limits::cross_shard_batch_max, [this](const shard_message& m) {
                bump(counters.messages_received);
                if (_hooks) {
                    _hooks->on_message(*this, m);
                }
            });
        if (received == limits::cross_shard_batch_max) {
            _look_again = true; // more may be waiting
        }
        run_ready();
        follow_phase();
        if (_draining && !drained.load(std::memory_order_relaxed) && _open_count == 0 &&
            _listeners_open == 0) {
            report(drained);
        }
    }
}

void shard::follow_phase() noexcept {
    // Pairs with the release store in server::run.
    const auto phase = static_cast<server_phase>(_server._phase.load(std::memory_order_acquire));
    while (_phase_seen < phase) {
        _phase_seen = static_cast<server_phase>(static_cast<int>(_phase_seen) + 1);
        switch (_phase_seen) {
        case server_phase::running:
            break;
        case server_phase::draining:
            begin_drain();
            break;
        case server_phase::force_close:
            for (std::uint32_t i = 0; i < _connection_count; ++i) {
                connection& c = _connections[i];
                if (c.state != conn_state::free && c.state != conn_state::closing) {
                    KEYRAIL_LOG(warn, "engine", "shard %zu: drain timeout, closing %s", _index,
                                c.remote);
                    abort_close(c);
                }
            }
            break;
        case server_phase::shard_drain:
            if (_hooks) {
                _hooks->on_drain(*this);
            }
            report(hooks_done);
            break;
        case server_phase::exit:
            _exit = true;
            break;
        }
    }
}

void shard::begin_drain() noexcept {
    _draining = true;
    for (std::size_t i = 0; i < _listen_fds.size(); ++i) {
        if (_listen_fds[i] < 0) {
            continue;
        }
        io_uring_sqe* s = sqe();
        io_uring_prep_cancel64(
            s, tag(static_cast<std::uint8_t>(op::accept), static_cast<std::uint32_t>(i), 0), 0);
        io_uring_sqe_set_data64(s, tag(static_cast<std::uint8_t>(op::cancel), 0, 0));
    }
    for (auto& link : _outbound) {
        if (link.retry_armed) {
            (void)cancel_timer(link.retry);
            link.retry_armed = false;
        }
    }
    for (std::uint32_t i = 0; i < _connection_count; ++i) {
        connection& c = _connections[i];
        if (c.state == conn_state::handshaking || c.state == conn_state::connecting) {
            abort_close(c);
        } else if (c.state == conn_state::open) {
            pump(c); // closes it when no request is in flight
        }
    }
    run_ready();
}

void shard::handle(const io_uring_cqe& cqe) noexcept {
    const std::uint64_t data = io_uring_cqe_get_data64(&cqe);
    const auto o = static_cast<op>(data >> 56);
    const auto slot = static_cast<std::uint32_t>((data >> 32) & slot_mask);
    const auto generation = static_cast<std::uint32_t>(data);
    switch (o) {
    case op::accept:
        on_accept(slot, cqe.res, cqe.flags);
        return;
    case op::doorbell:
        if (cqe.res < 0 && cqe.res != -EINTR) {
            const std::error_code ec(-cqe.res, std::system_category());
            KEYRAIL_ASSERT(false, "shard %zu: doorbell read: %s", _index, ec.message().c_str());
        }
        _server._matrix->doorbell_of(_index).answer();
        arm_doorbell();
        return;
    case op::cancel:
        return;
    case op::timer:
        on_timer_cqe(slot, generation, cqe.res);
        return;
    case op::sweep:
        sweep();
        arm_sweep();
        return;
    case op::recv:
    case op::send:
    case op::connect:
    case op::connect_timeout:
        break;
    }
    KEYRAIL_ASSERT(slot < _connection_count, "slot %u", slot);
    connection& c = _connections[slot];
    // A slot is reused only after every CQE of its previous occupant arrived.
    KEYRAIL_ASSERT(c.generation == generation, "slot %u generation %u, CQE for %u", slot,
                   c.generation, generation);
    KEYRAIL_ASSERT(c.inflight_count > 0, "slot %u: CQE with nothing in flight", slot);
    --c.inflight_count;
    switch (o) {
    case op::recv:
        c.recv_inflight = false;
        on_recv(c, cqe.res);
        break;
    case op::send:
        c.send_inflight = false;
        on_send(c, cqe.res);
        break;
    case op::connect:
        on_connect(c, cqe.res);
        break;
    case op::connect_timeout:
        on_linked_timeout(c);
        break;
    default:
        break;
    }
}

void shard::on_accept(std::size_t listener, int res, unsigned flags) noexcept {
    const bool more = (flags & IORING_CQE_F_MORE) != 0;
    if (res >= 0) {
        if (_draining) {
            ::close(res);
        } else {
            accept_connection(listener, res);
        }
    } else if (res == -EINVAL && _multishot_accept && !_draining) {
        KEYRAIL_LOG(info, "engine", "shard %zu: no multishot accept, using single accepts",
                    _index);
        _multishot_accept = false;
    } else if (res != -ECANCELED) {
        const std::error_code ec(-res, std::system_category());
        KEYRAIL_LOG(warn, "engine", "shard %zu: accept: %s", _index, ec.message().c_str());
    }
    if (more) {
        return;
    }
    if (_draining) {
        if (_listen_fds[listener] >= 0) {
            ::close(_listen_fds[listener]);
            _listen_fds[listener] = -1;
            --_listeners_open;
        }
        return;
    }
    arm_accept(listener);
}

void shard::accept_connection(std::size_t listener, int fd) noexcept {
    bump(counters.accepted);
    if (_free_head == _connection_count) {
        KEYRAIL_LOG(warn, "engine", "shard %zu: all %u connection slots busy, closing new one",
                    _index, _connection_count);
        bump(counters.limit_closes);
        ::close(fd);
        return;
    }
    const int one = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    connection& c = _connections[_free_head];
    const std::uint32_t slot = _free_head;
    auto opened = c.tls.open(_tls[listener].native(), _config.tls_pair_bytes);
    if (!opened) {
        KEYRAIL_LOG(warn, "engine", "shard %zu: cannot start TLS: %s", _index,
                    opened.error().message().c_str());
        ::close(fd);
        return;
    }
    _free_head = c.next_free;
    ++_open_count;
    bump(counters.open_connections);
    c.fd = fd;
    c.listener = static_cast<std::uint32_t>(listener);
    c.state = conn_state::handshaking;
    c.handshake_deadline_ns = _now_ns + to_ns(_config.handshake_timeout);
    format_remote(fd, c.remote, sizeof c.remote);
    c.ctx = connection_context{};
    c.ctx._shard = this;
    c.ctx._peer = &c.peer;
    c.ctx._tls = &c.tls;
    c.ctx._remote = c.remote;
    c.ctx._id = connection_id{slot, c.generation};
    c.ctx._listener_index = listener;
    KEYRAIL_LOG(debug, "engine", "shard %zu: accepted %s slot %u", _index, c.remote, slot);
    pump(c);
}

void shard::on_recv(connection& c, int res) noexcept {
    if (c.state == conn_state::closing) {
        maybe_release(c);
        return;
    }
    if (res < 0) {
        const std::error_code ec(-res, std::system_category());
        KEYRAIL_LOG(debug, "engine", "shard %zu: %s: recv: %s", _index, c.remote,
                    ec.message().c_str());
        abort_close(c);
        return;
    }
    if (res == 0) {
        if (c.state == conn_state::handshaking) {
            if (unauthenticated_log_allowed()) {
                KEYRAIL_LOG(info, "engine", "shard %zu: %s: closed during handshake", _index,
                            c.remote);
            }
        } else if (c.in_len > 0) {
            KEYRAIL_LOG(info, "engine", "shard %zu: %s: closed mid-request", _index, c.remote);
        }
        c.peer_closed = true;
        abort_close(c);
        return;
    }
    const auto bytes = static_cast<std::size_t>(res);
    const std::size_t fed = c.tls.feed({c.rx, bytes});
    // arm_recv asked for no more than the pair could take.
    KEYRAIL_ASSERT(fed == bytes, "fed %zu of %zu", fed, bytes);
    pump(c);
}

void shard::on_send(connection& c, int res) noexcept {
    if (c.state == conn_state::closing) {
        maybe_release(c);
        return;
    }
    if (res < 0) {
        const std::error_code ec(-res, std::system_category());
        KEYRAIL_LOG(debug, "engine", "shard %zu: %s: send: %s", _index, c.remote,
                    ec.message().c_str());
        abort_close(c);
        return;
    }
    c.tx_sent += static_cast<std::size_t>(res);
    KEYRAIL_ASSERT(c.tx_sent <= c.tx_len, "sent %zu of %zu", c.tx_sent, c.tx_len);
    if (c.tx_sent < c.tx_len) {
        submit_send(c);
        return;
    }
    c.tx_len = 0;
    c.tx_sent = 0;
    pump(c);
}

void shard::on_linked_timeout(connection& c) noexcept {
    if (c.state == conn_state::closing) {
        maybe_release(c);
    }
}

void shard::pump(connection& c) noexcept {
    if (c.state == conn_state::free || c.state == conn_state::closing) {
        return;
    }
    if (c.state == conn_state::handshaking && !c.handshake_failed) {
        const auto step = c.tls.handshake();
        if (step == tls_session::status::failed) {
            const tls_refusal why = c.tls.refusal();
            if (c.outbound != detail::no_slot) {
                // tls_refusal names the client side; the detail names the server's problem.
                KEYRAIL_LOG(warn, "engine", "shard %zu: outbound %s: handshake failed: %s",
                            _index, c.remote, c.tls.refusal_detail());
                bump(counters.outbound_failures);
            } else {
                if (unauthenticated_log_allowed()) {
                    KEYRAIL_LOG(warn, "engine", "shard %zu: %s: handshake refused: %s (%s)",
                                _index, c.remote, to_string(why), c.tls.refusal_detail());
                }
                bump(counters.refused[static_cast<std::size_t>(why)]);
            }
            c.handshake_failed = true;
            c.close_after_flush = true; // send the alert, then close
        } else if (step == tls_session::status::done) {
            c.state = conn_state::open;
            c.tls.extract_identity(c.peer);
            bump(counters.handshakes);
            if (c.tls.resumed()) {
                bump(counters.resumed);
            }
            KEYRAIL_LOG(debug, "engine", "shard %zu: %s: TLS up, CN '%s', %zu URI SANs%s",
                        _index, c.remote, c.peer.subject_cn.c_str(), c.peer.san_uris.size(),
                        c.tls.resumed() ? ", resumed" : "");
            if (c.outbound != detail::no_slot && !check_outbound_identity(c)) {
                c.close_after_flush = true; // close_notify, then reconnect after the backoff
                flush_network(c);
                finish_close(c);
                return;
            }
            c.opened = true;
            if (_protocols[c.listener]->on_open(c.ctx) == admission::refuse) {
                KEYRAIL_LOG(info, "engine", "shard %zu: %s: refused by the protocol", _index,
                            c.remote);
                c.close_after_flush = true;
            } else if (_draining) {
                c.close_after_flush = true;
            }
        }
    }
    if (c.state == conn_state::open && !c.close_after_flush) {
        if (!process_input(c)) {
            return;
        }
    }
    if (!encrypt_output(c)) {
        return;
    }
    flush_network(c);
    if (c.close_after_flush) {
        finish_close(c);
        return;
    }
    arm_recv(c);
}

bool shard::process_input(connection& c) noexcept {
    const std::size_t in_cap = _config.input_buffer_bytes;
    protocol& proto = *_protocols[c.listener];
    for (;;) {
        while (!c.peer_closed && c.in_len < in_cap) {
            std::size_t got = 0;
            const auto s = c.tls.read({c.in + c.in_len, in_cap - c.in_len}, got);
            if (s == tls_session::status::done) {
                c.in_len += got;
                continue;
            }
            if (s == tls_session::status::closed) {
                c.peer_closed = true;
            } else if (s == tls_session::status::failed) {
                KEYRAIL_LOG(info, "engine", "shard %zu: %s: TLS error: %s", _index, c.remote,
                            c.tls.refusal_detail());
                abort_close(c);
                return false;
            }
            break;
        }
        if (c.in_len == 0 || c.parked) {
            break;
        }
        if (c.out_len > 0) {
            // Earlier output is still waiting for room in TLS: hold further requests.
            if (!encrypt_output(c)) {
                return false;
            }
            if (c.out_len > 0) {
                break;
            }
        }
        output out({c.out, _config.output_buffer_bytes}, c.out_len);
        const handler_result r = proto.on_data(c.ctx, {c.in, c.in_len}, out);
        if (out.overflowed()) {
            KEYRAIL_LOG(warn, "engine",
                        "shard %zu: %s: response over the %zu-byte output limit, closing",
                        _index, c.remote, _config.output_buffer_bytes);
            bump(counters.limit_closes);
            abort_close(c);
            return false;
        }
        KEYRAIL_ASSERT(r.consumed_bytes <= c.in_len, "handler consumed %zu of %zu",
                       r.consumed_bytes, c.in_len);
        if (r.consumed_bytes == 0 && r.then == after_flush::park) {
            // The handler will answer this request later: on the wake it is offered again
            // (on_wake, then on_data with the same input), so nothing of it is lost.
            c.parked = true;
            c.parked_since_ns = _now_ns;
            break;
        }
        if (r.consumed_bytes == 0) {
            if (c.in_len == in_cap) {
                KEYRAIL_LOG(warn, "engine",
                            "shard %zu: %s: request over the %zu-byte input limit, closing",
                            _index, c.remote, in_cap);
                bump(counters.limit_closes);
                c.close_after_flush = true;
            }
            break;
        }
        c.in_len -= r.consumed_bytes;
        std::memmove(c.in, c.in + r.consumed_bytes, c.in_len);
        // What is left belongs to the next request, which started arriving by now.
        c.request_started_ns = c.in_len > 0 ? _now_ns : 0;
        if (r.then == after_flush::close) {
            c.close_after_flush = true;
            break;
        }
        if (r.then == after_flush::park) {
            c.parked = true;
            c.parked_since_ns = _now_ns;
            break;
        }
    }
    if (c.in_len == 0) {
        c.request_started_ns = 0;
    } else if (c.request_started_ns == 0) {
        c.request_started_ns = _now_ns;
    }
    if (c.peer_closed) {
        c.close_after_flush = true;
    }
    if (_draining && c.in_len == 0 && c.out_len == 0 && !c.parked) {
        c.close_after_flush = true; // no request in flight: the drain closes it
    }
    return true;
}

bool shard::unauthenticated_log_allowed() noexcept {
    // At most unauth_lines_per_s lines a second; the count of the rest is logged once the
    // next second starts, so an attack still shows in the log, as one line.
    constexpr std::uint32_t unauth_lines_per_s = 20;
    constexpr std::uint64_t window_ns = 1'000'000'000;
    const std::uint64_t now = monotonic_ns();
    if (now - _unauth_log_window_ns >= window_ns) {
        if (_unauth_suppressed > 0) {
            KEYRAIL_LOG(warn, "engine",
                        "shard %zu: %llu more refused or abandoned handshakes not logged",
                        _index, static_cast<unsigned long long>(_unauth_suppressed));
        }
        _unauth_log_window_ns = now;
        _unauth_logged = 0;
        _unauth_suppressed = 0;
    }
    if (_unauth_logged < unauth_lines_per_s) {
        ++_unauth_logged;
        return true;
    }
    ++_unauth_suppressed;
    return false;
}

bool shard::encrypt_output(connection& c) noexcept {
    while (c.out_written < c.out_len) {
        std::size_t wrote = 0;
        const auto s = c.tls.write({c.out + c.out_written, c.out_len - c.out_written}, wrote);
        if (s == tls_session::status::done) {
            c.out_written += wrote;
            continue;
        }
        if (s == tls_session::status::want_io) {
            break; // the pair is full; the send completion brings us back
        }
        KEYRAIL_LOG(info, "engine", "shard %zu: %s: TLS write error: %s", _index, c.remote,
                    c.tls.refusal_detail());
        abort_close(c);
        return false;
    }
    if (c.out_written == c.out_len) {
        // The plaintext may be key material (an ETSI 014 key container): once TLS holds its
        // ciphertext, nothing of it stays in the buffer.
        secure_wipe(c.out, c.out_len);
        c.out_len = 0;
        c.out_written = 0;
    }
    return true;
}

void shard::flush_network(connection& c) noexcept {
    if (c.send_inflight || c.state == conn_state::closing) {
        return;
    }
    const std::size_t n = c.tls.drain({c.tx, _config.socket_buffer_bytes});
    if (n == 0) {
        return;
    }
    c.tx_len = n;
    c.tx_sent = 0;
    submit_send(c);
}

void shard::submit_send(connection& c) noexcept {
    const std::size_t bytes = c.tx_len - c.tx_sent;
    const char* from = c.tx + c.tx_sent;
    check_sqe_buffer(from, bytes);
    c.send_deadline_ns = _now_ns + to_ns(_config.send_timeout); // the sweep enforces it
    const std::uint32_t slot = c.ctx._id.slot;
    io_uring_sqe* s = sqe();
    io_uring_prep_send(s, c.fd, from, bytes, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, tag(static_cast<std::uint8_t>(op::send), slot, c.generation));
    c.inflight_count = static_cast<std::uint8_t>(c.inflight_count + 1);
    c.send_inflight = true;
    if (_hooks) {
        _sent_since_barrier.emplace_back(slot, c.generation);
    }
}

wait_kind shard::wanted_wait(const connection& c) noexcept {
    if (c.state == conn_state::handshaking) {
        return wait_kind::handshake;
    }
    if (c.parked) {
        return wait_kind::parked;
    }
    return c.in_len > 0 ? wait_kind::request : wait_kind::idle;
}

void shard::refresh_recv_deadline(connection& c) noexcept {
    // Handshake, request and park deadlines hang on fixed instants: recomputing them never
    // extends them. An idle one counts from when the connection went idle: only a change of
    // kind restarts it.
    if (wanted_wait(c) != c.recv_wait || c.recv_wait != wait_kind::idle) {
        set_recv_deadline(c);
    }
}

void shard::set_recv_deadline(connection& c) noexcept {
    c.recv_wait = wanted_wait(c);
    switch (c.recv_wait) {
    case wait_kind::handshake:
        c.recv_deadline_ns = c.handshake_deadline_ns;
        break;
    case wait_kind::parked:
        // The protocol's own deadline answers a parked request; this only bounds a bug.
        c.recv_deadline_ns = c.parked_since_ns + to_ns(_config.park_timeout);
        break;
    case wait_kind::request:
        c.recv_deadline_ns = c.request_started_ns + to_ns(_config.request_timeout);
        break;
    case wait_kind::idle:
        c.recv_deadline_ns = _now_ns + to_ns(_config.idle_timeout);
        break;
    }
}

void shard::arm_recv(connection& c) noexcept {
    if (c.recv_inflight && (c.state == conn_state::open || c.state == conn_state::handshaking)) {
        // Its wait may have changed since the recv was armed (handshake done, parked or woken,
        // a pipelined request consumed): the recv stays, under the deadline of the wait now.
        refresh_recv_deadline(c);
        return;
    }
    if (c.recv_inflight || c.peer_closed || c.close_after_flush || c.state == conn_state::closing) {
        return;
    }
    if (c.state == conn_state::open && c.in_len == _config.input_buffer_bytes) {
        return; // waiting for output room before the handler takes more
    }
    const std::size_t space = std::min(c.tls.feed_space(), _config.socket_buffer_bytes);
    if (space == 0) {
        return; // TLS holds undecrypted bytes; a send completion or the handler frees room
    }
    set_recv_deadline(c);
    if (c.recv_deadline_ns <= _now_ns) {
        KEYRAIL_LOG(info, "engine", "shard %zu: %s: %s timeout, closing", _index, c.remote,
                    wait_name(c.recv_wait));
        bump(counters.timeouts);
        abort_close(c);
        return;
    }
    check_sqe_buffer(c.rx, space);
    const std::uint32_t slot = c.ctx._id.slot;
    io_uring_sqe* s = sqe();
    io_uring_prep_recv(s, c.fd, c.rx, space, 0);
    io_uring_sqe_set_data64(s, tag(static_cast<std::uint8_t>(op::recv), slot, c.generation));
    c.inflight_count = static_cast<std::uint8_t>(c.inflight_count + 1);
    c.recv_inflight = true;
}

void shard::arm_sweep() noexcept {
    set_timespec(_sweep_ts, _now_ns + _sweep_period_ns);
    check_sqe_buffer(&_sweep_ts, sizeof _sweep_ts);
    io_uring_sqe* s = sqe();
    io_uring_prep_timeout(s, &_sweep_ts, 0, IORING_TIMEOUT_ABS);
    io_uring_sqe_set_data64(s, tag(static_cast<std::uint8_t>(op::sweep), 0, 0));
}

void shard::sweep() noexcept {
    for (std::uint32_t i = 0; i < _connection_count; ++i) {
        connection& c = _connections[i];
        if (c.state != conn_state::handshaking && c.state != conn_state::open) {
            continue; // free, connecting (its own linked timeout), or already closing
        }
        const char* expired = nullptr;
        if (c.recv_inflight) {
            refresh_recv_deadline(c);
            if (_now_ns >= c.recv_deadline_ns) {
                expired = wait_name(c.recv_wait);
            }
        }
        // With no recv in flight (a send holds TLS, or the input is full) the handshake and
        // park deadlines still hold.
        if (expired == nullptr && c.state == conn_state::handshaking &&
            _now_ns >= c.handshake_deadline_ns) {
            expired = wait_name(wait_kind::handshake);
        }
        if (expired == nullptr && c.parked &&
            _now_ns >= c.parked_since_ns + to_ns(_config.park_timeout)) {
            expired = wait_name(wait_kind::parked);
        }
        if (expired != nullptr) {
            KEYRAIL_LOG(info, "engine", "shard %zu: %s: %s timeout, closing", _index, c.remote,
                        expired);
            bump(counters.timeouts);
            abort_close(c);
            continue;
        }
        if (c.send_inflight && _now_ns >= c.send_deadline_ns) {
            KEYRAIL_LOG(info, "engine", "shard %zu: %s: send timeout (client not reading), closing",
                        _index, c.remote);
            bump(counters.timeouts);
            abort_close(c);
        }
    }
}

void shard::finish_close(connection& c) noexcept {
    if (c.out_len > 0 || c.send_inflight || c.tls.drain_pending() > 0) {
        return; // the send completion brings us back
    }
    if (c.state == conn_state::open && !c.shutdown_sent && !c.handshake_failed) {
        c.tls.shutdown();
        c.shutdown_sent = true;
        flush_network(c);
        if (c.send_inflight) {
            return;
        }
    }
    abort_close(c);
}

void shard::abort_close(connection& c) noexcept {
    if (c.state == conn_state::closing || c.state == conn_state::free) {
        return;
    }
    if (c.state == conn_state::connecting) {
        // shutdown(2) does not reliably end a connect in flight; cancel it by its tag.
        io_uring_sqe* s = sqe();
        io_uring_prep_cancel64(s, tag(static_cast<std::uint8_t>(op::connect), c.ctx._id.slot,
                                      c.generation), 0);
        io_uring_sqe_set_data64(s, tag(static_cast<std::uint8_t>(op::cancel), 0, 0));
    }
    c.state = conn_state::closing;
    // Completes any recv or send in flight (with 0 or an error); the fd stays open until
    // every CQE arrived, so no later connection can inherit an operation.
    (void)::shutdown(c.fd, SHUT_RDWR);
    maybe_release(c);
}

void shard::maybe_release(connection& c) noexcept {
    if (c.inflight_count > 0) {
        return;
    }
    if (c.opened) {
        _protocols[c.listener]->on_close(c.ctx);
    }
    ::close(c.fd);
    c.tls.reset();
    c.peer.clear();
    const std::uint32_t slot = c.ctx._id.slot;
    c.fd = -1;
    c.state = conn_state::free;
    c.recv_inflight = false;
    c.send_inflight = false;
    c.opened = false;
    c.close_after_flush = false;
    c.handshake_failed = false;
    c.shutdown_sent = false;
    c.peer_closed = false;
    c.parked = false;
    c.output_overflowed = false;
    c.tx_len = 0;
    c.tx_sent = 0;
    c.in_len = 0;
    secure_wipe(c.out, c.out_len); // unsent plaintext of a closed connection
    c.out_len = 0;
    c.out_written = 0;
    c.request_started_ns = 0;
    ++c.generation;
    --_open_count;
    if (c.outbound != detail::no_slot) {
        // The link keeps its slot and dials again after the backoff.
        detail::outbound_link& link = _outbound[c.outbound];
        if (link.up) {
            link.up = false;
            drop(counters.outbound_open);
            KEYRAIL_LOG(info, "engine", "shard %zu: outbound %s: closed", _index, link.remote);
        }
        schedule_retry(link);
        return;
    }
    c.next_free = _free_head;
    _free_head = slot;
    drop(counters.open_connections);
}

void shard::stop_everything() noexcept {
    if (_ring_ready) {
        io_uring_queue_exit(&_ring); // cancels whatever is still in flight
        _ring_ready = false;
    }
    for (std::uint32_t i = 0; _connections && i < _connection_count; ++i) {
        connection& c = _connections[i];
        if (c.state != conn_state::free) {
            if (c.opened && !_protocols.empty()) {
                _protocols[c.listener]->on_close(c.ctx);
                c.opened = false;
            }
            ::close(c.fd);
            c.fd = -1;
            c.tls.reset();
            c.state = conn_state::free;
        }
    }
    for (int& fd : _listen_fds) {
        if (fd >= 0) {
            ::close(fd);
            fd = -1;
        }
    }
    _protocols.clear();
    _hooks.reset();
}

// ---- Timers ----

result<timer_id> shard::add_timer(std::uint64_t first_ns, std::uint64_t period_ns,
                                  timer_handler& handler, std::uint64_t arg) noexcept {
    if (_timer_free_head == _timer_count) {
        return fail(errc::timer_table_full);
    }
    const std::uint32_t slot = _timer_free_head;
    detail::timer_slot& t = _timers[slot];
    KEYRAIL_ASSERT(!t.active && !t.inflight, "timer slot %u on the free list is busy", slot);
    _timer_free_head = t.next_free;
    t.handler = &handler;
    t.arg = arg;
    t.period_ns = period_ns;
    t.deadline_ns = _now_ns + first_ns;
    t.active = true;
    arm_timer(slot);
    return timer_id{slot, t.generation};
}

bool shard::cancel_timer(timer_id id) noexcept {
    if (id.slot >= _timer_count) {
        return false;
    }
    detail::timer_slot& t = _timers[id.slot];
    if (!t.active || t.generation != id.generation) {
        return false;
    }
    t.active = false;
    ++t.generation;
    if (t.inflight) {
        // The slot stays taken until the timeout's CQE (-ECANCELED, or -ETIME if it raced).
        io_uring_sqe* s = sqe();
        io_uring_prep_timeout_remove(
            s, tag(static_cast<std::uint8_t>(op::timer), id.slot, id.generation), 0);
        io_uring_sqe_set_data64(s, tag(static_cast<std::uint8_t>(op::cancel), 0, 0));
    } else {
        free_timer(id.slot); // cancelled from its own callback
    }
    return true;
}

void shard::arm_timer(std::uint32_t slot) noexcept {
    detail::timer_slot& t = _timers[slot];
    set_timespec(t.ts, t.deadline_ns);
    check_sqe_buffer(&t.ts, sizeof t.ts);
    io_uring_sqe* s = sqe();
    // Absolute CLOCK_MONOTONIC deadlines: a periodic timer does not drift by its callbacks.
    io_uring_prep_timeout(s, &t.ts, 0, IORING_TIMEOUT_ABS);
    io_uring_sqe_set_data64(s, tag(static_cast<std::uint8_t>(op::timer), slot, t.generation));
    t.inflight = true;
}

void shard::free_timer(std::uint32_t slot) noexcept {
    detail::timer_slot& t = _timers[slot];
    t.handler = nullptr;
    t.arg = 0;
    t.next_free = _timer_free_head;
    _timer_free_head = slot;
}

void shard::on_timer_cqe(std::uint32_t slot, std::uint32_t generation, int res) noexcept {
    KEYRAIL_ASSERT(slot < _timer_count, "timer slot %u", slot);
    detail::timer_slot& t = _timers[slot];
    KEYRAIL_ASSERT(t.inflight, "timer slot %u: CQE with nothing in flight", slot);
    t.inflight = false;
    if (!t.active) {
        free_timer(slot); // cancelled; this is the last CQE of its occupant
        return;
    }
    KEYRAIL_ASSERT(t.generation == generation, "timer slot %u generation %u, CQE for %u", slot,
                   t.generation, generation);
    if (res != -ETIME && res != 0) {
        const std::error_code ec(-res, std::system_category());
        KEYRAIL_LOG(warn, "engine", "shard %zu: timer %u: %s; firing it anyway", _index, slot,
                    ec.message().c_str());
    }
    bump(counters.timers_fired);
    const timer_id id{slot, generation};
    timer_handler* handler = t.handler;
    const std::uint64_t arg = t.arg;
    if (t.period_ns == 0) {
        t.active = false;
        ++t.generation;
        free_timer(slot);
        handler->on_timer(*this, id, arg);
        return;
    }
    t.deadline_ns += t.period_ns;
    if (t.deadline_ns <= _now_ns) {
        t.deadline_ns = _now_ns + t.period_ns; // we fell behind: skip the missed ticks
    }
    handler->on_timer(*this, id, arg);
    // The callback may have cancelled it (and the slot may hold a new timer by now).
    if (t.active && t.generation == generation) {
        arm_timer(slot);
    }
}

// ---- Deferred replies and sends ----

connection* shard::lookup(connection_id id) noexcept {
    if (id.slot >= _connection_count) {
        return nullptr;
    }
    connection& c = _connections[id.slot];
    if (c.generation != id.generation || c.state == conn_state::free) {
        return nullptr;
    }
    return &c;
}

void shard::queue_ready(connection& c) noexcept {
    if (c.ready_queued) {
        return;
    }
    c.ready_queued = true;
    c.next_ready = detail::no_slot;
    const std::uint32_t slot = static_cast<std::uint32_t>(&c - _connections.get());
    if (_ready_tail == detail::no_slot) {
        _ready_head = slot;
    } else {
        _connections[_ready_tail].next_ready = slot;
    }
    _ready_tail = slot;
}

void shard::run_ready() noexcept {
    while (_ready_head != detail::no_slot) {
        connection& c = _connections[_ready_head];
        _ready_head = c.next_ready;
        if (_ready_head == detail::no_slot) {
            _ready_tail = detail::no_slot;
        }
        c.ready_queued = false;
        c.next_ready = detail::no_slot;
        if (c.state == conn_state::free || c.state == conn_state::closing) {
            continue; // closed since it was queued
        }
        if (c.output_overflowed) {
            KEYRAIL_LOG(warn, "engine",
                        "shard %zu: %s: deferred response over the %zu-byte output limit, closing",
                        _index, c.remote, _config.output_buffer_bytes);
            bump(counters.limit_closes);
            abort_close(c);
            continue;
        }
        pump(c);
    }
}

bool shard::wake(connection_id id, std::uint64_t arg) noexcept {
    connection* found = lookup(id);
    if (found == nullptr) {
        return false;
    }
    connection& c = *found;
    if (c.state != conn_state::open || !c.parked || c.output_overflowed) {
        return false;
    }
    c.parked = false;
    bump(counters.wakes);
    output out({c.out, _config.output_buffer_bytes}, c.out_len);
    const after_flush then = _protocols[c.listener]->on_wake(c.ctx, arg, out);
    if (out.overflowed()) {
        c.output_overflowed = true; // closed from the ready list, outside the caller's stack
    } else if (then == after_flush::park) {
        c.parked = true;
        c.parked_since_ns = _now_ns;
    } else if (then == after_flush::close) {
        c.close_after_flush = true;
    }
    // A pipelined request that waited behind the parked one starts its clock now.
    c.request_started_ns = c.in_len > 0 ? _now_ns : 0;
    queue_ready(c);
    return true;
}

result<void> shard::send(connection_id id, std::span<const char> bytes) noexcept {
    connection* found = lookup(id);
    if (found == nullptr || found->state != conn_state::open || found->close_after_flush ||
        found->output_overflowed) {
        return fail(errc::no_such_connection);
    }
    connection& c = *found;
    if (bytes.size() > _config.output_buffer_bytes - c.out_len) {
        return fail(errc::output_full);
    }
    std::memcpy(c.out + c.out_len, bytes.data(), bytes.size());
    c.out_len += bytes.size();
    queue_ready(c);
    return {};
}

// ---- Outbound connections ----

result<connection_id> shard::outbound_connection(std::size_t index) const noexcept {
    for (const auto& link : _outbound) {
        if (link.index != index) {
            continue;
        }
        if (!link.up) {
            return fail(errc::not_connected);
        }
        const connection& c = _connections[link.slot];
        return connection_id{link.slot, c.generation};
    }
    return fail(errc::not_connected);
}

void shard::on_timer(shard_context& self, timer_id id, std::uint64_t arg) noexcept {
    (void)self;
    (void)id;
    KEYRAIL_ASSERT(arg < _outbound.size(), "reconnect timer for link %llu",
                   static_cast<unsigned long long>(arg));
    _outbound[arg].retry_armed = false;
    start_connect(static_cast<std::size_t>(arg));
}

void shard::schedule_retry(detail::outbound_link& link) noexcept {
    if (_draining || _exit) {
        return;
    }
    // Uniform in [backoff/2, backoff]: links that failed together do not retry together.
    const std::uint64_t half = link.backoff_ns / 2;
    const std::uint64_t delay_ns = half + splitmix64(_jitter_state) % (half + 1);
    link.backoff_ns = std::min(link.backoff_ns * 2, to_ns(link.config->backoff_max));
    const std::size_t link_index = static_cast<std::size_t>(&link - _outbound.data());
    auto armed = add_timer(delay_ns, 0, *this, link_index);
    // One timer slot per link is reserved on top of timers_per_shard_max.
    KEYRAIL_ASSERT(armed.has_value(), "no timer for outbound %zu", link.index);
    link.retry = *armed;
    link.retry_armed = true;
    KEYRAIL_LOG(debug, "engine", "shard %zu: outbound %s: reconnecting in %llu ms", _index,
                link.remote, static_cast<unsigned long long>(delay_ns / 1'000'000u));
}

void shard::start_connect(std::size_t link_index) noexcept {
    detail::outbound_link& link = _outbound[link_index];
    connection& c = _connections[link.slot];
    KEYRAIL_ASSERT(c.state == conn_state::free, "outbound %zu: slot busy", link.index);
    if (_draining || _exit) {
        return;
    }
    const int fd = ::socket(link.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        const std::error_code ec = errno_error(errno);
        KEYRAIL_LOG(warn, "engine", "shard %zu: outbound %s: socket: %s", _index, link.remote,
                    ec.message().c_str());
        bump(counters.outbound_failures);
        schedule_retry(link);
        return;
    }
    const int one = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ++_open_count;
    c.fd = fd;
    c.listener = static_cast<std::uint32_t>(link.protocol_index);
    c.state = conn_state::connecting;
    std::snprintf(c.remote, sizeof c.remote, "%s", link.remote);
    c.ctx = connection_context{};
    c.ctx._shard = this;
    c.ctx._peer = &c.peer;
    c.ctx._tls = &c.tls;
    c.ctx._remote = c.remote;
    c.ctx._id = connection_id{link.slot, c.generation};
    c.ctx._listener_index =
        link.config->make_protocol ? connection_context::no_index : link.protocol_index;
    c.ctx._outbound_index = link.index;

    set_timespec(link.connect_ts, to_ns(link.config->connect_timeout));
    check_sqe_buffer(&link.address, link.address_bytes);
    reserve_sqes(2);
    io_uring_sqe* s = sqe();
    io_uring_prep_connect(s, fd, reinterpret_cast<const sockaddr*>(&link.address),
                          link.address_bytes);
    io_uring_sqe_set_flags(s, IOSQE_IO_LINK);
    io_uring_sqe_set_data64(s, tag(static_cast<std::uint8_t>(op::connect), link.slot,
                                   c.generation));
    io_uring_sqe* t = sqe();
    io_uring_prep_link_timeout(t, &link.connect_ts, 0);
    io_uring_sqe_set_data64(t, tag(static_cast<std::uint8_t>(op::connect_timeout), link.slot,
                                   c.generation));
    c.inflight_count = static_cast<std::uint8_t>(c.inflight_count + 2);
}

void shard::on_connect(connection& c, int res) noexcept {
    if (c.state == conn_state::closing) {
        maybe_release(c);
        return;
    }
    detail::outbound_link& link = _outbound[c.outbound];
    if (res < 0) {
        const std::error_code ec(-res, std::system_category());
        KEYRAIL_LOG(info, "engine", "shard %zu: outbound %s: connect: %s", _index, link.remote,
                    res == -ECANCELED ? "timeout" : ec.message().c_str());
        bump(counters.outbound_failures);
        abort_close(c);
        return;
    }
    auto opened = c.tls.open_client(link.tls.native(), _config.tls_pair_bytes);
    if (!opened) {
        KEYRAIL_LOG(warn, "engine", "shard %zu: outbound %s: cannot start TLS: %s", _index,
                    link.remote, opened.error().message().c_str());
        bump(counters.outbound_failures);
        abort_close(c);
        return;
    }
    c.state = conn_state::handshaking;
    c.handshake_deadline_ns = _now_ns + to_ns(_config.handshake_timeout);
    pump(c);
}

bool shard::check_outbound_identity(connection& c) noexcept {
    detail::outbound_link& link = _outbound[c.outbound];
    const std::string& expected = link.config->tls.expected_peer_uri;
    bool match = expected.empty();
    for (const auto& uri : c.peer.san_uris) {
        match = match || uri == expected;
    }
    if (!match) {
        KEYRAIL_LOG(warn, "engine",
                    "shard %zu: outbound %s: peer refused: identity mismatch (expected '%s', "
                    "presented '%s', CN '%s')",
                    _index, link.remote, expected.c_str(),
                    c.peer.san_uris.empty() ? "" : c.peer.san_uris[0].c_str(),
                    c.peer.subject_cn.c_str());
        bump(counters.outbound_failures);
        bump(counters.outbound_refused);
        return false;
    }
    link.up = true;
    link.backoff_ns = to_ns(link.config->backoff_min);
    bump(counters.outbound_connected);
    bump(counters.outbound_open);
    KEYRAIL_LOG(info, "engine", "shard %zu: outbound %s: connected to '%s'", _index, link.remote,
                c.peer.san_uris.empty() ? c.peer.subject_cn.c_str() : c.peer.san_uris[0].c_str());
    return true;
}

} // namespace keyrail::engine
