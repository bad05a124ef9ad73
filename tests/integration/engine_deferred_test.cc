// Deferred replies over real io_uring: a protocol parks each request and answers it from a
// timer 20 ms later (shard_context::wake -> protocol::on_wake). Pipelined requests come back in
// order; a parked connection outlives request and idle timeouts shorter than its wait; a client
// that closes while parked is cleaned up and the late wake is a no-op (ASan watches).
#include "engine/server.h"
#include "tests/support/test_certs.h"
#include "tests/support/tls_client.h"

#include <atomic>
#include <chrono>
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

std::atomic<int> g_stale_wakes{0};
std::atomic<int> g_closes{0};
std::atomic<int> g_parks{0};

// One line per request. "slow" waits 300 ms, "gone" 1 s (its client closes long before, even on
// a loaded machine), anything else 20 ms; the answer is "<line> ok".
// The pending answer lives in a per-slot table of the protocol (its own preallocated pool).
class parking_protocol final : public protocol, public timer_handler {
public:
    handler_result on_data(connection_context& ctx, std::span<const char> in,
                           output&) noexcept override {
        const std::string_view text(in.data(), in.size());
        const auto nl = text.find('\n');
        if (nl == std::string_view::npos) {
            return {0, after_flush::keep_open};
        }
        const std::string_view line = text.substr(0, nl);
        pending& p = _pending[ctx.id().slot % _pending.size()];
        p.line.assign(line);
        const std::uint64_t delay_ns = (line == "slow" ? 300 : line == "gone" ? 1000 : 20) * ms_ns;
        const std::uint64_t arg =
            (std::uint64_t{ctx.id().slot} << 32) | std::uint64_t{ctx.id().generation};
        if (!ctx.shard().add_timer(delay_ns, 0, *this, arg)) {
            return {nl + 1, after_flush::close};
        }
        g_parks.fetch_add(1);
        return {nl + 1, after_flush::park};
    }

    after_flush on_wake(connection_context& ctx, std::uint64_t, output& out) noexcept override {
        pending& p = _pending[ctx.id().slot % _pending.size()];
        const std::string answer = p.line + " ok\n";
        (void)out.append(answer);
        p.line.clear();
        return after_flush::keep_open;
    }

    void on_timer(shard_context& shard, timer_id, std::uint64_t arg) noexcept override {
        const connection_id id{static_cast<std::uint32_t>(arg >> 32),
                               static_cast<std::uint32_t>(arg)};
        if (!shard.wake(id)) {
            g_stale_wakes.fetch_add(1);
        }
    }

    void on_close(connection_context& ctx) noexcept override {
        _pending[ctx.id().slot % _pending.size()].line.clear();
        g_closes.fetch_add(1);
    }

private:
    struct pending {
        std::string line;
    };
    std::array<pending, 16> _pending{};
};

class engine_deferred : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        g_certs = test::make_test_certs("keyrail-deferred-certs");
        ASSERT_FALSE(g_certs.empty()) << "tests/support/make_test_certs.sh failed";
    }
    static void TearDownTestSuite() { std::filesystem::remove_all(g_certs); }

    void SetUp() override {
        g_stale_wakes = 0;
        g_closes = 0;
        g_parks = 0;
    }

    server_config config() {
        server_config c;
        c.shard_count = 2;
        c.pinning = thread_pinning::none;
        c.signals = stop_signals::ignore;
        c.connections_per_shard_max = 16;
        c.input_buffer_bytes = 1024;
        c.output_buffer_bytes = 1024;
        c.socket_buffer_bytes = 4096;
        c.drain_timeout = 2s;
        listener_config l;
        l.tls.cert_file = cert("server.pem");
        l.tls.key_file = cert("server.key");
        l.tls.ca_file = cert("ca.pem");
        l.make_protocol = [](std::size_t) { return std::make_unique<parking_protocol>(); };
        c.listeners.push_back(std::move(l));
        return c;
    }

    test::tls_client_config client_config() {
        test::tls_client_config cc;
        cc.ca_file = cert("ca.pem");
        cc.cert_file = cert("client.pem");
        cc.key_file = cert("client.key");
        return cc;
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

    template <class Pred>
    bool eventually(Pred pred) {
        for (int i = 0; i < 300; ++i) {
            if (pred(_server->stats())) {
                return true;
            }
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }

    std::unique_ptr<server> _server;
    std::thread _thread;
    result<void> _result;
};

TEST_F(engine_deferred, pipelined_parked_requests_answered_in_order) {
    start(config());
    test::tls_client client(client_config());
    ASSERT_TRUE(client.connect(_server->port(0))) << client.error();
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(client.write_all("a\nb\nc\nd\ne\n"));
    for (const char* expected : {"a ok", "b ok", "c ok", "d ok", "e ok"}) {
        std::string line;
        ASSERT_TRUE(client.read_line(line)) << client.error();
        EXPECT_EQ(line, expected);
    }
    // One at a time: no on_data while parked, so five waits of 20 ms.
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 100ms);
    EXPECT_EQ(_server->stats().wakes, 5u);
    EXPECT_EQ(g_parks.load(), 5);
    // The connection is still usable afterwards.
    ASSERT_TRUE(client.write_all("f\n"));
    std::string line;
    ASSERT_TRUE(client.read_line(line)) << client.error();
    EXPECT_EQ(line, "f ok");
}

