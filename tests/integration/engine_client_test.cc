// Outbound mTLS connections over real io_uring: server B dials server A on 127.0.0.1 with a
// client certificate and checks A's node identity (URI SAN); the two exchange length-prefixed
// frames through the same protocol interface as accepted connections. A is stopped and started
// again on the same port and B reconnects by itself (exponential backoff with jitter); a peer
// presenting another node identity is refused with a logged reason.
#include "engine/server.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/test_certs.h"

#ifndef KEYRAIL_SOURCE_DIR
#error "KEYRAIL_SOURCE_DIR must point at the source tree"
#endif

namespace keyrail::engine {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t ms_ns = 1'000'000;

std::filesystem::path g_certs;
std::string cert(const char* name) { return (g_certs / name).string(); }

// A frame: 4-byte big-endian length, then the payload.
std::string frame(std::string_view payload) {
    std::string out(4, '\0');
    const auto n = static_cast<std::uint32_t>(payload.size());
    out[0] = static_cast<char>(n >> 24);
    out[1] = static_cast<char>(n >> 16);
    out[2] = static_cast<char>(n >> 8);
    out[3] = static_cast<char>(n);
    out += payload;
    return out;
}

// Parses one frame off the front of in: the payload and the bytes it took (0: need more).
std::size_t parse_frame(std::span<const char> in, std::string_view& payload) {
    if (in.size() < 4) {
        return 0;
    }
    const auto* b = reinterpret_cast<const unsigned char*>(in.data());
    const std::size_t n = (std::size_t{b[0]} << 24) | (std::size_t{b[1]} << 16) |
                          (std::size_t{b[2]} << 8) | std::size_t{b[3]};
    if (in.size() < 4 + n) {
        return 0;
    }
    payload = std::string_view(in.data() + 4, n);
    return 4 + n;
}

// What the test reads back. Protocols write it from shard threads under the mutex (test code,
// not the data path).
struct record {
    std::mutex mutex;
    std::vector<std::string> server_saw;   // A: "<peer URI> <payload>"
    std::vector<std::string> client_saw;   // B: payloads of A's answers
    std::atomic<int> client_opens{0};
    std::atomic<int> client_closes{0};
    std::atomic<int> ticks_sent{0};
    std::atomic<bool> outbound_flag_ok{true};
};
record* g_record = nullptr;

// Server A: answers each frame with "echo:<payload>".
class frame_echo final : public protocol {
public:
    handler_result on_data(connection_context& ctx, std::span<const char> in,
                           output& out) noexcept override {
        std::string_view payload;
        const std::size_t used = parse_frame(in, payload);
        if (used == 0) {
            return {0, after_flush::keep_open};
        }
        {
            std::lock_guard lock(g_record->mutex);
            g_record->server_saw.push_back(
                (ctx.peer().san_uris.empty() ? std::string("-") : ctx.peer().san_uris[0]) + " " +
                std::string(payload));
        }
        if (ctx.is_outbound()) {
            g_record->outbound_flag_ok = false;
        }
        (void)out.append(frame("echo:" + std::string(payload)));
        return {used, after_flush::keep_open};
    }
};

// Server B's side of the outbound connection: says hello on every (re)connect through
// shard_context::send, records A's answers.
class frame_client final : public protocol {
public:
    admission on_open(connection_context& ctx) noexcept override {
        const int n = g_record->client_opens.fetch_add(1) + 1;
        if (!ctx.is_outbound() || ctx.outbound_index() != 0 ||
            ctx.peer().san_uris.empty() || ctx.peer().san_uris[0] != "urn:keyrail:node:1") {
            g_record->outbound_flag_ok = false;
        }
        const std::string hello = frame("hello " + std::to_string(n));
        if (!ctx.shard().send(ctx.id(), hello)) {
            g_record->outbound_flag_ok = false;
        }
        return admission::accept;
    }
    handler_result on_data(connection_context&, std::span<const char> in,
                           output&) noexcept override {
        std::string_view payload;
        const std::size_t used = parse_frame(in, payload);
        if (used == 0) {
            return {0, after_flush::keep_open};
        }
        std::lock_guard lock(g_record->mutex);
        g_record->client_saw.emplace_back(payload);
        return {used, after_flush::keep_open};
    }
    void on_close(connection_context&) noexcept override { g_record->client_closes.fetch_add(1); }
};

// B's shard hooks: a 10 ms periodic timer sends "tick <k>" on the outbound connection whenever
// it is up (outbound_connection + send), three times in all.
class ticking_hooks final : public shard_hooks, public timer_handler {
public:
    void on_start(shard_context& shard) noexcept override {
        auto t = shard.add_timer(10 * ms_ns, 10 * ms_ns, *this, 0);
        if (t) {
            _timer = *t;
        }
    }
    void on_timer(shard_context& shard, timer_id id, std::uint64_t) noexcept override {
        auto conn = shard.outbound_connection(0);
        if (!conn) {
            return;
        }
        const int k = g_record->ticks_sent.load() + 1;
        if (shard.send(*conn, frame("tick " + std::to_string(k)))) {
            g_record->ticks_sent = k;
        }
        if (k == 3) {
            (void)shard.cancel_timer(id);
        }
    }

private:
    timer_id _timer{};
};

struct running {
    std::unique_ptr<server> srv;
    std::thread thread;
    result<void> result_;

