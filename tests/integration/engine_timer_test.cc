// Per-shard timers over real io_uring: one-shot and periodic timers armed from shard hooks and
// from a protocol, callbacks on the shard's own thread, cancel (before firing, from inside a
// periodic callback, with a stale id), and the bounded table.
#include "engine/errc.h"
#include "engine/server.h"
#include "tests/support/test_certs.h"
#include "tests/support/tls_client.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#ifndef KEYRAIL_SOURCE_DIR
#error "KEYRAIL_SOURCE_DIR must point at the source tree"
#endif

namespace keyrail::engine {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t ms_ns = 1'000'000;

std::filesystem::path g_certs;
std::string cert(const char* name) { return (g_certs / name).string(); }

// What the hooks observed; written by shard threads, read by the test after run() returned or
// through atomics while it runs.
struct observed {
    std::atomic<int> periodic_fires{0};
    std::atomic<int> once_fires{0};
    std::atomic<int> cancelled_fires{0};
    std::atomic<int> self_cancel_fires{0};
    std::atomic<int> wrong_thread{0};
    std::atomic<bool> stale_cancel_refused{false};
    std::atomic<bool> table_full_seen{false};
    std::atomic<bool> started{false};
    std::atomic<std::uint64_t> once_delay_ns{0};
};
observed* g_seen = nullptr;

enum timer_kind : std::uint64_t { periodic = 1, once, cancelled, self_cancel, filler };

class timer_hooks final : public shard_hooks, public timer_handler {
public:
    void on_start(shard_context& shard) noexcept override {
        _thread = pthread_self();
        _start_ns = shard.now_ns();
        auto p = shard.add_timer(5 * ms_ns, 5 * ms_ns, *this, periodic);
        auto o = shard.add_timer(20 * ms_ns, 0, *this, once);
        auto c = shard.add_timer(30 * ms_ns, 0, *this, cancelled);
        auto s = shard.add_timer(2 * ms_ns, 2 * ms_ns, *this, self_cancel);
        if (!p || !o || !c || !s) {
            std::abort();
        }
        _periodic = *p;
        EXPECT_TRUE(shard.cancel_timer(*c));
        EXPECT_FALSE(shard.cancel_timer(*c)); // twice: a no-op
        // The table holds 8 (timers_per_shard_max): fill it and see the backpressure error.
        int added = 4; // the cancelled one's slot stays busy until its CQE arrives
        for (;; ++added) {
            auto f = shard.add_timer(3'600'000 * ms_ns, 0, *this, filler);
            if (!f) {
                g_seen->table_full_seen = f.error() == errc::timer_table_full && added == 8;
                break;
            }
            _fillers[_filler_count++] = *f;
        }
        for (std::size_t i = 0; i < _filler_count; ++i) {
            EXPECT_TRUE(shard.cancel_timer(_fillers[i]));
        }
        g_seen->started = true;
    }

    void on_timer(shard_context& shard, timer_id id, std::uint64_t arg) noexcept override {
        if (!pthread_equal(pthread_self(), _thread)) {
            g_seen->wrong_thread.fetch_add(1);
        }
        switch (arg) {
        case periodic:
            g_seen->periodic_fires.fetch_add(1);
            break;
        case once:
            g_seen->once_fires.fetch_add(1);
            g_seen->once_delay_ns = shard.now_ns() - _start_ns;
            // A one-shot's id is stale inside its own callback.
            g_seen->stale_cancel_refused = !shard.cancel_timer(id);
            break;
        case cancelled:
            g_seen->cancelled_fires.fetch_add(1);
            break;
        case self_cancel:
            if (g_seen->self_cancel_fires.fetch_add(1) + 1 == 3) {
                EXPECT_TRUE(shard.cancel_timer(id));
            }
            break;
        default:
            break;
        }
    }

    void on_drain(shard_context& shard) noexcept override {
        // A periodic timer stops when cancelled; the drain does not stop it by itself.
        EXPECT_TRUE(shard.cancel_timer(_periodic));
    }

private:
    pthread_t _thread{};
    std::uint64_t _start_ns = 0;
    timer_id _periodic{};
    timer_id _fillers[16]{};
    std::size_t _filler_count = 0;
};

// "after N\n": answers "fired N" from a timer N ms later through shard_context::send, without
// parking (the connection stays readable meanwhile); "now\n" answers "now" at once.
class timer_line_protocol final : public protocol, public timer_handler {
public:
    handler_result on_data(connection_context& ctx, std::span<const char> in,
                           output& out) noexcept override {
        const std::string_view text(in.data(), in.size());
        const auto nl = text.find('\n');
        if (nl == std::string_view::npos) {
            return {0, after_flush::keep_open};
        }
        const std::string_view line = text.substr(0, nl);
        if (line.starts_with("after ")) {
            const auto delay_ms = std::strtoull(std::string(line.substr(6)).c_str(), nullptr, 10);
            const std::uint64_t arg =
                (std::uint64_t{ctx.id().slot} << 32) | std::uint64_t{ctx.id().generation};
            _delay_ms = delay_ms;
            if (!ctx.shard().add_timer(delay_ms * ms_ns, 0, *this, arg)) {
                (void)out.append(std::string_view("no timer\n"));
            }
        } else {
            (void)out.append(line);
            (void)out.append(std::string_view("\n"));
        }
        return {nl + 1, after_flush::keep_open};
    }

