#include "engine/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <openssl/rand.h>

#include "engine/assert.h"
#include "engine/errc.h"
#include "engine/limits.h"
#include "engine/log.h"
#include "engine/secure.h"
#include "engine/shard.h"

namespace keyrail::engine {
namespace {

[[nodiscard]] std::uint64_t monotonic_ms() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000u +
           static_cast<std::uint64_t>(ts.tv_nsec) / 1'000'000u;
}

// A listening socket in the SO_REUSEPORT group of address:port. Returns the fd.
[[nodiscard]] result<int> listen_socket(const std::string& address, std::uint16_t port,
                                        int backlog) noexcept {
    sockaddr_storage addr{};
    socklen_t len = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
    if (::inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        len = sizeof *v4;
    } else if (::inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        len = sizeof *v6;
    } else {
        KEYRAIL_LOG(error, "engine", "listen address '%s' is not an IP literal", address.c_str());
        return fail(errc::bad_config);
    }
    const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return fail(errno_error(errno));
    }
    const int one = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 ||
        ::listen(fd, backlog) != 0) {
        const int err = errno;
        ::close(fd);
        return fail(errno_error(err));
    }
    return fd;
}

[[nodiscard]] result<std::uint16_t> bound_port(int fd) noexcept {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        return fail(errno_error(errno));
    }
    if (addr.ss_family == AF_INET) {
        return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
    }
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
}

void drain_eventfd(int fd) noexcept {
    std::uint64_t value = 0;
    (void)!::read(fd, &value, sizeof value);
}

} // namespace

server::server(server_config config) noexcept : _config(std::move(config)) {}

server::~server() {
    _shards.clear();
    if (_stop_fd >= 0) {
        ::close(_stop_fd);
    }
    if (_supervisor_fd >= 0) {
        ::close(_supervisor_fd);
    }
}