TEST_F(engine_deferred, many_connections_parked_at_once) {
    start(config());
    std::vector<std::unique_ptr<test::tls_client>> clients;
    for (int i = 0; i < 12; ++i) {
        clients.push_back(std::make_unique<test::tls_client>(client_config()));
        ASSERT_TRUE(clients.back()->connect(_server->port(0))) << clients.back()->error();
        ASSERT_TRUE(clients.back()->write_all("c" + std::to_string(i) + "\nz\n"));
    }
    for (int i = 0; i < 12; ++i) {
        std::string line;
        ASSERT_TRUE(clients[static_cast<std::size_t>(i)]->read_line(line));
        EXPECT_EQ(line, "c" + std::to_string(i) + " ok");
        ASSERT_TRUE(clients[static_cast<std::size_t>(i)]->read_line(line));
        EXPECT_EQ(line, "z ok");
    }
}

TEST_F(engine_deferred, parked_connection_outlives_shorter_timeouts) {
    auto c = config();
    c.idle_timeout = 100ms;
    c.request_timeout = 100ms;
    start(std::move(c));
    test::tls_client client(client_config());
    ASSERT_TRUE(client.connect(_server->port(0))) << client.error();
    ASSERT_TRUE(client.write_all("slow\nnext\n")); // parked 300 ms, a request waits behind it
    std::string line;
    ASSERT_TRUE(client.read_line(line)) << client.error();
    EXPECT_EQ(line, "slow ok");
    ASSERT_TRUE(client.read_line(line)) << client.error();
    EXPECT_EQ(line, "next ok");
    EXPECT_EQ(_server->stats().timeouts, 0u);
    // Once nothing is parked, the idle timeout applies again.
    std::string what;
    EXPECT_TRUE(client.wait_closed(what));
    EXPECT_TRUE(eventually([](const server_stats& s) { return s.timeouts == 1; }));
}

TEST_F(engine_deferred, park_timeout_bounds_a_forgotten_request) {
    auto c = config();
    c.park_timeout = 100ms;
    start(std::move(c));
    test::tls_client client(client_config());
    ASSERT_TRUE(client.connect(_server->port(0))) << client.error();
    ASSERT_TRUE(client.write_all("slow\n")); // the protocol would answer after 300 ms
    std::string what;
    EXPECT_TRUE(client.wait_closed(what));
    EXPECT_TRUE(eventually([](const server_stats& s) { return s.timeouts == 1; }));
    EXPECT_TRUE(eventually([](const server_stats&) { return g_stale_wakes.load() == 1; }));
}

TEST_F(engine_deferred, client_closes_while_parked) {
    start(config());
    for (int i = 0; i < 4; ++i) {
        test::tls_client client(client_config());
        ASSERT_TRUE(client.connect(_server->port(0))) << client.error();
        ASSERT_TRUE(client.write_all("gone\nnever\n"));
        ASSERT_TRUE(eventually([i](const server_stats&) { return g_parks.load() == i + 1; }));
        client.close();
    }
    // Each timer fires after its connection closed: the wake finds a stale handle.
    EXPECT_TRUE(eventually([](const server_stats&) { return g_stale_wakes.load() == 4; }));
    EXPECT_TRUE(eventually([](const server_stats& s) { return s.open_connections == 0; }));
    EXPECT_EQ(g_closes.load(), 4);
    EXPECT_EQ(_server->stats().wakes, 0u);
}

TEST_F(engine_deferred, drain_waits_for_a_parked_request) {
    start(config());
    test::tls_client client(client_config());
    ASSERT_TRUE(client.connect(_server->port(0))) << client.error();
    ASSERT_TRUE(client.write_all("slow\n"));
    ASSERT_TRUE(eventually([](const server_stats&) { return g_parks.load() == 1; }));
    _server->request_stop();
    std::string line;
    ASSERT_TRUE(client.read_line(line)) << client.error();
    EXPECT_EQ(line, "slow ok");
    std::string what;
    EXPECT_TRUE(client.wait_closed(what));
    _thread.join();
    EXPECT_TRUE(_result.has_value());
}

} // namespace
} // namespace keyrail::engine
