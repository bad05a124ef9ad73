// The engine's TLS server over real io_uring and loopback TCP, with a line-echo protocol:
// mutual TLS and the peer identity, refusals with their logged reasons, resumption, many
// pipelined connections across two shards, timeouts, limits and the drain.
#include "engine/server.h"
#include "engine/tls.h"
#include "tests/support/test_certs.h"
#include "tests/support/tls_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#ifndef KEYRAIL_SOURCE_DIR
#error "KEYRAIL_SOURCE_DIR must point at the source tree"
#endif

namespace keyrail::engine {
namespace {

using namespace std::chrono_literals;

std::filesystem::path g_certs;

// One line in, one line out. "whoami" answers "<first SAN URI> <CN>", "quit" closes after the
// answer, "shard" answers the shard index; anything else is echoed.
class line_echo final : public protocol {
public:
    handler_result on_data(connection_context& ctx, std::span<const char> in,
                           output& out) noexcept override {
        const std::string_view text(in.data(), in.size());
        const auto nl = text.find('\n');
        if (nl == std::string_view::npos) {
            return {0, after_flush::keep_open};
        }
        const std::string_view line = text.substr(0, nl);
        if (line == "whoami") {
            std::string answer = ctx.peer().san_uris.empty() ? "-" : ctx.peer().san_uris[0];
            answer += " " + ctx.peer().subject_cn + "\n";
            (void)out.append(answer);
        } else if (line == "quit") {
            (void)out.append(std::string_view("bye\n"));
            return {nl + 1, after_flush::close};
        } else if (line == "shard") {
            const std::string answer = std::to_string(ctx.shard().shard_index()) + "\n";
            (void)out.append(answer);
        } else if (line == "big") {
            static const std::string huge = std::string(1 << 20, 'x') + "\n";
            (void)out.append(huge);
        } else {
            (void)out.append(line);
            (void)out.append(std::string_view("\n"));
        }
        return {nl + 1, after_flush::keep_open};
    }
};

std::atomic<int> g_shard_drains{0};
std::atomic<int> g_server_drains{0};

class counting_hooks final : public shard_hooks {
public:
    void on_drain(shard_context&) noexcept override { g_shard_drains.fetch_add(1); }
};

std::string cert(const char* name) { return (g_certs / name).string(); }

test::tls_client_config client_with(const char* name) {
    test::tls_client_config c;
    c.ca_file = cert("ca.pem");
    if (name != nullptr) {
        c.cert_file = cert((std::string(name) + ".pem").c_str());
        c.key_file = cert((std::string(name) + ".key").c_str());
    }
    return c;
}

class engine_server : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        g_certs = test::make_test_certs("keyrail-engine-certs");
        ASSERT_FALSE(g_certs.empty()) << "tests/support/make_test_certs.sh failed";
    }
    static void TearDownTestSuite() { std::filesystem::remove_all(g_certs); }

    server_config config() {
        server_config c;
        c.shard_count = 2;
        c.signals = stop_signals::ignore;
        c.connections_per_shard_max = 128;
        c.input_buffer_bytes = 4096;
        c.output_buffer_bytes = 8192;
        c.socket_buffer_bytes = 8192;
        c.drain_timeout = 5s;
        listener_config l;
        l.address = "127.0.0.1";
        l.tls.cert_file = cert("server.pem");
        l.tls.key_file = cert("server.key");
        l.tls.ca_file = cert("ca.pem");
        l.make_protocol = [](std::size_t) { return std::make_unique<line_echo>(); };
        c.listeners.push_back(std::move(l));
        c.make_shard_hooks = [](std::size_t) { return std::make_unique<counting_hooks>(); };
        c.drain_hook = [] { g_server_drains.fetch_add(1); };
        return c;
    }

    void start(server_config c) {
        g_shard_drains = 0;
        g_server_drains = 0;
        auto s = server::create(std::move(c));
        ASSERT_TRUE(s.has_value()) << s.error().message();
        _server = std::move(*s);
        _port = _server->port(0);
        _returned = false;
        _thread = std::thread([this] {
            _result = _server->run();
            _returned = true;
        });
    }

