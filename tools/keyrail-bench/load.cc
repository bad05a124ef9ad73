#include "tools/keyrail-bench/load.h"

#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <latch>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include "engine/assert.h"
#include "tools/keyrail-bench/client_tls.h"
#include "tools/keyrail-bench/etsi.h"
#include "tools/keyrail-bench/http_response.h"
#include "tools/keyrail-bench/probe.h"

namespace keyrail::bench_client {
namespace {

constexpr std::int64_t never_ns = std::numeric_limits<std::int64_t>::max();
constexpr std::size_t recv_buffer_bytes = 64 * 1024;
constexpr std::size_t read_chunk_bytes = 16 * 1024;

std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::int64_t seconds_to_ns(double s) noexcept {
    if (!std::isfinite(s) || s * 1e9 >= 9e18) {
        return never_ns / 4; // far enough in the future, and safe to add to
    }
    return static_cast<std::int64_t>(s * 1e9);
}

enum class op_stage : std::uint8_t { first, second };
enum class outcome : std::uint8_t { success, http_error, invalid, mismatch, transport, timeout };

// One logical request; in paired mode it travels from the master connection to the slave's.
struct op {
    std::int64_t start_ns = 0; // latency origin: the intended (open) or actual (closed) send
    std::int64_t sent_ns = 0;  // when this stage was written; the per-request timeout
    op_stage stage = op_stage::first;
    std::uint32_t master_index = 0;
    key_set keys; // paired: what enc_keys returned (its capacity stays with the pooled op)
};
using op_ptr = std::unique_ptr<op>;

enum class conn_state : std::uint8_t { idle, connecting, handshaking, ready, closing };

enum class io_kind : std::uint64_t { connect = 1, recv = 2, send = 3 };
constexpr std::uint64_t user_data_ignored = 0;

std::uint64_t user_data(std::size_t index, io_kind kind) noexcept {
    return static_cast<std::uint64_t>(index) << 2 | static_cast<std::uint64_t>(kind);
}

// One keep-alive TLS connection. Lives on: one load thread.
struct connection {
    const endpoint* ep = nullptr;
    const resolved_address* address = nullptr;
    SSL_CTX* ctx = nullptr;
    bool is_master = true;
    std::size_t partner = 0; // paired: the slave connection of a master, and vice versa

    conn_state state = conn_state::idle;
    int fd = -1;
    SSL* ssl = nullptr;
    BIO* rbio = nullptr; // ciphertext from the network, owned by ssl
    BIO* wbio = nullptr; // ciphertext for the network, owned by ssl
    unsigned ops_busy = 0;
    bool recv_busy = false;
    bool send_busy = false;
    std::vector<char> rx;
    std::vector<char> tx;
    std::size_t tx_off = 0;
    std::size_t tx_len = 0;
    // Decrypted response bytes not yet parsed: [plain_off, plain_end) of plain, whose size is
    // its capacity (grown, never shrunk, so SSL_read needs no zero-filled room per call).
    std::string plain;
    std::size_t plain_off = 0;
    std::size_t plain_end = 0;
    std::deque<op_ptr> in_flight;  // written, waiting for their responses in order
    std::deque<op_ptr> waiting;    // paired dec_keys waiting for the connection to be ready
    std::string waiting_plain;     // their request bytes
    std::uint32_t logical = 0;     // master: requests issued here and not finished
    std::int64_t state_since_ns = 0;
    std::int64_t reconnect_at_ns = 0;
    unsigned failures_in_row = 0;
};

struct shared_state {
    std::latch start_latch;
    std::atomic<unsigned> done_count{0};
    explicit shared_state(std::ptrdiff_t threads) : start_latch(threads + 1) {}
};

// Live counters for the progress line. Relaxed: display only, nothing is published through them.
struct alignas(64) live_counters {
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> errors{0};
    std::atomic<std::uint64_t> keys{0};
};

struct thread_plan {
    unsigned index = 0;
    int cpu = -1;
    std::uint32_t connections_count = 1;
    std::uint64_t quota = 0;     // requests this thread may issue
    double rate_per_s = 0;       // open loop share
    double phase = 0;            // open loop: offset of this thread's schedule, in periods
};

class worker {
public:
    worker(const options& opts, const thread_plan& plan, shared_state& shared,
           SSL_CTX* master_ctx, SSL_CTX* slave_ctx, const resolved_address& master_address,
           const resolved_address& slave_address)
        : _opts(opts), _plan(plan), _shared(shared) {
        const bool paired = opts.kind == request_kind::paired;
        // Constructed in place: a connection holds deques of move-only ops and never relocates.
        _conns = std::vector<connection>(paired ? 2 * plan.connections_count
                                                : plan.connections_count);
        for (std::size_t i = 0; i < plan.connections_count; ++i) {
            auto& m = _conns[i];
            m.ep = &opts.master;
            m.address = &master_address;
            m.ctx = master_ctx;
            m.rx.resize(recv_buffer_bytes);
            if (paired) {
                auto& s = _conns[plan.connections_count + i];
                m.partner = plan.connections_count + i;
                s.partner = i;
                s.is_master = false;
                s.ep = &opts.slave;
                s.address = &slave_address;
                s.ctx = slave_ctx;
                s.rx.resize(recv_buffer_bytes);
            }
        }
        switch (opts.kind) {
        case request_kind::status:
            _first_request = status_request(opts.master.url, opts.slave_sae_id);
            break;
        case request_kind::enc_keys:
        case request_kind::paired:
            _first_request = enc_keys_request(opts.master.url, opts.slave_sae_id, opts.method,
                                              opts.key_number, opts.key_size_bits);
            break;
        }
        _timeout_ns = seconds_to_ns(opts.timeout_s);
    }

    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    void run() noexcept {
        try {
            run_inner();
        } catch (const std::exception& e) {
            _fatal = e.what();
            if (!_latched) {
                _shared.start_latch.count_down();
            }
        }
        _shared.done_count.fetch_add(1, std::memory_order_release); // pairs with main's acquire
    }