result<std::unique_ptr<server>> server::create(server_config config) noexcept {
    if ((config.listeners.empty() && config.outbound.empty()) ||
        config.connections_per_shard_max == 0 ||
        config.connections_per_shard_max > limits::connections_per_shard_max ||
        config.input_buffer_bytes == 0 || config.output_buffer_bytes == 0 ||
        config.socket_buffer_bytes == 0 || config.tls_pair_bytes < limits::tls_pair_bytes_min ||
        config.io_uring_entries < 8 ||
        config.timers_per_shard_max + config.outbound.size() > limits::timers_per_shard_max) {
        KEYRAIL_LOG(error, "engine", "server config out of range");
        return fail(errc::bad_config);
    }
    for (const auto& l : config.listeners) {
        if (!l.make_protocol) {
            KEYRAIL_LOG(error, "engine", "listener %s:%u has no protocol", l.address.c_str(),
                        l.port);
            return fail(errc::bad_config);
        }
    }
    for (const auto& o : config.outbound) {
        if (!o.make_protocol && o.protocol_listener >= config.listeners.size()) {
            KEYRAIL_LOG(error, "engine", "outbound %s:%u has no protocol", o.address.c_str(),
                        o.port);
            return fail(errc::bad_config);
        }
        if (o.port == 0 || o.backoff_min.count() <= 0 || o.backoff_max < o.backoff_min ||
            o.connect_timeout.count() <= 0) {
            KEYRAIL_LOG(error, "engine", "outbound %s:%u: port, backoff or timeout out of range",
                        o.address.c_str(), o.port);
            return fail(errc::bad_config);
        }
    }
    auto s = std::unique_ptr<server>(new server(std::move(config)));
    auto cores = discover_cores();
    if (!cores) {
        return fail(cores.error());
    }
    s->_cores = std::move(*cores);
    s->_shard_count = s->_config.shard_count == 0 ? s->_cores.size() : s->_config.shard_count;
    if (s->_shard_count > limits::shards_max) {
        KEYRAIL_LOG(error, "engine", "%zu shards, at most %zu", s->_shard_count,
                    limits::shards_max);
        return fail(errc::bad_config);
    }
    if (s->_shard_count > s->_cores.size()) {
        KEYRAIL_LOG(warn, "engine", "%zu shards on %zu cores: some cores run two", s->_shard_count,
                    s->_cores.size());
    }
    auto matrix = ring_matrix<shard_message>::create(s->_shard_count);
    if (!matrix) {
        return fail(matrix.error());
    }
    s->_matrix = std::move(*matrix);
    s->_stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->_supervisor_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->_stop_fd < 0 || s->_supervisor_fd < 0) {
        return fail(errno_error(errno));
    }

    // One ticket key per listener, shared by its shards, so a session resumes wherever the
    // kernel sends the next connection on that port, and never on another port, whose CA and
    // role may differ (SAE, peer, admin). It lives only inside the SSL_CTXs afterwards.
    tls_ticket_keys ticket_keys{};

    const std::size_t listener_count = s->_config.listeners.size();
    std::vector<std::vector<int>> fds(s->_shard_count);
    std::vector<std::vector<tls_context>> contexts(s->_shard_count);
    auto close_all = [&fds] {
        for (auto& per_shard : fds) {
            for (int fd : per_shard) {
                ::close(fd);
            }
        }
    };
    for (std::size_t li = 0; li < listener_count; ++li) {
        const listener_config& l = s->_config.listeners[li];
        std::uint16_t port = l.port;
        if (l.only_shard && *l.only_shard >= s->_shard_count) {
            KEYRAIL_LOG(error, "engine", "listener %s:%u: shard %zu of %zu", l.address.c_str(),
                        l.port, *l.only_shard, s->_shard_count);
            close_all();
            return fail(errc::bad_config);
        }
        if (RAND_bytes(ticket_keys.data(), static_cast<int>(ticket_keys.size())) != 1) {
            close_all();
            return fail(errc::tls_config);
        }
        for (std::size_t shard_index = 0; shard_index < s->_shard_count; ++shard_index) {
            auto ctx = tls_context::create(l.tls, ticket_keys);
            if (!ctx) {
                secure_wipe(ticket_keys.data(), ticket_keys.size());
                close_all();
                return fail(ctx.error());
            }
            contexts[shard_index].push_back(std::move(*ctx));
            if (l.only_shard && *l.only_shard != shard_index) {
                fds[shard_index].push_back(-1); // this shard does not listen here
                continue;
            }
            // Port 0: the first shard's socket picks the port, the others join its group.
            auto fd = listen_socket(l.address, port, s->_config.listen_backlog);
            if (!fd) {
                KEYRAIL_LOG(error, "engine", "listen on %s:%u: %s", l.address.c_str(), port,
                            fd.error().message().c_str());
                secure_wipe(ticket_keys.data(), ticket_keys.size());
                close_all();
                return fail(fd.error());
            }
            fds[shard_index].push_back(*fd);
            if (port == 0) {
                auto p = bound_port(*fd);
                if (!p) {
                    secure_wipe(ticket_keys.data(), ticket_keys.size());
                    close_all();
                    return fail(p.error());
                }
                port = *p;
            }
        }
        s->_ports.push_back(port);
        KEYRAIL_LOG(info, "engine", "listening on %s:%u with %zu shards", l.address.c_str(), port,
                    l.only_shard ? std::size_t{1} : s->_shard_count);
    }
    secure_wipe(ticket_keys.data(), ticket_keys.size());

    // Outbound links: client contexts and addresses now, so a bad file fails create().
    std::vector<std::vector<detail::outbound_link>> links(s->_shard_count);
    std::vector<std::size_t> slots_taken(s->_shard_count, 0);
    for (std::size_t oi = 0; oi < s->_config.outbound.size(); ++oi) {
        const outbound_config& o = s->_config.outbound[oi];
        if (o.shard_index >= s->_shard_count ||
            ++slots_taken[o.shard_index] >= s->_config.connections_per_shard_max) {
            KEYRAIL_LOG(error, "engine", "outbound %s:%u: shard %zu out of range or full",
                        o.address.c_str(), o.port, o.shard_index);
            close_all();
            return fail(errc::bad_config);
        }
        detail::outbound_link link;
        link.config = &o;
        link.index = oi;
        auto* v4 = reinterpret_cast<sockaddr_in*>(&link.address);
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&link.address);
        if (::inet_pton(AF_INET, o.address.c_str(), &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons(o.port);
            link.address_bytes = sizeof *v4;
            std::snprintf(link.remote, sizeof link.remote, "%s:%u", o.address.c_str(), o.port);
        } else if (::inet_pton(AF_INET6, o.address.c_str(), &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(o.port);
            link.address_bytes = sizeof *v6;
            std::snprintf(link.remote, sizeof link.remote, "[%s]:%u", o.address.c_str(), o.port);
        } else {
            KEYRAIL_LOG(error, "engine", "outbound address '%s' is not an IP literal",
                        o.address.c_str());
            close_all();
            return fail(errc::bad_config);
        }
        auto ctx = tls_client_context::create(o.tls);
        if (!ctx) {
            close_all();
            return fail(ctx.error());
        }
        link.tls = std::move(*ctx);
        links[o.shard_index].push_back(std::move(link));
    }
    for (std::size_t i = 0; i < s->_shard_count; ++i) {
        s->_shards.push_back(std::make_unique<shard>(*s, i, std::move(fds[i]),
                                                     std::move(contexts[i]),
                                                     std::move(links[i])));
    }
    return s;
}