    void start(server_config c) {
        auto s = server::create(std::move(c));
        ASSERT_TRUE(s.has_value()) << s.error().message();
        srv = std::move(*s);
        thread = std::thread([this] { result_ = srv->run(); });
    }
    void stop() {
        if (thread.joinable()) {
            srv->request_stop();
            thread.join();
            EXPECT_TRUE(result_.has_value()) << result_.error().message();
        }
    }
    ~running() { stop(); }
};

class engine_client : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        g_certs = keyrail::test::make_test_certs("keyrail-client-certs");
        ASSERT_FALSE(g_certs.empty()) << "tests/support/make_test_certs.sh failed";
    }
    static void TearDownTestSuite() { std::filesystem::remove_all(g_certs); }

    void SetUp() override { g_record = &_record; }
    void TearDown() override {
        _b.stop();
        _a.stop();
        g_record = nullptr;
    }

    static server_config base() {
        server_config c;
        c.shard_count = 2;
        c.pinning = thread_pinning::none;
        c.signals = stop_signals::ignore;
        c.connections_per_shard_max = 8;
        c.input_buffer_bytes = 2048;
        c.output_buffer_bytes = 2048;
        c.socket_buffer_bytes = 4096;
        c.timers_per_shard_max = 8;
        c.drain_timeout = 2s;
        return c;
    }

    // Node 1: a listener that presents node1's certificate and accepts node certificates.
    static server_config node_a(std::uint16_t port) {
        server_config c = base();
        listener_config l;
        l.port = port;
        l.tls.cert_file = cert("node1.pem");
        l.tls.key_file = cert("node1.key");
        l.tls.ca_file = cert("ca.pem");
        l.make_protocol = [](std::size_t) { return std::make_unique<frame_echo>(); };
        c.listeners.push_back(std::move(l));
        return c;
    }

    // Node 2: no listener, one outbound connection to port, homed on shard 1.
    static server_config node_b(std::uint16_t port, const char* expected_uri) {
        server_config c = base();
        outbound_config o;
        o.port = port;
        o.shard_index = 1;
        o.tls.cert_file = cert("node2.pem");
        o.tls.key_file = cert("node2.key");
        o.tls.ca_file = cert("ca.pem");
        o.tls.expected_peer_uri = expected_uri;
        o.backoff_min = 50ms;
        o.backoff_max = 400ms;
        o.connect_timeout = 1s;
        o.make_protocol = [](std::size_t) { return std::make_unique<frame_client>(); };
        c.outbound.push_back(std::move(o));
        c.make_shard_hooks = [](std::size_t shard) -> std::unique_ptr<shard_hooks> {
            if (shard == 1) {
                return std::make_unique<ticking_hooks>();
            }
            return nullptr;
        };
        return c;
    }

    template <class Pred>
    static bool eventually(Pred pred, int tries = 500) {
        for (int i = 0; i < tries; ++i) {
            if (pred()) {
                return true;
            }
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }

    bool client_saw(const std::string& payload) {
        std::lock_guard lock(_record.mutex);
        for (const auto& s : _record.client_saw) {
            if (s == payload) {
                return true;
            }
        }
        return false;
    }

    record _record;
    running _a;
    running _b;
};