    load_stats stats;
    live_counters live;
    std::int64_t start_ns = 0;
    std::int64_t end_ns = 0;
    std::string stall_reason;
    std::string _fatal;

private:
    void run_inner() {
        if (_plan.cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(static_cast<unsigned>(_plan.cpu), &set);
            if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
                throw setup_error("cannot pin a load thread to cpu " + std::to_string(_plan.cpu));
            }
        }
        const unsigned entries = std::bit_ceil(
            std::max<unsigned>(64, static_cast<unsigned>(_conns.size()) * 4));
        if (const int rc = io_uring_queue_init(entries, &_ring, 0); rc < 0) {
            throw setup_error(std::string("io_uring_queue_init failed: ") + std::strerror(-rc));
        }
        _ring_open = true;
        // Connect everything first, so the first measured requests do not pay for handshakes.
        const std::int64_t connect_deadline = now_ns() + _timeout_ns;
        for (std::size_t i = 0; i < _conns.size(); ++i) {
            start_connect(i, now_ns());
        }
        auto connecting = [](const connection& c) {
            return c.state == conn_state::connecting || c.state == conn_state::handshaking;
        };
        while (now_ns() < connect_deadline &&
               std::any_of(_conns.begin(), _conns.end(), connecting)) {
            step(10'000'000);
        }
        _latched = true;
        _shared.start_latch.arrive_and_wait();
        start_ns = now_ns();
        load_loop();
        end_ns = now_ns();
        teardown();
    }

    // --- the schedule -----------------------------------------------------------------

    [[nodiscard]] bool open_loop() const noexcept { return _plan.rate_per_s > 0; }

    [[nodiscard]] std::int64_t intended_ns(std::uint64_t k) const noexcept {
        const double period_ns = 1e9 / _plan.rate_per_s;
        return start_ns + static_cast<std::int64_t>((static_cast<double>(k) + _plan.phase) *
                                                    period_ns);
    }

    [[nodiscard]] std::uint32_t logical_total() const noexcept {
        std::uint32_t n = 0;
        for (const auto& c : _conns) {
            n += c.is_master ? c.logical : 0;
        }
        return n;
    }

    void load_loop() {
        _stop_ns = start_ns + seconds_to_ns(_opts.duration_bound_s());
        _last_progress_ns = start_ns;
        std::int64_t drain_deadline_ns = never_ns;
        for (;;) {
            const std::int64_t now = now_ns();
            bool issuing_done = false;
            if (open_loop()) {
                if (now >= _stop_ns) {
                    stats.unsent += _scheduled - _backlog_start;
                    _backlog_start = _scheduled;
                    _schedule_closed = true;
                }
                issuing_done = _schedule_closed && _backlog_start == _scheduled;
            } else {
                issuing_done = _issued >= _plan.quota || now >= _stop_ns;
            }
            _issuing_done = issuing_done;
            if (issuing_done && logical_total() == 0) {
                break;
            }
            if (issuing_done && drain_deadline_ns == never_ns) {
                drain_deadline_ns = now + _timeout_ns;
            }
            if (now >= drain_deadline_ns) {
                for (std::size_t i = 0; i < _conns.size(); ++i) {
                    fail_conn(i, "request timed out", outcome::timeout);
                }
                break;
            }
            // Waiting work: a closed loop that wants to issue, an open-loop backlog, or answers
            // still due. Nothing pending is progress too (a slow open-loop schedule).
            const bool work_waiting = logical_total() > 0 ||
                                      (open_loop() ? _backlog_start < _scheduled : !issuing_done);
            if (!work_waiting) {
                _last_progress_ns = now;
            }
            if (work_waiting && now - _last_progress_ns > _timeout_ns + 1'000'000'000) {
                stall_reason = "no progress for " + std::to_string(_opts.timeout_s) +
                               " s; last connection error: " +
                               (_last_conn_error.empty() ? "none" : _last_conn_error);
                for (std::size_t i = 0; i < _conns.size(); ++i) {
                    fail_conn(i, "request timed out", outcome::timeout);
                }
                break;
            }
            tick(now);
            std::int64_t wait_ns = 10'000'000;
            if (open_loop() && !_schedule_closed) {
                wait_ns = std::clamp<std::int64_t>(intended_ns(_scheduled) - now_ns(), 0, wait_ns);
            }
            step(wait_ns);
        }
    }