std::uint16_t server::port(std::size_t listener_index) const noexcept {
    KEYRAIL_ASSERT(listener_index < _ports.size(), "listener %zu of %zu", listener_index,
                   _ports.size());
    return _ports[listener_index];
}

void server::notify_supervisor() noexcept {
    const std::uint64_t one = 1;
    (void)!::write(_supervisor_fd, &one, sizeof one);
}

bool server::wait_supervisor(int timeout_ms) noexcept {
    pollfd p{_supervisor_fd, POLLIN, 0};
    const int rc = ::poll(&p, 1, timeout_ms);
    if (rc > 0) {
        drain_eventfd(_supervisor_fd);
        return true;
    }
    return false;
}

void server::request_stop() noexcept {
    // Only an atomic store and a write(2): safe in a signal handler.
    _stop_requested.store(true, std::memory_order_release);
    const std::uint64_t one = 1;
    (void)!::write(_stop_fd, &one, sizeof one);
}

server_stats server::stats() const noexcept {
    server_stats out;
    for (std::size_t i = 0; i < _shards.size(); ++i) {
        const server_stats one = shard_stats(i);
        out.accepted += one.accepted;
        out.handshakes += one.handshakes;
        out.resumed += one.resumed;
        for (std::size_t r = 0; r < tls_refusal_count; ++r) {
            out.refused[r] += one.refused[r];
        }
        out.timeouts += one.timeouts;
        out.limit_closes += one.limit_closes;
        out.messages_received += one.messages_received;
        out.open_connections += one.open_connections;
        out.timers_fired += one.timers_fired;
        out.wakes += one.wakes;
        out.outbound_connected += one.outbound_connected;
        out.outbound_failures += one.outbound_failures;
        out.outbound_refused += one.outbound_refused;
        out.outbound_open += one.outbound_open;
    }
    return out;
}

server_stats server::shard_stats(std::size_t shard_index) const noexcept {
    KEYRAIL_ASSERT(shard_index < _shards.size(), "shard %zu of %zu", shard_index, _shards.size());
    server_stats out;
    {
        const shard_counters& c = _shards[shard_index]->counters;
        out.accepted += c.accepted.load(std::memory_order_relaxed);
        out.handshakes += c.handshakes.load(std::memory_order_relaxed);
        out.resumed += c.resumed.load(std::memory_order_relaxed);
        for (std::size_t i = 0; i < tls_refusal_count; ++i) {
            out.refused[i] += c.refused[i].load(std::memory_order_relaxed);
        }
        out.timeouts += c.timeouts.load(std::memory_order_relaxed);
        out.limit_closes += c.limit_closes.load(std::memory_order_relaxed);
        out.messages_received += c.messages_received.load(std::memory_order_relaxed);
        out.open_connections += c.open_connections.load(std::memory_order_relaxed);
        out.timers_fired += c.timers_fired.load(std::memory_order_relaxed);
        out.wakes += c.wakes.load(std::memory_order_relaxed);
        out.outbound_connected += c.outbound_connected.load(std::memory_order_relaxed);
        out.outbound_failures += c.outbound_failures.load(std::memory_order_relaxed);
        out.outbound_refused += c.outbound_refused.load(std::memory_order_relaxed);
        out.outbound_open += c.outbound_open.load(std::memory_order_relaxed);
    }
    return out;
}