    void on_timer(shard_context& shard, timer_id, std::uint64_t arg) noexcept override {
        const connection_id id{static_cast<std::uint32_t>(arg >> 32),
                               static_cast<std::uint32_t>(arg)};
        const std::string answer = "fired " + std::to_string(_delay_ms) + "\n";
        (void)shard.send(id, answer);
    }

private:
    std::uint64_t _delay_ms = 0;
};

class engine_timer : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        g_certs = test::make_test_certs("keyrail-timer-certs");
        ASSERT_FALSE(g_certs.empty()) << "tests/support/make_test_certs.sh failed";
    }
    static void TearDownTestSuite() { std::filesystem::remove_all(g_certs); }

    server_config config() {
        server_config c;
        c.shard_count = 2;
        c.pinning = thread_pinning::none;
        c.signals = stop_signals::ignore;
        c.connections_per_shard_max = 8;
        c.input_buffer_bytes = 1024;
        c.output_buffer_bytes = 1024;
        c.socket_buffer_bytes = 4096;
        c.timers_per_shard_max = 8;
        c.drain_timeout = 2s;
        listener_config l;
        l.tls.cert_file = cert("server.pem");
        l.tls.key_file = cert("server.key");
        l.tls.ca_file = cert("ca.pem");
        l.make_protocol = [](std::size_t) { return std::make_unique<timer_line_protocol>(); };
        c.listeners.push_back(std::move(l));
        return c;
    }

    void start(server_config c) {
        auto s = server::create(std::move(c));
        ASSERT_TRUE(s.has_value()) << s.error().message();
        _server = std::move(*s);
        _thread = std::thread([this] { _result = _server->run(); });
    }
    void stop() {
        if (_thread.joinable()) {
            _server->request_stop();
            _thread.join();
            EXPECT_TRUE(_result.has_value()) << _result.error().message();
        }
    }
    void TearDown() override { stop(); }

    std::unique_ptr<server> _server;
    std::thread _thread;
    result<void> _result;
};

TEST_F(engine_timer, periodic_once_cancel_and_table_bound) {
    observed seen;
    g_seen = &seen;
    auto c = config();
    c.shard_count = 1;
    c.make_shard_hooks = [](std::size_t) { return std::make_unique<timer_hooks>(); };
    start(std::move(c));
    std::this_thread::sleep_for(220ms);
    stop();
    EXPECT_TRUE(seen.started.load());
    // 5 ms period over ~220 ms: about 44; wide bounds for a loaded machine under ASan.
    EXPECT_GE(seen.periodic_fires.load(), 15);
    EXPECT_LE(seen.periodic_fires.load(), 60);
    EXPECT_EQ(seen.once_fires.load(), 1);
    EXPECT_GE(seen.once_delay_ns.load(), 20 * ms_ns);
    EXPECT_TRUE(seen.stale_cancel_refused.load());
    EXPECT_EQ(seen.cancelled_fires.load(), 0);
    EXPECT_EQ(seen.self_cancel_fires.load(), 3);
    EXPECT_EQ(seen.wrong_thread.load(), 0);
    EXPECT_TRUE(seen.table_full_seen.load());
    EXPECT_GE(_server->stats().timers_fired, 20u);
    g_seen = nullptr;
}

TEST_F(engine_timer, protocol_arms_timer_and_sends_later) {
    start(config());
    test::tls_client_config cc;
    cc.ca_file = cert("ca.pem");
    cc.cert_file = cert("client.pem");
    cc.key_file = cert("client.key");
    test::tls_client client(cc);
    ASSERT_TRUE(client.connect(_server->port(0))) << client.error();
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(client.write_all("after 40\nnow\n"));
    std::string line;
    ASSERT_TRUE(client.read_line(line)) << client.error();
    EXPECT_EQ(line, "now"); // not held behind the timer: nothing was parked
    ASSERT_TRUE(client.read_line(line)) << client.error();
    EXPECT_EQ(line, "fired 40");
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 40ms);
}

TEST_F(engine_timer, timer_for_a_closed_connection_is_a_no_op) {
    start(config());
    test::tls_client_config cc;
    cc.ca_file = cert("ca.pem");
    cc.cert_file = cert("client.pem");
    cc.key_file = cert("client.key");
    {
        test::tls_client client(cc);
        ASSERT_TRUE(client.connect(_server->port(0))) << client.error();
        ASSERT_TRUE(client.write_all("after 30\nnow\n"));
        std::string line;
        ASSERT_TRUE(client.read_line(line)) << client.error();
    }
    // The timer fires after the close; send() sees a stale handle. ASan checks the rest.
    for (int i = 0; i < 100 && _server->stats().timers_fired == 0; ++i) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(_server->stats().timers_fired, 1u);
    EXPECT_EQ(_server->stats().open_connections, 0u);
}

} // namespace
} // namespace keyrail::engine