    void tick(std::int64_t now) {
        for (std::size_t i = 0; i < _conns.size(); ++i) {
            auto& c = _conns[i];
            switch (c.state) {
            case conn_state::idle:
                if (now >= c.reconnect_at_ns && (!_issuing_done || !c.waiting.empty())) {
                    start_connect(i, now);
                }
                break;
            case conn_state::connecting:
            case conn_state::handshaking:
                if (now - c.state_since_ns > _timeout_ns) {
                    fail_conn(i, c.state == conn_state::connecting ? "connect timed out"
                                                                   : "TLS handshake timed out",
                              outcome::transport);
                }
                break;
            case conn_state::ready:
                if (!c.in_flight.empty() && now - c.in_flight.front()->sent_ns > _timeout_ns) {
                    fail_conn(i, "request timed out", outcome::timeout);
                }
                break;
            case conn_state::closing:
                break;
            }
        }
        dispatch(now);
    }

    void dispatch(std::int64_t now) {
        if (_tearing_down) {
            return;
        }
        const std::uint32_t depth = _opts.pipeline_depth;
        if (!open_loop()) {
            for (std::size_t i = 0; i < _plan.connections_count; ++i) {
                auto& m = _conns[i];
                while (m.state == conn_state::ready && m.logical < depth &&
                       _issued < _plan.quota && now < _stop_ns) {
                    issue(i, now, now);
                }
            }
            return;
        }
        while (!_schedule_closed) {
            if (_scheduled >= _plan.quota || intended_ns(_scheduled) >= _stop_ns) {
                _schedule_closed = true;
                break;
            }
            if (intended_ns(_scheduled) > now) {
                break;
            }
            ++_scheduled;
        }
        while (_backlog_start < _scheduled) {
            std::size_t chosen = _plan.connections_count;
            for (std::size_t n = 0; n < _plan.connections_count; ++n) {
                const std::size_t i = (_cursor + n) % _plan.connections_count;
                const auto& m = _conns[i];
                if (m.state == conn_state::ready && m.logical < depth) {
                    chosen = i;
                    break;
                }
            }
            if (chosen == _plan.connections_count) {
                break;
            }
            _cursor = chosen + 1;
            issue(chosen, intended_ns(_backlog_start), now);
            ++_backlog_start;
        }
    }

    void issue(std::size_t index, std::int64_t origin_ns, std::int64_t now) {
        op_ptr o;
        if (_free_ops.empty()) {
            o = std::make_unique<op>();
        } else {
            o = std::move(_free_ops.back());
            _free_ops.pop_back();
        }
        o->start_ns = origin_ns;
        o->stage = op_stage::first;
        o->master_index = static_cast<std::uint32_t>(index);
        ++_conns[index].logical;
        ++_issued;
        write_request(index, _first_request, std::move(o), now);
    }

    void write_request(std::size_t index, std::string_view bytes, op_ptr o, std::int64_t now) {
        auto& c = _conns[index];
        KEYRAIL_DEBUG_ASSERT(c.state == conn_state::ready, "state %d", static_cast<int>(c.state));
        o->sent_ns = now;
        c.in_flight.push_back(std::move(o));
        ERR_clear_error();
        const int rc = SSL_write(c.ssl, bytes.data(), static_cast<int>(bytes.size()));
        if (rc != static_cast<int>(bytes.size())) {
            fail_conn(index,
                      "TLS write failed: " +
                          describe_tls_failure(c.ssl, SSL_get_error(c.ssl, rc)),
                      outcome::transport);
            return;
        }
        flush(index);
    }

