// keyrail-bench against tests/support/bench_test_server: counts, verification, open-loop
// latency under a paused server, paired mode, and one-line set-up errors.
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "control/pki.h"
#include "tests/support/bench_test_server.h"
#include "tools/keyrail-bench/load.h"
#include "tools/keyrail-bench/options.h"
#include "tools/keyrail-bench/report.h"

namespace keyrail::bench_client {
namespace {

namespace fs = std::filesystem;
namespace pki = control::pki;

struct files {
    fs::path dir;
    std::string path(const std::string& name) const { return (dir / name).string(); }
};

// Certificates shared by every test: a CA, a server certificate for 127.0.0.1, an SAE client
// certificate, plus a second CA and certificates that must be refused.
class bench_client_test : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        s_files = new files{fs::temp_directory_path() /
                            ("keyrail-bench-test-" + std::to_string(::getpid()))};
        auto ca = pki::make_ca("bench test CA");
        ASSERT_TRUE(ca);
        auto other_ca = pki::make_ca("unrelated CA");
        ASSERT_TRUE(other_ca);
        pki::cert_spec server_spec{"kme", {}, {"localhost"}, {"127.0.0.1"}};
        pki::cert_spec client_spec{"sae a", {"urn:keyrail:sae:a"}, {"localhost"}, {"127.0.0.1"}};
        pki::cert_spec wrong_name_spec{"kme", {}, {"other.example"}, {}};
        auto server = pki::issue(*ca, server_spec);
        auto client = pki::issue(*ca, client_spec);
        auto wrong_name = pki::issue(*ca, wrong_name_spec);
        auto stranger = pki::issue(*other_ca, client_spec);
        ASSERT_TRUE(server && client && wrong_name && stranger);
        const auto& f = *s_files;
        ASSERT_TRUE(pki::write_files(*ca, f.path("ca.pem"), f.path("ca.key")));
        ASSERT_TRUE(pki::write_files(*other_ca, f.path("other_ca.pem"), f.path("other_ca.key")));
        ASSERT_TRUE(pki::write_files(*server, f.path("server.pem"), f.path("server.key")));
        ASSERT_TRUE(pki::write_files(*client, f.path("client.pem"), f.path("client.key")));
        ASSERT_TRUE(pki::write_files(*wrong_name, f.path("wrong.pem"), f.path("wrong.key")));
        ASSERT_TRUE(pki::write_files(*stranger, f.path("stranger.pem"), f.path("stranger.key")));
    }
    static void TearDownTestSuite() {
        std::error_code ec;
        fs::remove_all(s_files->dir, ec);
        delete s_files;
        s_files = nullptr;
    }

    static test::bench_server_config server_config() {
        test::bench_server_config c;
        c.cert_file = s_files->path("server.pem");
        c.key_file = s_files->path("server.key");
        c.ca_file = s_files->path("ca.pem");
        return c;
    }

    static options client_options(std::uint16_t port) {
        options o;
        o.master.url = parse_base_url("https://127.0.0.1:" + std::to_string(port));
        o.master.ca_file = s_files->path("ca.pem");
        o.master.cert_file = s_files->path("client.pem");
        o.master.key_file = s_files->path("client.key");
        o.slave_sae_id = "b";
        o.master_sae_id = "a";
        o.timeout_s = 5;
        o.progress = false;
        return o;
    }

    static std::string setup_failure(const options& o) {
        try {
            (void)run_load(o, {});
        } catch (const setup_error& e) {
            return e.what();
        }
        return "(no error)";
    }

    static files* s_files;
};

files* bench_client_test::s_files = nullptr;

void expect_counts_add_up(const load_stats& s) {
    EXPECT_EQ(s.requests, s.successes + s.errors());
    EXPECT_EQ(s.latency_ns.count() + s.transport + s.timeouts, s.requests);
}

TEST_F(bench_client_test, closed_loop_counts_add_up) {
    test::bench_test_server server(server_config());
    options o = client_options(server.port());
    o.connections_count = 4;
    o.pipeline_depth = 4;
    o.threads_count = 2;
    o.requests_max = 2000;
    o.key_number = 2;
    o.key_size_bits = 256;
    const run_result r = run_load(o, {});
    print_summary(stdout, o, r);
    expect_counts_add_up(r.stats);
    EXPECT_EQ(r.stats.requests, 2000u);
    EXPECT_EQ(r.stats.successes, 2000u);
    EXPECT_EQ(r.stats.errors(), 0u);
    EXPECT_EQ(r.stats.keys, 4000u);
    EXPECT_EQ(r.stats.key_bytes, 4000u * 32);
    EXPECT_EQ(r.stats.connects, 4u);
    EXPECT_EQ(server.requests_served(), 2001u); // and one status request from the probe
    EXPECT_FALSE(r.stalled);
}

