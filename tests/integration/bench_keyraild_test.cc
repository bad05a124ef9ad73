// keyrail-bench against a real keyraild on loopback: the counts add up, paired runs compare the
// slave's bytes with the master's, and open-loop latency shows a server stall (keyraild stopped
// with SIGSTOP for 100 ms) instead of hiding it (coordinated omission).
#include <signal.h>

#include <chrono>
#include <regex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/node_harness.h"

namespace {

using keyrail::test::node::node_fixture;
using keyrail::test::node::node_options;
using keyrail::test::node::read_text;
using keyrail::test::node::run_capture;
using keyrail::test::node::shell_quote;

// The number after "field": in keyrail-bench's --json output (the first occurrence).
double json_number(const std::string& json, const std::string& field) {
    const std::regex re("\"" + field + "\":\\s*([-0-9.eE+]+)");
    std::smatch m;
    if (!std::regex_search(json, m, re)) {
        ADD_FAILURE() << "no " << field << " in " << json;
        return -1;
    }
    return std::stod(m[1].str());
}

class bench_keyraild_test : public ::testing::Test {
protected:
    void SetUp() override {
        node_options o;
        o.rate_bps = 100'000'000; // keys never run out in these runs
        o.shards = 1;
        n.write_config(o);
        n.start();
    }
    void TearDown() override {
        if (n.pid > 0) {
            EXPECT_EQ(n.stop(SIGTERM), 0) << read_text(n.log);
        }
        n.expect_log_clean();
    }

    // keyrail-bench as alice (master) for bob (slave); returns its --json output.
    std::string bench(const std::string& args, int* exit_code) {
        const std::string d = n.dir.string();
        const std::string json = d + "/bench.json";
        const std::string cmd =
            std::string(KEYRAIL_BENCH_PATH) + " --url https://127.0.0.1:" +
            std::to_string(n.port) + " --ca " + shell_quote(d + "/ca.crt") + " --cert " +
            shell_quote(d + "/alice.crt") + " --key " + shell_quote(d + "/alice.key") +
            " --slave-sae bob --no-progress --json " + shell_quote(json) + " " + args + " 2>&1";
        const std::string text = run_capture(cmd, exit_code);
        return read_text(json) + "\n" + text;
    }

    node_fixture n;
};

TEST_F(bench_keyraild_test, closed_loop_counts_add_up) {
    int rc = -1;
    const std::string out = bench("--request enc_keys --number 4 --size 256 --connections 2 "
                                  "--pipeline 4 --requests 600",
                                  &rc);
    EXPECT_EQ(rc, 0) << out;
    const double requests = json_number(out, "requests");
    const double successes = json_number(out, "successes");
    const double errors = json_number(out, "errors");
    EXPECT_EQ(requests, 600) << out;
    EXPECT_EQ(requests, successes + errors) << out;
    EXPECT_EQ(errors, 0) << out;
    EXPECT_EQ(json_number(out, "keys"), 2400) << out;
}

TEST_F(bench_keyraild_test, paired_bytes_match) {
    const std::string d = n.dir.string();
    int rc = -1;
    const std::string out =
        bench("--request paired --master-sae alice --slave-url https://127.0.0.1:" +
                  std::to_string(n.port) + " --slave-cert " + shell_quote(d + "/bob.crt") +
                  " --slave-key " + shell_quote(d + "/bob.key") +
                  " --connections 2 --pipeline 2 --requests 300",
              &rc);
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(json_number(out, "requests"), 300) << out;
    EXPECT_EQ(json_number(out, "successes"), 300) << out;
    EXPECT_EQ(json_number(out, "http_requests"), 600) << out; // enc_keys + dec_keys each
    EXPECT_EQ(json_number(out, "key_mismatch"), 0) << out;
}

// Many connections on a four-shard node: most land off the key shard, so most key calls
// are forwarded, concurrently, with pipelining; every slave's bytes still equal the master's.
TEST(bench_keyraild_shards, paired_bytes_match_across_four_shards) {
    node_fixture n;
    node_options o;
    o.rate_bps = 100'000'000;
    o.shards = 4;
    n.write_config(o);
    n.start();
    const std::string d = n.dir.string();
    const std::string json = d + "/bench.json";
    int rc = -1;
    const std::string text = run_capture(
        std::string(KEYRAIL_BENCH_PATH) + " --url https://127.0.0.1:" + std::to_string(n.port) +
            " --ca " + shell_quote(d + "/ca.crt") + " --cert " + shell_quote(d + "/alice.crt") +
            " --key " + shell_quote(d + "/alice.key") + " --slave-sae bob --no-progress --json " +
            shell_quote(json) +
            " --request paired --master-sae alice --slave-url https://127.0.0.1:" +
            std::to_string(n.port) + " --slave-cert " + shell_quote(d + "/bob.crt") +
            " --slave-key " + shell_quote(d + "/bob.key") +
            " --number 3 --size 256 --connections 12 --pipeline 4 --requests 1500 2>&1",
        &rc);
    const std::string out = read_text(json) + "\n" + text;
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(json_number(out, "successes"), 1500) << out;
    EXPECT_EQ(json_number(out, "errors"), 0) << out;
    EXPECT_EQ(json_number(out, "key_mismatch"), 0) << out;
    EXPECT_EQ(n.stop(SIGTERM), 0) << read_text(n.log);
    n.expect_log_clean();
}

TEST_F(bench_keyraild_test, open_loop_latency_shows_a_sigstop_of_the_server) {
    int rc = -1;
    std::string out;
    std::thread load([&] {
        out = bench("--request status --rate 300 --connections 4 --duration 3", &rc);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    ASSERT_EQ(::kill(n.pid, SIGSTOP), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_EQ(::kill(n.pid, SIGCONT), 0);
    load.join();
    EXPECT_EQ(rc, 0) << out;
    // About 30 of ~900 requests were due while the server was stopped: more than 1%, so p99
    // must carry most of the 100 ms; a load tool that waited for answers before sending would
    // report only fast requests.
    EXPECT_GE(json_number(out, "p99"), 60.0) << out;
    EXPECT_GE(json_number(out, "max"), 90.0) << out;
}

} // namespace