    void complete(op_ptr o, outcome how, int http_status, const char* why, std::int64_t now) {
        auto& m = _conns[o->master_index];
        KEYRAIL_ASSERT(m.logical > 0, "master %u has no logical requests", o->master_index);
        --m.logical;
        ++stats.requests;
        const bool answered = how != outcome::transport && how != outcome::timeout;
        if (answered) {
            const std::int64_t latency_ns = std::max<std::int64_t>(0, now - o->start_ns);
            stats.latency_ns.record(static_cast<std::uint64_t>(latency_ns));
            _last_progress_ns = now;
        }
        switch (how) {
        case outcome::success:
            ++stats.successes;
            if (_opts.kind != request_kind::status) {
                stats.keys += _opts.key_number;
                stats.key_bytes += std::uint64_t{_opts.key_number} * (_opts.key_size_bits / 8);
            }
            break;
        case outcome::http_error:
            ++stats.http_errors[static_cast<std::size_t>(std::clamp(http_status, 0, 599))];
            break;
        case outcome::invalid:
            ++stats.invalid_response;
            ++stats.invalid_reasons[why != nullptr ? why : "invalid"];
            break;
        case outcome::mismatch:
            ++stats.key_mismatch;
            break;
        case outcome::transport:
            ++stats.transport;
            break;
        case outcome::timeout:
            ++stats.timeouts;
            break;
        }
        o->keys.clear();
        _free_ops.push_back(std::move(o));
        live.requests.store(stats.requests, std::memory_order_relaxed);
        live.errors.store(stats.requests - stats.successes, std::memory_order_relaxed);
        live.keys.store(stats.keys, std::memory_order_relaxed);
    }

    // --- connections ------------------------------------------------------------------

    io_uring_sqe* get_sqe() {
        io_uring_sqe* sqe = io_uring_get_sqe(&_ring);
        if (sqe == nullptr) {
            io_uring_submit(&_ring);
            sqe = io_uring_get_sqe(&_ring);
        }
        KEYRAIL_ASSERT(sqe != nullptr, "io_uring submission queue stays full");
        return sqe;
    }

    void start_connect(std::size_t index, std::int64_t now) {
        auto& c = _conns[index];
        KEYRAIL_DEBUG_ASSERT(c.state == conn_state::idle, "state %d", static_cast<int>(c.state));
        c.fd = ::socket(c.address->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c.fd < 0) {
            note_conn_error(std::string("socket: ") + std::strerror(errno));
            c.reconnect_at_ns = now + 100'000'000;
            return;
        }
        const int one = 1;
        ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_connect(sqe, c.fd, reinterpret_cast<const sockaddr*>(&c.address->addr),
                              c.address->addr_bytes);
        io_uring_sqe_set_data64(sqe, user_data(index, io_kind::connect));
        ++c.ops_busy;
        c.state = conn_state::connecting;
        c.state_since_ns = now;
    }

    void on_connect(std::size_t index, int res, std::int64_t now) {
        auto& c = _conns[index];
        --c.ops_busy;
        if (c.state == conn_state::closing) {
            finish_close(index);
            return;
        }
        if (res < 0) {
            fail_conn(index, std::string("cannot connect to ") + c.ep->url.text() + ": " +
                                 std::strerror(-res),
                      outcome::transport);
            return;
        }
        c.ssl = new_client_ssl(c.ctx, c.ep->url);
        c.rbio = BIO_new(BIO_s_mem());
        c.wbio = BIO_new(BIO_s_mem());
        KEYRAIL_ASSERT(c.ssl != nullptr && c.rbio != nullptr && c.wbio != nullptr,
                       "OpenSSL out of memory");
        BIO_set_mem_eof_return(c.rbio, -1); // empty means "want more", not end of stream
        SSL_set_bio(c.ssl, c.rbio, c.wbio);
        c.state = conn_state::handshaking;
        c.state_since_ns = now;
        advance_handshake(index, now);
        post_recv(index);
    }

    void advance_handshake(std::size_t index, std::int64_t now) {
        auto& c = _conns[index];
        ERR_clear_error();
        const int rc = SSL_do_handshake(c.ssl);
        if (rc == 1) {
            c.state = conn_state::ready;
            c.state_since_ns = now;
            c.failures_in_row = 0;
            ++stats.connects;
            _last_progress_ns = now;
            while (!c.waiting.empty()) {
                c.in_flight.push_back(std::move(c.waiting.front()));
                c.waiting.pop_front();
                c.in_flight.back()->sent_ns = now;
            }
            if (!c.waiting_plain.empty()) {
                const int wrc = SSL_write(c.ssl, c.waiting_plain.data(),
                                          static_cast<int>(c.waiting_plain.size()));
                c.waiting_plain.clear();
                if (wrc <= 0) {
                    fail_conn(index, "TLS write failed", outcome::transport);
                    return;
                }
            }
            flush(index);
            return;
        }
        const int err = SSL_get_error(c.ssl, rc);
        flush(index);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
            fail_conn(index, "TLS with " + c.ep->url.text() + " failed: " +
                                 describe_tls_failure(c.ssl, err),
                      outcome::transport);
        }
    }