result<void> server::run() noexcept {
    if (_running.exchange(true, std::memory_order_acq_rel)) {
        return fail(errc::already_running);
    }
    // Signals: blocked here before the shard threads exist, so they inherit the mask and
    // only the signalfd sees SIGTERM and SIGINT.
    int signal_fd = -1;
    sigset_t old_mask;
    sigemptyset(&old_mask);
    if (_config.signals == stop_signals::handle) {
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        pthread_sigmask(SIG_BLOCK, &mask, &old_mask);
        signal_fd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (signal_fd < 0) {
            const int err = errno;
            pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
            return fail(errno_error(err));
        }
    }

    auto publish = [this](server_phase p) {
        // Pairs with the acquire load in shard::follow_phase.
        _phase.store(static_cast<int>(p), std::memory_order_release);
        for (std::size_t i = 0; i < _shard_count; ++i) {
            _matrix->doorbell_of(i).ring();
        }
    };
    // Waits until pred() holds for every shard or the deadline passes (0: none).
    auto wait_all = [this](auto pred, std::uint64_t deadline_ms) {
        for (;;) {
            bool all = true;
            for (const auto& s : _shards) {
                all = all && pred(*s);
            }
            if (all) {
                return true;
            }
            int timeout_ms = 1000;
            if (deadline_ms != 0) {
                const std::uint64_t now = monotonic_ms();
                if (now >= deadline_ms) {
                    return false;
                }
                timeout_ms = static_cast<int>(std::min<std::uint64_t>(deadline_ms - now, 1000));
            }
            (void)wait_supervisor(timeout_ms);
        }
    };

    std::vector<std::thread> threads;
    threads.reserve(_shard_count);
    for (auto& s : _shards) {
        threads.emplace_back([sh = s.get()] { sh->thread_main(); });
    }
    (void)wait_all(
        [](const shard& s) {
            // Pairs with the release stores in shard::thread_main.
            return s.started.load(std::memory_order_acquire) !=
                   static_cast<int>(shard::start_state::pending);
        },
        0);
    std::error_code start_error;
    for (const auto& s : _shards) {
        if (s->started.load(std::memory_order_acquire) ==
            static_cast<int>(shard::start_state::failed)) {
            start_error = s->start_error;
            KEYRAIL_LOG(error, "engine", "shard %zu failed to start: %s", s->shard_index(),
                        start_error.message().c_str());
            break;
        }
    }

    if (!start_error) {
        KEYRAIL_LOG(info, "engine", "%zu shards running", _shard_count);
        // Wait for SIGTERM/SIGINT or request_stop().
        for (;;) {
            if (_stop_requested.load(std::memory_order_acquire)) {
                break;
            }
            pollfd p[2] = {{_stop_fd, POLLIN, 0}, {signal_fd, POLLIN, 0}};
            const int rc = ::poll(p, signal_fd >= 0 ? 2 : 1, -1);
            if (rc > 0 && (p[1].revents & POLLIN) != 0) {
                signalfd_siginfo info{};
                if (::read(signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
                    KEYRAIL_LOG(info, "engine", "signal %u: draining", info.ssi_signo);
                    break;
                }
            }
            if (rc > 0 && (p[0].revents & POLLIN) != 0) {
                drain_eventfd(_stop_fd);
            }
        }
        KEYRAIL_LOG(info, "engine", "drain: no new connections, finishing in-flight requests");
        publish(server_phase::draining);
        const auto drain_ms = static_cast<std::uint64_t>(_config.drain_timeout.count());
        const bool clean = wait_all(
            [](const shard& s) { return s.drained.load(std::memory_order_acquire); },
            monotonic_ms() + drain_ms);
        if (!clean) {
            KEYRAIL_LOG(warn, "engine", "drain: timeout after %llu ms, closing the rest",
                        static_cast<unsigned long long>(drain_ms));
            publish(server_phase::force_close);
            (void)wait_all(
                [](const shard& s) { return s.drained.load(std::memory_order_acquire); }, 0);
        }
        publish(server_phase::shard_drain);
        (void)wait_all([](const shard& s) { return s.hooks_done.load(std::memory_order_acquire); },
                       0);
        if (_config.drain_hook) {
            _config.drain_hook();
        }
        KEYRAIL_LOG(info, "engine", "drain: done");
    }
    publish(server_phase::exit);
    for (auto& t : threads) {
        t.join();
    }
    if (signal_fd >= 0) {
        ::close(signal_fd);
        pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    }
    if (start_error) {
        return fail(start_error);
    }
    return {};
}

} // namespace keyrail::engine