TEST_F(bench_client_test, post_and_status_requests_verify) {
    test::bench_test_server server(server_config());
    options o = client_options(server.port());
    o.method = http_method::post;
    o.key_number = 5;
    o.key_size_bits = 512;
    o.requests_max = 200;
    o.connections_count = 2;
    run_result r = run_load(o, {});
    EXPECT_EQ(r.stats.successes, 200u);
    EXPECT_EQ(r.stats.keys, 1000u);
    o.kind = request_kind::status;
    r = run_load(o, {});
    EXPECT_EQ(r.stats.successes, 200u);
    EXPECT_EQ(r.stats.keys, 0u);
}

TEST_F(bench_client_test, corrupted_base64_is_an_invalid_response) {
    test::bench_test_server server(server_config());
    options o = client_options(server.port());
    o.requests_max = 500;
    o.connections_count = 2;
    o.pipeline_depth = 2;
    server.corrupt_next(7);
    const run_result r = run_load(o, {});
    expect_counts_add_up(r.stats);
    EXPECT_EQ(r.stats.requests, 500u);
    EXPECT_EQ(r.stats.invalid_response, 7u);
    EXPECT_EQ(r.stats.successes, 493u);
    EXPECT_EQ(r.stats.invalid_reasons.count("key container: key is not base64"), 1u);
}

TEST_F(bench_client_test, wrong_key_length_is_an_invalid_response) {
    test::bench_server_config sc = server_config();
    sc.key_bits_override = 128;
    test::bench_test_server server(sc);
    options o = client_options(server.port());
    o.requests_max = 50;
    o.key_size_bits = 256;
    o.method = http_method::post;
    const run_result r = run_load(o, {});
    expect_counts_add_up(r.stats);
    EXPECT_EQ(r.stats.requests, 50u);
    EXPECT_EQ(r.stats.invalid_response, 50u);
    EXPECT_EQ(r.stats.invalid_reasons.count("key container: key length is not size/8 bytes"), 1u);
}

TEST_F(bench_client_test, open_loop_latency_includes_queueing_behind_a_pause) {
    test::bench_test_server server(server_config());
    options o = client_options(server.port());
    o.rate_per_s = 500;
    o.duration_s = 0.8;
    o.connections_count = 2;
    o.pipeline_depth = 1;
    std::thread pauser([&server] {
        std::this_thread::sleep_for(std::chrono::milliseconds(350));
        server.pause_for(std::chrono::milliseconds(100));
    });
    const run_result r = run_load(o, {});
    pauser.join();
    print_summary(stdout, o, r);
    expect_counts_add_up(r.stats);
    EXPECT_EQ(r.stats.errors(), 0u);
    // About 400 requests, about 50 of them scheduled during the pause: the first of those
    // waits the whole 100 ms, so max and p99 (the top 4) sit near 100 ms.
    EXPECT_GE(r.stats.requests, 350u);
    EXPECT_GE(r.stats.latency_ns.max(), 95'000'000u);
    EXPECT_GE(r.stats.latency_ns.value_at_quantile(0.99), 85'000'000u);
    EXPECT_LT(r.stats.latency_ns.value_at_quantile(0.5), 50'000'000u);
}

TEST_F(bench_client_test, paired_mode_fetches_the_same_keys_from_the_slave) {
    test::bench_server_config sc = server_config();
    sc.remember_keys = true;
    test::bench_test_server server(sc);
    options o = client_options(server.port());
    o.kind = request_kind::paired;
    o.slave = o.master;
    o.key_number = 3;
    o.requests_max = 300;
    o.connections_count = 2;
    o.pipeline_depth = 2;
    const run_result r = run_load(o, {});
    print_summary(stdout, o, r);
    expect_counts_add_up(r.stats);
    EXPECT_EQ(r.stats.successes, 300u);
    EXPECT_EQ(r.stats.key_mismatch, 0u);
    EXPECT_EQ(r.stats.http_requests, 600u);
    EXPECT_EQ(r.stats.keys, 900u);
}

TEST_F(bench_client_test, unreachable_url_is_one_line) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    ::close(fd); // nothing listens on this port now
    const std::string why = setup_failure(client_options(ntohs(addr.sin_port)));
    EXPECT_NE(why.find("cannot connect to https://127.0.0.1:"), std::string::npos) << why;
    EXPECT_NE(why.find("refused"), std::string::npos) << why;
    EXPECT_EQ(why.find('\n'), std::string::npos) << why;
}