    void post_recv(std::size_t index) {
        auto& c = _conns[index];
        if (c.recv_busy || c.state == conn_state::closing || c.state == conn_state::idle) {
            return;
        }
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_recv(sqe, c.fd, c.rx.data(), c.rx.size(), 0);
        io_uring_sqe_set_data64(sqe, user_data(index, io_kind::recv));
        c.recv_busy = true;
        ++c.ops_busy;
    }

    void on_recv(std::size_t index, int res, std::int64_t now) {
        auto& c = _conns[index];
        c.recv_busy = false;
        --c.ops_busy;
        if (c.state == conn_state::closing) {
            finish_close(index);
            return;
        }
        if (res <= 0) {
            fail_conn(index,
                      res == 0 ? std::string("the server closed the connection")
                               : std::string("receive failed: ") + std::strerror(-res),
                      outcome::transport);
            return;
        }
        BIO_write(c.rbio, c.rx.data(), res);
        if (c.state == conn_state::handshaking) {
            advance_handshake(index, now);
        }
        if (c.state == conn_state::ready) {
            read_plain(index, now);
        }
        if (c.state == conn_state::ready || c.state == conn_state::handshaking) {
            flush(index);
            post_recv(index);
        }
    }

    void read_plain(std::size_t index, std::int64_t now) {
        auto& c = _conns[index];
        for (;;) {
            if (c.plain.size() < c.plain_end + read_chunk_bytes) {
                c.plain.resize(std::max(c.plain_end + read_chunk_bytes, 2 * c.plain.size()));
            }
            ERR_clear_error();
            const int n = SSL_read(c.ssl, c.plain.data() + c.plain_end,
                                   static_cast<int>(read_chunk_bytes));
            if (n > 0) {
                c.plain_end += static_cast<std::size_t>(n);
                continue;
            }
            const int err = SSL_get_error(c.ssl, n);
            if (err == SSL_ERROR_WANT_READ) {
                break;
            }
            parse_responses(index, now); // answers that arrived before the close still count
            if (c.state == conn_state::ready) {
                fail_conn(index,
                          err == SSL_ERROR_ZERO_RETURN
                              ? std::string("the server closed the TLS session")
                              : "TLS with " + c.ep->url.text() + " failed: " +
                                    describe_tls_failure(c.ssl, err),
                          outcome::transport);
            }
            return;
        }
        parse_responses(index, now);
    }

    void parse_responses(std::size_t index, std::int64_t now) {
        auto& c = _conns[index];
        while (c.state == conn_state::ready && c.plain_off < c.plain_end) {
            http_response resp;
            const response_parse p = parse_response(
                std::string_view(c.plain.data() + c.plain_off, c.plain_end - c.plain_off), resp);
            if (p.status == response_status::need_more) {
                break;
            }
            if (p.status == response_status::error || c.in_flight.empty()) {
                const char* why = p.status == response_status::error
                                      ? p.error.data()
                                      : "a response nobody asked for";
                if (!c.in_flight.empty()) {
                    op_ptr o = std::move(c.in_flight.front());
                    c.in_flight.pop_front();
                    ++stats.http_requests;
                    complete(std::move(o), outcome::invalid, 0, why, now);
                }
                fail_conn(index, std::string("protocol error: ") + why, outcome::transport);
                return;
            }
            c.plain_off += p.consumed_bytes;
            op_ptr o = std::move(c.in_flight.front());
            c.in_flight.pop_front();
            on_response(std::move(o), resp, now);
            if (resp.close && c.state == conn_state::ready) {
                fail_conn(index, "the server sent Connection: close", outcome::transport);
                return;
            }
        }
        if (c.plain_off == c.plain_end) {
            c.plain_off = 0;
            c.plain_end = 0;
        } else if (c.plain_off > recv_buffer_bytes) {
            std::memmove(c.plain.data(), c.plain.data() + c.plain_off, c.plain_end - c.plain_off);
            c.plain_end -= c.plain_off;
            c.plain_off = 0;
        }
    }

