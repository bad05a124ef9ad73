// The engine's output barrier (shard_hooks::before_output) over real io_uring and loopback TLS:
// it runs between producing an answer and handing its send to the kernel, an answer waits while
// it runs, a failed barrier shuts the connection before any of that output leaves (the server
// keeps serving others), and pipelined answers pass through it whole and in order.
#include "engine/server.h"
#include "tests/support/test_certs.h"
#include "tests/support/tls_client.h"

#include <atomic>
#include <chrono>
#include <cstdio>
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

std::filesystem::path g_certs;
std::string cert(const char* name) { return (g_certs / name).string(); }

// Shared by the hooks and the protocol (on the shard thread) and the test thread.
struct barrier_state {
    std::atomic<std::uint64_t> calls{0};           // before_output calls so far
    std::atomic<std::uint64_t> failed_calls{0};    // of which returned false
    std::atomic<std::uint64_t> calls_at_answer{0}; // `calls` when the last answer was produced
    std::atomic<std::uint64_t> answers{0};         // answers produced by the protocol
    std::atomic<bool> fail{false};                 // before_output returns false while set
    std::atomic<bool> hold{false};    // the next before_output blocks until release (bounded)
    std::atomic<bool> holding{false}; // before_output is blocked now
    std::atomic<bool> release{false};
};
barrier_state g_state;

class counting_barrier final : public shard_hooks {
public:
    bool before_output(shard_context&) noexcept override {
        g_state.calls.fetch_add(1);
        if (g_state.hold.exchange(false)) {
            g_state.holding = true;
            // Bounded: a test that never releases fails on its reads instead of hanging.
            const auto deadline = std::chrono::steady_clock::now() + 5s;
            while (!g_state.release.load() && std::chrono::steady_clock::now() < deadline) {
                std::this_thread::sleep_for(1ms);
            }
            g_state.holding = false;
        }
        if (g_state.fail.load()) {
            g_state.failed_calls.fetch_add(1);
            return false;
        }
        return true;
    }
};

// One line in, the same line out. "hold" also makes the next barrier block.
class barrier_echo final : public protocol {
public:
    handler_result on_data(connection_context&, std::span<const char> in,
                           output& out) noexcept override {
        const std::string_view text(in.data(), in.size());
        const auto nl = text.find('\n');
        if (nl == std::string_view::npos) {
            return {0, after_flush::keep_open};
        }
        const std::string_view line = text.substr(0, nl);
        if (line == "hold") {
            g_state.hold = true;
        }
        (void)out.append(line);
        (void)out.append(std::string_view("\n"));
        g_state.calls_at_answer = g_state.calls.load();
        g_state.answers.fetch_add(1);
        return {nl + 1, after_flush::keep_open};
    }
};

class engine_barrier : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        g_certs = test::make_test_certs("keyrail-barrier-certs");
        ASSERT_FALSE(g_certs.empty()) << "tests/support/make_test_certs.sh failed";
    }
    static void TearDownTestSuite() { std::filesystem::remove_all(g_certs); }

    void SetUp() override {
        g_state.calls = 0;
        g_state.failed_calls = 0;
        g_state.calls_at_answer = 0;
        g_state.answers = 0;
        g_state.fail = false;
        g_state.hold = false;
        g_state.holding = false;
        g_state.release = false;
    }

    // One shard, so every barrier counted is the one in front of the answer's connection.
    server_config config() {
        server_config c;
        c.shard_count = 1;
        c.pinning = thread_pinning::none;
        c.signals = stop_signals::ignore;
        c.connections_per_shard_max = 8;
        c.input_buffer_bytes = 4096;
        c.output_buffer_bytes = 8192;
        c.socket_buffer_bytes = 1024; // pipelined answers leave in several sends
        c.drain_timeout = 2s;
        listener_config l;
        l.address = "127.0.0.1";
        l.tls.cert_file = cert("server.pem");
        l.tls.key_file = cert("server.key");
        l.tls.ca_file = cert("ca.pem");
        l.make_protocol = [](std::size_t) { return std::make_unique<barrier_echo>(); };
        c.listeners.push_back(std::move(l));
        c.make_shard_hooks = [](std::size_t) { return std::make_unique<counting_barrier>(); };
        return c;
    }

    void start() {
        auto s = server::create(config());
        ASSERT_TRUE(s.has_value()) << s.error().message();
        _server = std::move(*s);
        _thread = std::thread([this] { _result = _server->run(); });
    }
    void stop() {
        if (_thread.joinable()) {
            g_state.fail = false;
            g_state.release = true;
            _server->request_stop();
            _thread.join();
            EXPECT_TRUE(_result.has_value()) << _result.error().message();
        }
    }
    void TearDown() override { stop(); }

    static test::tls_client_config client_config(int read_timeout_ms) {
        test::tls_client_config cc;
        cc.ca_file = cert("ca.pem");
        cc.cert_file = cert("client.pem");
        cc.key_file = cert("client.key");
        cc.read_timeout_ms = read_timeout_ms;
        return cc;
    }

    // Waits (bounded) until pred() holds.
    template <class Pred>
    static bool eventually(Pred pred) {
        for (int i = 0; i < 200; ++i) {
            if (pred()) {
                return true;
            }
            std::this_thread::sleep_for(10ms);
        }
        return pred();
    }

    std::unique_ptr<server> _server;
    std::thread _thread;
    result<void> _result;
};