    void stop() {
        if (_thread.joinable()) {
            _server->request_stop();
            _thread.join();
            EXPECT_TRUE(_result.has_value()) << _result.error().message();
        }
    }

    void TearDown() override { stop(); }

    // Waits (bounded) until pred(stats) holds.
    template <class Pred>
    bool eventually(Pred pred) {
        for (int i = 0; i < 500; ++i) {
            if (pred(_server->stats())) {
                return true;
            }
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }

    void expect_refused(const char* client_cert, tls_refusal why, const char* log_text) {
        start(config());
        ::testing::internal::CaptureStderr();
        test::tls_client client(client_with(client_cert));
        const bool handshake = client.connect(_port);
        std::string what;
        if (handshake) {
            // TLS 1.3: the client finished first; the refusal arrives as an alert.
            (void)client.write_all("hello\n");
            std::string line;
            EXPECT_FALSE(client.read_line(line)) << "server answered a refused client";
        }
        const bool counted = eventually([why](const server_stats& s) {
            return s.refused[static_cast<std::size_t>(why)] == 1;
        });
        stop();
        const std::string log = ::testing::internal::GetCapturedStderr();
        EXPECT_TRUE(counted);
        EXPECT_EQ(_server->stats().handshakes, 0u);
        EXPECT_NE(log.find("handshake refused"), std::string::npos) << log;
        EXPECT_NE(log.find(log_text), std::string::npos) << log;
        std::fputs(log.c_str(), stderr);
    }

    std::unique_ptr<server> _server;
    std::uint16_t _port = 0;
    std::thread _thread;
    result<void> _result;
    std::atomic<bool> _returned{false};
};

TEST_F(engine_server, mutual_tls_echo_and_peer_identity) {
    start(config());
    test::tls_client client(client_with("client"));
    ASSERT_TRUE(client.connect(_port)) << client.error();
    ASSERT_TRUE(client.write_all("whoami\nhello\n"));
    std::string line;
    ASSERT_TRUE(client.read_line(line)) << client.error();
    EXPECT_EQ(line, "urn:keyrail:sae:alice alice");
    ASSERT_TRUE(client.read_line(line)) << client.error();
    EXPECT_EQ(line, "hello");
    ASSERT_TRUE(client.write_all("quit\n"));
    ASSERT_TRUE(client.read_line(line));
    EXPECT_EQ(line, "bye");
    std::string what;
    EXPECT_TRUE(client.wait_closed(what)) << what;
    EXPECT_TRUE(eventually([](const server_stats& s) { return s.open_connections == 0; }));
    EXPECT_EQ(_server->stats().handshakes, 1u);
}

TEST_F(engine_server, refuses_client_without_certificate) {
    expect_refused(nullptr, tls_refusal::no_certificate, "no client certificate");
}

TEST_F(engine_server, refuses_certificate_from_another_ca) {
    expect_refused("other_client", tls_refusal::unknown_ca, "unknown CA");
}

TEST_F(engine_server, refuses_expired_certificate) {
    expect_refused("expired", tls_refusal::expired, "client certificate expired");
}

TEST_F(engine_server, openssl_s_client_without_certificate_is_refused) {
    start(config());
    ::testing::internal::CaptureStderr();
    const std::string cmd = "timeout 10 openssl s_client -connect 127.0.0.1:" +
                            std::to_string(_port) + " -tls1_3 -CAfile " + cert("ca.pem") +
                            " -ign_eof </dev/null >/dev/null 2>&1";
    const int rc = std::system(cmd.c_str());
    const bool counted = eventually([](const server_stats& s) {
        return s.refused[static_cast<std::size_t>(tls_refusal::no_certificate)] == 1;
    });
    stop();
    const std::string log = ::testing::internal::GetCapturedStderr();
    std::fputs(log.c_str(), stderr);
    EXPECT_NE(rc, -1);
    EXPECT_TRUE(counted);
    EXPECT_NE(log.find("no client certificate"), std::string::npos) << log;
}

TEST_F(engine_server, session_resumption) {
    start(config());
    SSL_SESSION* session = nullptr;
    {
        test::tls_client first(client_with("client"));
        ASSERT_TRUE(first.connect(_port)) << first.error();
        EXPECT_FALSE(first.resumed());
        ASSERT_TRUE(first.write_all("ping\n"));
        std::string line;
        ASSERT_TRUE(first.read_line(line)); // also reads the tickets sent after the handshake
        session = first.session();
        ASSERT_NE(session, nullptr);
        EXPECT_EQ(SSL_SESSION_is_resumable(session), 1);
    }
    for (int i = 0; i < 4; ++i) { // the kernel may pick either shard: both share ticket keys
        test::tls_client again(client_with("client"));
        ASSERT_TRUE(again.connect(_port, session)) << again.error();
        EXPECT_TRUE(again.resumed());
        ASSERT_TRUE(again.write_all("whoami\n"));
        std::string line;
        ASSERT_TRUE(again.read_line(line)) << again.error();
        EXPECT_EQ(line, "urn:keyrail:sae:alice alice");
    }
    SSL_SESSION_free(session);
    EXPECT_GE(_server->stats().resumed, 4u);
}

// Listeners are separate trust domains (SAE, peer, admin CAs): a session from one port must
// not resume on another, or a certificate checked by one CA would be accepted by the other.
TEST_F(engine_server, a_session_does_not_resume_on_another_listener) {
    auto c = config();
    listener_config second;
    second.address = "127.0.0.1";
    second.tls = c.listeners.front().tls;
    second.make_protocol = [](std::size_t) { return std::make_unique<line_echo>(); };
    c.listeners.push_back(std::move(second));
    start(std::move(c));
    const std::uint16_t other_port = _server->port(1);
    SSL_SESSION* session = nullptr;
    {
        test::tls_client first(client_with("client"));
        ASSERT_TRUE(first.connect(_port)) << first.error();
        ASSERT_TRUE(first.write_all("ping\n"));
        std::string line;
        ASSERT_TRUE(first.read_line(line));
        session = first.session();
        ASSERT_NE(session, nullptr);
    }
    {
        test::tls_client same(client_with("client"));
        ASSERT_TRUE(same.connect(_port, session)) << same.error();
        EXPECT_TRUE(same.resumed()); // the control: it does resume on its own port
    }
    {
        test::tls_client other(client_with("client"));
        ASSERT_TRUE(other.connect(other_port, session)) << other.error();
        EXPECT_FALSE(other.resumed());
        ASSERT_TRUE(other.write_all("whoami\n"));
        std::string line;
        ASSERT_TRUE(other.read_line(line)) << other.error();
        EXPECT_EQ(line, "urn:keyrail:sae:alice alice"); // a full handshake, verified again
    }
    SSL_SESSION_free(session);
}

TEST_F(engine_server, many_connections_pipelined_across_two_shards) {
    start(config());
    constexpr int threads_count = 8;
    constexpr int connections_per_thread = 8;
    constexpr int messages_count = 40;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < threads_count; ++t) {
        threads.emplace_back([&, t] {
            std::vector<std::unique_ptr<test::tls_client>> clients;
            for (int c = 0; c < connections_per_thread; ++c) {
                clients.push_back(std::make_unique<test::tls_client>(client_with("client")));
                if (!clients.back()->connect(_port)) {
                    failures.fetch_add(1);
                    return;
                }
            }
            for (int c = 0; c < connections_per_thread; ++c) {
                std::string batch;
                for (int m = 0; m < messages_count; ++m) {
                    batch += "t" + std::to_string(t) + "c" + std::to_string(c) + "m" +
                             std::to_string(m) + "\n";
                }
                if (!clients[static_cast<std::size_t>(c)]->write_all(batch)) {
                    failures.fetch_add(1);
                }
            }
            for (int c = 0; c < connections_per_thread; ++c) {
                for (int m = 0; m < messages_count; ++m) {
                    std::string line;
                    const std::string expected = "t" + std::to_string(t) + "c" +
                                                 std::to_string(c) + "m" + std::to_string(m);
                    if (!clients[static_cast<std::size_t>(c)]->read_line(line) ||
                        line != expected) {
                        failures.fetch_add(1);
                        break;
                    }
                }
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(failures.load(), 0);
    const auto total = static_cast<std::uint64_t>(threads_count * connections_per_thread);
    EXPECT_EQ(_server->stats().handshakes, total);
    // SO_REUSEPORT spreads 64 connections over both shards.
    EXPECT_GT(_server->shard_stats(0).handshakes, 0u);
    EXPECT_GT(_server->shard_stats(1).handshakes, 0u);
}

// A listener restricted to one shard: every connection lands there, while the other
// listener still spreads over both shards.
TEST_F(engine_server, a_listener_on_one_shard_takes_every_connection_there) {
    auto c = config();
    listener_config second;
    second.address = "127.0.0.1";
    second.tls = c.listeners.front().tls;
    second.only_shard = 1;
    second.make_protocol = [](std::size_t) { return std::make_unique<line_echo>(); };
    c.listeners.push_back(std::move(second));
    start(std::move(c));
    const std::uint16_t only_port = _server->port(1);
    std::set<std::string> spread;
    for (int i = 0; i < 24; ++i) {
        for (const std::uint16_t port : {only_port, _port}) {
            test::tls_client client(client_with("client"));
            ASSERT_TRUE(client.connect(port)) << client.error();
            ASSERT_TRUE(client.write_all("shard\n"));
            std::string line;
            ASSERT_TRUE(client.read_line(line)) << client.error();
            if (port == only_port) {
                EXPECT_EQ(line, "1");
            } else {
                spread.insert(line);
            }
        }
    }
    EXPECT_EQ(spread.size(), 2u); // the control: 24 connections reach both shards

    auto bad = config();
    listener_config out_of_range;
    out_of_range.tls = bad.listeners.front().tls;
    out_of_range.only_shard = 2; // of 2 shards
    out_of_range.make_protocol = [](std::size_t) { return std::make_unique<line_echo>(); };
    bad.listeners.push_back(std::move(out_of_range));
    EXPECT_FALSE(server::create(std::move(bad)).has_value());
}

TEST_F(engine_server, large_response_flows_through_small_buffers) {
    auto c = config();
    c.output_buffer_bytes = 2 << 20;
    c.connections_per_shard_max = 4;
    start(std::move(c));
    test::tls_client client(client_with("client"));
    ASSERT_TRUE(client.connect(_port)) << client.error();
    ASSERT_TRUE(client.write_all("big\nafter\n"));
    std::string line;
    ASSERT_TRUE(client.read_line(line)) << client.error();
    EXPECT_EQ(line.size(), std::size_t{1} << 20);
    ASSERT_TRUE(client.read_line(line)) << client.error();
    EXPECT_EQ(line, "after");
}

TEST_F(engine_server, output_over_limit_closes_connection) {
    start(config());
    test::tls_client client(client_with("client"));
    ASSERT_TRUE(client.connect(_port)) << client.error();
    ASSERT_TRUE(client.write_all("big\n"));
    std::string what;
    EXPECT_TRUE(client.wait_closed(what));
    EXPECT_TRUE(eventually([](const server_stats& s) { return s.limit_closes == 1; }));
}

TEST_F(engine_server, request_over_input_limit_closes_connection) {
    start(config());
    test::tls_client client(client_with("client"));
    ASSERT_TRUE(client.connect(_port)) << client.error();
    ASSERT_TRUE(client.write_all(std::string(5000, 'a'))); // no newline, limit is 4096
    std::string what;
    EXPECT_TRUE(client.wait_closed(what));
    EXPECT_TRUE(eventually([](const server_stats& s) { return s.limit_closes == 1; }));
}

TEST_F(engine_server, handshake_idle_and_request_timeouts) {
    auto c = config();
    c.handshake_timeout = 300ms;
    c.idle_timeout = 300ms;
    c.request_timeout = 300ms;
    start(std::move(c));
    // A TCP client that never starts TLS.
    test::tls_client idle(client_with("client"));
    ASSERT_TRUE(idle.connect(_port)) << idle.error();
    test::tls_client partial(client_with("client"));
    ASSERT_TRUE(partial.connect(_port)) << partial.error();
    ASSERT_TRUE(partial.write_all("no newline"));
    const int raw = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(_port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(raw, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    std::string what;
    EXPECT_TRUE(idle.wait_closed(what));
    EXPECT_TRUE(partial.wait_closed(what));
    char byte = 0;
    timeval tv{5, 0};
    setsockopt(raw, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    EXPECT_EQ(::recv(raw, &byte, 1, 0), 0); // closed by the handshake timeout
    ::close(raw);
    EXPECT_TRUE(eventually([](const server_stats& s) { return s.timeouts == 3; }));
}

TEST_F(engine_server, send_timeout_closes_a_client_that_does_not_read) {
    auto c = config();
    c.shard_count = 1;
    c.connections_per_shard_max = 2;
    c.output_buffer_bytes = 2 << 20; // one 1 MiB answer at a time
    c.send_timeout = 300ms;
    start(std::move(c));
    test::tls_client client(client_with("client"));
    ASSERT_TRUE(client.connect(_port)) << client.error();
    // 64 MiB of answers, never read: far more than the loopback socket buffers hold for a
    // reader that reads nothing, so a send stays in flight until the timeout.
    std::string requests;
    for (int i = 0; i < 64; ++i) {
        requests += "big\n";
    }
    ASSERT_TRUE(client.write_all(requests));
    EXPECT_TRUE(eventually([](const server_stats& s) { return s.timeouts == 1; }));
    EXPECT_TRUE(eventually([](const server_stats& s) { return s.open_connections == 0; }));
    EXPECT_EQ(_server->stats().limit_closes, 0u);
}

TEST_F(engine_server, drain_finishes_in_flight_request_then_run_returns) {
    start(config());
    test::tls_client busy(client_with("client"));
    ASSERT_TRUE(busy.connect(_port)) << busy.error();
    test::tls_client quiet(client_with("client"));
    ASSERT_TRUE(quiet.connect(_port)) << quiet.error();
    ASSERT_TRUE(busy.write_all("in flight"));
    ASSERT_TRUE(eventually([](const server_stats& s) { return s.handshakes == 2; }));
    std::this_thread::sleep_for(100ms); // the partial request reaches the server

    _server->request_stop();
    std::string what;
    EXPECT_TRUE(quiet.wait_closed(what)) << "idle connection not closed by the drain";
    std::this_thread::sleep_for(200ms);
    EXPECT_FALSE(_returned.load()) << "run() returned with a request in flight";
    // New connections are refused once the drain started.
    test::tls_client late(client_with("client"));
    EXPECT_FALSE(late.connect(_port) && late.write_all("x\n") && [&] {
        std::string l;
        return late.read_line(l);
    }());

    ASSERT_TRUE(busy.write_all(" done\n"));
    std::string line;
    ASSERT_TRUE(busy.read_line(line)) << busy.error();
    EXPECT_EQ(line, "in flight done");
    EXPECT_TRUE(busy.wait_closed(what));
    _thread.join();
    EXPECT_TRUE(_returned.load());
    EXPECT_TRUE(_result.has_value());
    EXPECT_EQ(g_shard_drains.load(), 2);
    EXPECT_EQ(g_server_drains.load(), 1);
}

TEST_F(engine_server, sigterm_drains_and_run_returns) {
    // SIGTERM is blocked in this thread before run() starts, as keyraild's main does.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigset_t old;
    pthread_sigmask(SIG_BLOCK, &mask, &old);
    auto c = config();
    c.signals = stop_signals::handle;
    start(std::move(c));
    test::tls_client client(client_with("client"));
    ASSERT_TRUE(client.connect(_port)) << client.error();
    ASSERT_TRUE(client.write_all("ping\n"));
    std::string line;
    ASSERT_TRUE(client.read_line(line));
    ::kill(::getpid(), SIGTERM);
    std::string what;
    EXPECT_TRUE(client.wait_closed(what));
    _thread.join();
    EXPECT_TRUE(_result.has_value());
    EXPECT_EQ(g_server_drains.load(), 1);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

} // namespace
} // namespace keyrail::engine