    void on_response(op_ptr o, const http_response& resp, std::int64_t now) {
        ++stats.http_requests;
        if (resp.status != 200) {
            complete(std::move(o), outcome::http_error, resp.status, nullptr, now);
            return;
        }
        if (o->stage == op_stage::second) {
            bool mismatch = false;
            const char* why =
                _verifier.check_matches(resp.body, o->keys, _opts.key_size_bits, mismatch);
            complete(std::move(o),
                     mismatch ? outcome::mismatch
                              : (why != nullptr ? outcome::invalid : outcome::success),
                     200, why, now);
            return;
        }
        const char* why = nullptr;
        if (_opts.kind == request_kind::status) {
            why = _verifier.check_status(resp.body, _opts.slave_sae_id);
        } else {
            why = _verifier.check_key_container(
                resp.body, _opts.key_number, _opts.key_size_bits,
                _opts.kind == request_kind::paired ? &o->keys : nullptr);
        }
        if (why != nullptr) {
            complete(std::move(o), outcome::invalid, 200, why, now);
            return;
        }
        if (_opts.kind != request_kind::paired) {
            complete(std::move(o), outcome::success, 200, nullptr, now);
            return;
        }
        // Paired: fetch the same keys by ID from the slave's KME.
        o->stage = op_stage::second;
        const std::size_t s_index = _conns[o->master_index].partner;
        auto& s = _conns[s_index];
        _dec_request.clear();
        append_dec_keys_request(_dec_request, s.ep->url, _opts.master_sae_id, o->keys);
        if (s.state == conn_state::ready) {
            write_request(s_index, _dec_request, std::move(o), now);
        } else {
            o->sent_ns = now;
            s.waiting.push_back(std::move(o));
            s.waiting_plain.append(_dec_request);
        }
    }

    void flush(std::size_t index) {
        auto& c = _conns[index];
        if (c.send_busy || c.ssl == nullptr || c.state == conn_state::closing) {
            return;
        }
        const std::size_t pending = BIO_ctrl_pending(c.wbio);
        if (pending == 0) {
            return;
        }
        if (c.tx.size() < pending) {
            c.tx.resize(pending);
        }
        const int n = BIO_read(c.wbio, c.tx.data(), static_cast<int>(pending));
        KEYRAIL_ASSERT(n == static_cast<int>(pending), "memory BIO gave %d of %zu", n, pending);
        c.tx_off = 0;
        c.tx_len = pending;
        post_send(index);
    }

    void post_send(std::size_t index) {
        auto& c = _conns[index];
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_send(sqe, c.fd, c.tx.data() + c.tx_off, c.tx_len - c.tx_off, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, user_data(index, io_kind::send));
        c.send_busy = true;
        ++c.ops_busy;
    }

    void on_send(std::size_t index, int res) {
        auto& c = _conns[index];
        c.send_busy = false;
        --c.ops_busy;
        if (c.state == conn_state::closing) {
            finish_close(index);
            return;
        }
        if (res < 0) {
            fail_conn(index, std::string("send failed: ") + std::strerror(-res),
                      outcome::transport);
            return;
        }
        c.tx_off += static_cast<std::size_t>(res);
        if (c.tx_off < c.tx_len) {
            post_send(index);
        } else {
            flush(index);
        }
    }

    void note_conn_error(const std::string& reason) {
        if (_tearing_down) {
            return;
        }
        ++stats.connection_errors[reason];
        _last_conn_error = reason;
    }

    // Ends a connection: its requests fail with how, it reconnects later (backing off).
    void fail_conn(std::size_t index, const std::string& reason, outcome how) {
        auto& c = _conns[index];
        if (c.state == conn_state::idle || c.state == conn_state::closing) {
            return;
        }
        const bool had_work = !c.in_flight.empty() || !c.waiting.empty();
        const std::int64_t now = now_ns();
        // Timeouts of an idle connection at the end are not errors of any request.
        if (how != outcome::timeout || had_work) {
            note_conn_error(reason);
        }
        std::deque<op_ptr> lost;
        lost.swap(c.in_flight);
        for (auto& o : c.waiting) {
            lost.push_back(std::move(o));
        }
        c.waiting.clear();
        OPENSSL_cleanse(c.waiting_plain.data(), c.waiting_plain.size());
        c.waiting_plain.clear();
        if (c.ssl != nullptr) {
            SSL_free(c.ssl); // frees both BIOs
            c.ssl = nullptr;
            c.rbio = nullptr;
            c.wbio = nullptr;
        }
        c.plain_off = 0;
        c.plain_end = 0;
        const bool connecting = c.state == conn_state::connecting;
        c.state = conn_state::closing;
        ++c.failures_in_row;
        const unsigned shift = std::min(c.failures_in_row, 7u);
        c.reconnect_at_ns = now + (std::int64_t{5'000'000} << shift); // 10 ms .. 640 ms
        if (c.fd >= 0) {
            ::shutdown(c.fd, SHUT_RDWR);
            if (connecting && c.ops_busy > 0) {
                io_uring_sqe* sqe = get_sqe();
                io_uring_prep_cancel64(sqe, user_data(index, io_kind::connect), 0);
                io_uring_sqe_set_data64(sqe, user_data_ignored);
            }
        }
        finish_close(index);
        for (auto& o : lost) {
            complete(std::move(o), how, 0, nullptr, now);
        }
    }