TEST_F(engine_client, outbound_mtls_exchange_and_identity) {
    _a.start(node_a(0));
    const std::uint16_t port = _a.srv->port(0);
    _b.start(node_b(port, "urn:keyrail:node:1"));
    EXPECT_TRUE(eventually([&] { return client_saw("echo:hello 1"); }));
    EXPECT_TRUE(eventually([&] { return client_saw("echo:tick 3"); }));
    EXPECT_TRUE(client_saw("echo:tick 1"));
    EXPECT_TRUE(client_saw("echo:tick 2"));
    {
        std::lock_guard lock(_record.mutex);
        ASSERT_FALSE(_record.server_saw.empty());
        // A saw B's client certificate.
        EXPECT_EQ(_record.server_saw[0], "urn:keyrail:node:2 hello 1");
    }
    EXPECT_TRUE(_record.outbound_flag_ok.load());
    const server_stats b = _b.srv->stats();
    EXPECT_EQ(b.outbound_connected, 1u);
    EXPECT_EQ(b.outbound_open, 1u);
    EXPECT_EQ(b.outbound_refused, 0u);
    EXPECT_EQ(_b.srv->shard_stats(1).outbound_open, 1u); // its home shard
    _b.stop();
    EXPECT_EQ(_record.client_closes.load(), 1);
    EXPECT_TRUE(eventually([&] { return _a.srv->stats().open_connections == 0; }));
}

TEST_F(engine_client, reconnects_after_listener_restart) {
    _a.start(node_a(0));
    const std::uint16_t port = _a.srv->port(0);
    _b.start(node_b(port, "urn:keyrail:node:1"));
    ASSERT_TRUE(eventually([&] { return client_saw("echo:hello 1"); }));

    _a.stop(); // closes B's connection (close_notify); B backs off against a closed port
    ASSERT_TRUE(eventually([&] { return _b.srv->stats().outbound_open == 0; }));
    std::this_thread::sleep_for(300ms); // a few refused connects
    EXPECT_GE(_b.srv->stats().outbound_failures, 1u);

    running a2;
    a2.start(node_a(port)); // the same port again
    const bool again = eventually([&] { return client_saw("echo:hello 2"); });
    EXPECT_TRUE(again);
    EXPECT_EQ(_b.srv->stats().outbound_connected, 2u);
    EXPECT_EQ(_b.srv->stats().outbound_open, 1u);
    _b.stop();
    a2.stop();
}

TEST_F(engine_client, wrong_peer_identity_is_refused_with_reason) {
    _a.start(node_a(0));
    const std::uint16_t port = _a.srv->port(0);
    ::testing::internal::CaptureStderr();
    _b.start(node_b(port, "urn:keyrail:node:9"));
    const bool refused = eventually([&] { return _b.srv->stats().outbound_refused >= 2; });
    _b.stop();
    const std::string log = ::testing::internal::GetCapturedStderr();
    std::fputs(log.c_str(), stderr);
    EXPECT_TRUE(refused);
    EXPECT_NE(log.find("identity mismatch"), std::string::npos) << log;
    EXPECT_NE(log.find("expected 'urn:keyrail:node:9'"), std::string::npos) << log;
    EXPECT_NE(log.find("presented 'urn:keyrail:node:1'"), std::string::npos) << log;
    EXPECT_EQ(_b.srv->stats().outbound_connected, 0u);
    EXPECT_EQ(_record.client_opens.load(), 0); // the protocol never saw it
}

TEST_F(engine_client, peer_from_another_ca_fails_the_handshake) {
    // A presents a certificate B's CA file does not know: the TLS client refuses it.
    server_config a = base();
    listener_config l;
    l.tls.cert_file = cert("other_client.pem");
    l.tls.key_file = cert("other_client.key");
    l.tls.ca_file = cert("ca.pem");
    l.make_protocol = [](std::size_t) { return std::make_unique<frame_echo>(); };
    a.listeners.push_back(std::move(l));
    _a.start(std::move(a));
    ::testing::internal::CaptureStderr();
    _b.start(node_b(_a.srv->port(0), "urn:keyrail:node:1"));
    const bool failed = eventually([&] { return _b.srv->stats().outbound_failures >= 1; });
    _b.stop();
    const std::string log = ::testing::internal::GetCapturedStderr();
    std::fputs(log.c_str(), stderr);
    EXPECT_TRUE(failed);
    EXPECT_NE(log.find("outbound 127.0.0.1"), std::string::npos) << log;
    EXPECT_NE(log.find("handshake failed"), std::string::npos) << log;
    EXPECT_EQ(_b.srv->stats().outbound_connected, 0u);
}

} // namespace
} // namespace keyrail::engine