TEST_F(engine_barrier, a_barrier_runs_between_the_answer_and_its_delivery) {
    start();
    test::tls_client client(client_config(2000));
    ASSERT_TRUE(client.connect(_server->port(0))) << client.error();
    for (int i = 0; i < 5; ++i) {
        const std::string request = "ping " + std::to_string(i);
        ASSERT_TRUE(client.write_all(request + "\n"));
        std::string line;
        ASSERT_TRUE(client.read_line(line)) << client.error();
        EXPECT_EQ(line, request);
        const std::uint64_t at_answer = g_state.calls_at_answer.load();
        EXPECT_GT(g_state.calls.load(), at_answer) << "answer " << i << " left without a barrier";
    }
    EXPECT_EQ(g_state.answers.load(), 5u);
    EXPECT_EQ(g_state.failed_calls.load(), 0u);
}

TEST_F(engine_barrier, an_answer_waits_while_the_barrier_runs) {
    start();
    test::tls_client client(client_config(300));
    ASSERT_TRUE(client.connect(_server->port(0))) << client.error();
    // A first round trip: the handshake's own sends (session tickets) have completed, so the
    // answer's send is queued in the same turn as the answer, right before the held barrier.
    std::string line;
    ASSERT_TRUE(client.write_all("warm\n"));
    ASSERT_TRUE(client.read_line(line)) << client.error();
    ASSERT_TRUE(client.write_all("hold\n"));
    ASSERT_TRUE(eventually([] { return g_state.holding.load(); }));
    ASSERT_EQ(g_state.answers.load(), 2u); // produced, and now behind the blocked barrier
    EXPECT_FALSE(client.read_line(line)) << "the answer left before the barrier returned";
    g_state.release = true;
    // The 300 ms read timeout above may have fired: read again until the answer or 2 s.
    bool answered = false;
    for (int i = 0; i < 7 && !answered; ++i) {
        answered = client.read_line(line);
    }
    ASSERT_TRUE(answered) << client.error();
    EXPECT_EQ(line, "hold");
}

TEST_F(engine_barrier, a_failed_barrier_closes_the_connection_before_its_answer_leaves) {
    start();
    {
        test::tls_client client(client_config(2000));
        ASSERT_TRUE(client.connect(_server->port(0))) << client.error();
        // A first answer through a passing barrier: the handshake's own output (session
        // tickets) is out before the barrier starts failing.
        ASSERT_TRUE(client.write_all("before\n"));
        std::string line;
        ASSERT_TRUE(client.read_line(line)) << client.error();
        EXPECT_EQ(line, "before");

        ::testing::internal::CaptureStderr();
        g_state.fail = true;
        const auto t0 = std::chrono::steady_clock::now();
        EXPECT_TRUE(client.write_all("secret\n"));
        // Not one answer byte: a TLS record is whole or absent, so a read_line that fails and
        // a close (not a read timeout) behind it mean nothing of "secret\n" arrived.
        const bool answered = client.read_line(line);
        std::string what;
        const bool closed = !answered && client.wait_closed(what);
        const auto waited = std::chrono::steady_clock::now() - t0;
        EXPECT_TRUE(eventually([] { return g_state.answers.load() == 2; }));
        EXPECT_TRUE(eventually([this] { return _server->stats().open_connections == 0; }));
        g_state.fail = false;
        const std::string log = ::testing::internal::GetCapturedStderr();
        EXPECT_FALSE(answered) << "answer leaked past a failed barrier: " << line;
        EXPECT_TRUE(closed) << "not closed within the read timeout: " << what;
        EXPECT_LT(waited, 2s);
        EXPECT_GE(g_state.failed_calls.load(), 1u);
        EXPECT_NE(log.find("output barrier failed"), std::string::npos) << log;
        std::fputs(log.c_str(), stderr);
    }
    // The server keeps serving once the barrier passes again.
    test::tls_client again(client_config(2000));
    ASSERT_TRUE(again.connect(_server->port(0))) << again.error();
    ASSERT_TRUE(again.write_all("after\n"));
    std::string line;
    ASSERT_TRUE(again.read_line(line)) << again.error();
    EXPECT_EQ(line, "after");
    EXPECT_GT(g_state.calls.load(), g_state.calls_at_answer.load());
}

TEST_F(engine_barrier, pipelined_answers_pass_the_barrier_whole_and_in_order) {
    start();
    test::tls_client client(client_config(2000));
    ASSERT_TRUE(client.connect(_server->port(0))) << client.error();
    constexpr int requests_count = 200;
    std::string batch;
    for (int i = 0; i < requests_count; ++i) {
        batch += "request " + std::to_string(i) + "\n";
    }
    ASSERT_LE(batch.size(), 4096u); // one input buffer: all of it in flight at once
    ASSERT_TRUE(client.write_all(batch));
    for (int i = 0; i < requests_count; ++i) {
        std::string line;
        ASSERT_TRUE(client.read_line(line)) << "answer " << i << ": " << client.error();
        ASSERT_EQ(line, "request " + std::to_string(i));
    }
    EXPECT_EQ(g_state.answers.load(), static_cast<std::uint64_t>(requests_count));
    EXPECT_GT(g_state.calls.load(), g_state.calls_at_answer.load());
    EXPECT_EQ(g_state.failed_calls.load(), 0u);
    // The next line is the next answer: none was duplicated.
    ASSERT_TRUE(client.write_all("end\n"));
    std::string line;
    ASSERT_TRUE(client.read_line(line)) << client.error();
    EXPECT_EQ(line, "end");
}

} // namespace
} // namespace keyrail::engine