    void finish_close(std::size_t index) {
        auto& c = _conns[index];
        if (c.state != conn_state::closing || c.ops_busy != 0) {
            return;
        }
        if (c.fd >= 0) {
            ::close(c.fd);
            c.fd = -1;
        }
        c.state = conn_state::idle;
    }

    // --- the ring ---------------------------------------------------------------------

    void step(std::int64_t wait_ns) {
        __kernel_timespec ts{};
        ts.tv_sec = wait_ns / 1'000'000'000;
        ts.tv_nsec = wait_ns % 1'000'000'000;
        io_uring_cqe* cqe = nullptr;
        const int rc = io_uring_submit_and_wait_timeout(&_ring, &cqe, 1, &ts, nullptr);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            throw std::runtime_error(std::string("io_uring wait failed: ") + std::strerror(-rc));
        }
        const std::int64_t now = now_ns();
        // Copy completions out first: handlers may submit, and must not race the CQ head.
        _cqes.clear();
        unsigned head = 0;
        io_uring_for_each_cqe(&_ring, head, cqe) {
            _cqes.emplace_back(cqe->user_data, cqe->res);
        }
        io_uring_cq_advance(&_ring, static_cast<unsigned>(_cqes.size()));
        for (const auto& [data, res] : _cqes) {
            if (data == user_data_ignored) {
                continue;
            }
            const auto index = static_cast<std::size_t>(data >> 2);
            switch (static_cast<io_kind>(data & 3)) {
            case io_kind::connect:
                on_connect(index, res, now);
                break;
            case io_kind::recv:
                on_recv(index, res, now);
                break;
            case io_kind::send:
                on_send(index, res);
                break;
            }
        }
        if (!_cqes.empty() && start_ns != 0) {
            dispatch(now);
        }
    }

    void teardown() {
        _tearing_down = true;
        for (std::size_t i = 0; i < _conns.size(); ++i) {
            fail_conn(i, "end of run", outcome::transport);
        }
        const std::int64_t deadline = now_ns() + 1'000'000'000;
        while (now_ns() < deadline &&
               std::any_of(_conns.begin(), _conns.end(), [](auto& c) { return c.ops_busy > 0; })) {
            step(10'000'000);
        }
        for (auto& c : _conns) {
            if (c.fd >= 0 && c.ops_busy == 0) {
                ::close(c.fd);
                c.fd = -1;
            }
        }
        if (_ring_open) {
            io_uring_queue_exit(&_ring);
            _ring_open = false;
        }
    }

    const options& _opts;
    thread_plan _plan;
    shared_state& _shared;
    io_uring _ring{};
    bool _ring_open = false;
    bool _latched = false;
    bool _tearing_down = false;
    bool _issuing_done = false;
    std::vector<connection> _conns;
    std::vector<op_ptr> _free_ops;
    std::vector<std::pair<std::uint64_t, int>> _cqes;
    std::string _first_request;
    std::string _dec_request;
    verifier _verifier;
    std::int64_t _timeout_ns = 0;
    std::int64_t _stop_ns = never_ns;
    std::int64_t _last_progress_ns = 0;
    std::string _last_conn_error;
    std::uint64_t _issued = 0;
    std::uint64_t _scheduled = 0;     // open loop: requests whose intended time has come
    std::uint64_t _backlog_start = 0; // open loop: the first of those not yet sent
    bool _schedule_closed = false;
    std::size_t _cursor = 0;
};

} // namespace

std::uint64_t load_stats::http_error_count() const noexcept {
    std::uint64_t n = 0;
    for (auto v : http_errors) {
        n += v;
    }
    return n;
}

void load_stats::merge(const load_stats& o) {
    requests += o.requests;
    successes += o.successes;
    http_requests += o.http_requests;
    keys += o.keys;
    key_bytes += o.key_bytes;
    for (std::size_t i = 0; i < http_errors.size(); ++i) {
        http_errors[i] += o.http_errors[i];
    }
    invalid_response += o.invalid_response;
    key_mismatch += o.key_mismatch;
    transport += o.transport;
    timeouts += o.timeouts;
    unsent += o.unsent;
    connects += o.connects;
    for (const auto& [k, v] : o.connection_errors) {
        connection_errors[k] += v;
    }
    for (const auto& [k, v] : o.invalid_reasons) {
        invalid_reasons[k] += v;
    }
    latency_ns.merge(o.latency_ns);
}