TEST_F(bench_client_test, unknown_ca_is_named) {
    test::bench_test_server server(server_config());
    options o = client_options(server.port());
    o.master.ca_file = s_files->path("other_ca.pem");
    const std::string why = setup_failure(o);
    EXPECT_NE(why.find("unknown CA"), std::string::npos) << why;
}

TEST_F(bench_client_test, hostname_mismatch_is_named) {
    test::bench_server_config sc = server_config();
    sc.cert_file = s_files->path("wrong.pem");
    sc.key_file = s_files->path("wrong.key");
    test::bench_test_server server(sc);
    const std::string why = setup_failure(client_options(server.port()));
    EXPECT_NE(why.find("hostname mismatch"), std::string::npos) << why;
}

TEST_F(bench_client_test, refused_client_certificate_is_named) {
    test::bench_test_server server(server_config());
    options o = client_options(server.port());
    o.master.cert_file = s_files->path("stranger.pem");
    o.master.key_file = s_files->path("stranger.key");
    const std::string why = setup_failure(o);
    EXPECT_NE(why.find("certificate refused"), std::string::npos) << why;
}

TEST_F(bench_client_test, non_etsi_server_is_named) {
    test::bench_server_config sc = server_config();
    sc.etsi = false;
    test::bench_test_server server(sc);
    const std::string why = setup_failure(client_options(server.port()));
    EXPECT_NE(why.find("is not an ETSI 014 server"), std::string::npos) << why;
    EXPECT_NE(why.find("404"), std::string::npos) << why;
}

TEST_F(bench_client_test, stopped_server_stalls_then_stops_by_itself) {
    auto server = std::make_unique<test::bench_test_server>(server_config());
    options o = client_options(server->port());
    o.requests_max = 1'000'000'000; // no duration: only the stall guard can end this
    o.timeout_s = 0.5;
    std::thread stopper([&server] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        server->stop();
    });
    const auto t0 = std::chrono::steady_clock::now();
    const run_result r = run_load(o, {});
    stopper.join();
    expect_counts_add_up(r.stats);
    EXPECT_TRUE(r.stalled);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

// The binary: exit status, one-line errors, --json.
int run_binary(const std::string& args, std::string& out) {
    const std::string cmd = std::string(KEYRAIL_BENCH_PATH) + " " + args + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) {
        return -1;
    }
    char buf[4096];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
        out.append(buf, n);
    }
    const int status = ::pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(bench_client_test, binary_writes_json_and_exit_codes) {
    test::bench_test_server server(server_config());
    const std::string common = "--url https://127.0.0.1:" + std::to_string(server.port()) +
                               " --ca " + s_files->path("ca.pem") + " --cert " +
                               s_files->path("client.pem") + " --key " +
                               s_files->path("client.key") + " --slave-sae b";
    const std::string json = s_files->path("out.json");
    std::string out;
    EXPECT_EQ(run_binary(common + " --requests 300 --connections 2 --pipeline 2 --number 4 "
                                  "--size 128 --cpus 0 --json " + json,
                         out),
              0)
        << out;
    std::printf("%s", out.c_str());
    std::ifstream in(json);
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_NE(text.str().find("\"requests\": 300,"), std::string::npos) << text.str();
    EXPECT_NE(text.str().find("\"keys\": 1200,"), std::string::npos) << text.str();
    EXPECT_NE(text.str().find("\"p999\""), std::string::npos) << text.str();

    out.clear();
    server.corrupt_next(1);
    EXPECT_EQ(run_binary(common + " --requests 20", out), 1) << out;
    EXPECT_NE(out.find("invalid_response 1"), std::string::npos) << out;

    out.clear();
    EXPECT_EQ(run_binary(common + " --ca " + s_files->path("other_ca.pem") + " --requests 5",
                         out),
              2);
    EXPECT_NE(out.find("unknown CA"), std::string::npos) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;

    out.clear();
    EXPECT_EQ(run_binary("--url http://x", out), 2);
    EXPECT_NE(out.find("https://"), std::string::npos) << out;
}

} // namespace
} // namespace keyrail::bench_client

namespace keyrail::bench_client {
namespace {

// Not a check: sample numbers for the README (--gtest_also_run_disabled_tests).
TEST_F(bench_client_test, DISABLED_sample_numbers) {
    test::bench_test_server server(server_config());
    options o = client_options(server.port());
    o.connections_count = 8;
    o.pipeline_depth = 4;
    o.duration_s = 3;
    o.cpus = {1};
    run_result r = run_load(o, {});
    print_summary(stdout, o, r);
    o.rate_per_s = 2000;
    o.pipeline_depth = 1;
    r = run_load(o, {});
    print_summary(stdout, o, r);
}

} // namespace
} // namespace keyrail::bench_client