resolved_address resolve(const base_url& url) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(url.port);
    const int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &found);
    if (rc != 0 || found == nullptr) {
        throw setup_error("cannot resolve host '" + url.host + "': " + ::gai_strerror(rc));
    }
    resolved_address out;
    std::memcpy(&out.addr, found->ai_addr, found->ai_addrlen);
    out.addr_bytes = found->ai_addrlen;
    ::freeaddrinfo(found);
    return out;
}

run_result run_load(const options& opts, const progress_callback& progress) {
    // The probe writes to a plain socket; a server that goes away must give EPIPE, not a kill.
    std::signal(SIGPIPE, SIG_IGN);
    ssl_ctx_ptr master_ctx;
    ssl_ctx_ptr slave_ctx;
    try {
        master_ctx = make_client_context(opts.master);
        if (opts.kind == request_kind::paired) {
            slave_ctx = make_client_context(opts.slave);
        }
    } catch (const std::runtime_error& e) {
        throw setup_error(e.what());
    }
    const resolved_address master_address = resolve(opts.master.url);
    const resolved_address slave_address =
        opts.kind == request_kind::paired ? resolve(opts.slave.url) : master_address;
    if (!opts.cpus.empty()) {
        cpu_set_t set;
        CPU_ZERO(&set);
        for (int cpu : opts.cpus) {
            CPU_SET(static_cast<unsigned>(cpu), &set);
        }
        if (sched_setaffinity(0, sizeof set, &set) != 0) {
            throw setup_error("cannot run on --cpus: " + std::string(std::strerror(errno)));
        }
    }
    if (!opts.skip_probe) {
        probe_endpoint(master_ctx.get(), opts.master.url, master_address, opts.slave_sae_id,
                       opts.slave_sae_id, opts.timeout_s);
        if (opts.kind == request_kind::paired) {
            probe_endpoint(slave_ctx.get(), opts.slave.url, slave_address, opts.master_sae_id,
                           {}, opts.timeout_s);
        }
    }

    const unsigned threads = opts.threads_count;
    shared_state shared(static_cast<std::ptrdiff_t>(threads));
    std::vector<std::unique_ptr<worker>> workers;
    for (unsigned t = 0; t < threads; ++t) {
        thread_plan plan;
        plan.index = t;
        plan.cpu = opts.cpus.empty() ? -1 : opts.cpus[t % opts.cpus.size()];
        plan.connections_count =
            opts.connections_count / threads + (t < opts.connections_count % threads ? 1 : 0);
        if (opts.requests_max == 0) {
            plan.quota = std::numeric_limits<std::uint64_t>::max();
        } else {
            plan.quota = opts.requests_max / threads + (t < opts.requests_max % threads ? 1 : 0);
        }
        plan.rate_per_s = opts.rate_per_s / threads;
        plan.phase = static_cast<double>(t) / threads;
        workers.push_back(std::make_unique<worker>(opts, plan, shared, master_ctx.get(),
                                                   slave_ctx ? slave_ctx.get() : master_ctx.get(),
                                                   master_address, slave_address));
    }
    std::vector<std::thread> running;
    running.reserve(threads);
    for (auto& w : workers) {
        running.emplace_back([&w] { w->run(); });
    }
    shared.start_latch.arrive_and_wait();
    const auto started = std::chrono::steady_clock::now();
    auto next_report = started + std::chrono::seconds(1);
    while (shared.done_count.load(std::memory_order_acquire) < threads) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        const auto now = std::chrono::steady_clock::now();
        if (progress && now >= next_report) {
            next_report += std::chrono::seconds(1);
            progress_sample sample;
            for (const auto& w : workers) {
                sample.requests += w->live.requests.load(std::memory_order_relaxed);
                sample.errors += w->live.errors.load(std::memory_order_relaxed);
                sample.keys += w->live.keys.load(std::memory_order_relaxed);
            }
            progress(std::chrono::duration<double>(now - started).count(), sample);
        }
    }
    for (auto& t : running) {
        t.join();
    }
    run_result out;
    std::int64_t elapsed_ns = 0;
    for (const auto& w : workers) {
        if (!w->_fatal.empty()) {
            throw setup_error(w->_fatal);
        }
        out.stats.merge(w->stats);
        elapsed_ns = std::max(elapsed_ns, w->end_ns - w->start_ns);
        if (!w->stall_reason.empty()) {
            out.stalled = true;
            out.stall_reason = w->stall_reason;
        }
    }
    out.elapsed_s = static_cast<double>(elapsed_ns) / 1e9;
    return out;
}

} // namespace keyrail::bench_client
