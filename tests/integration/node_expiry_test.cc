// keyraild end to end: reserved keys that no slave fetches expire after limits.key_expiry_s and
// free their reservation slots, so a node whose slaves never fetch keeps serving; a full
// reservation table is a 503 that says so. Each test starts its own node.
#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/node_harness.h"

namespace {

using keyrail::test::node::node_fixture;
using keyrail::test::node::node_options;
using keyrail::test::node::parse_keys;

const std::string enc_bob = "/api/v1/keys/bob/enc_keys";
const std::string dec_alice = "/api/v1/keys/alice/dec_keys";
const std::string not_found_json =
    R"({"message":"one or more keys specified are not found on KME"})";

class node_expiry_test : public ::testing::Test {
protected:
    void TearDown() override {
        if (n.pid > 0) {
            EXPECT_EQ(n.stop(SIGTERM), 0) << keyrail::test::node::read_text(n.log);
        }
        n.expect_log_clean();
    }
    node_fixture n;
};

TEST_F(node_expiry_test, unfetched_key_expires_and_its_slave_gets_400) {
    node_options o;
    o.key_expiry_s = 1;
    n.write_config(o);
    n.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));

    auto late = n.curl("alice", enc_bob + "?number=2");
    ASSERT_EQ(late.code, 200) << late.body;
    const auto late_keys = parse_keys(late.body);
    ASSERT_EQ(late_keys.ids.size(), 2u);
    // Fetched in time: delivered as usual.
    auto early = n.curl("alice", enc_bob);
    ASSERT_EQ(early.code, 200) << early.body;
    const auto early_keys = parse_keys(early.body);
    ASSERT_EQ(early_keys.ids.size(), 1u);
    auto in_time = n.curl("bob", dec_alice + "?key_ID=" + early_keys.ids[0]);
    ASSERT_EQ(in_time.code, 200) << in_time.body;
    EXPECT_EQ(parse_keys(in_time.body).keys.at(0), early_keys.keys[0]);

    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    for (const std::string& id : late_keys.ids) {
        auto dec = n.curl("bob", dec_alice + "?key_ID=" + id);
        EXPECT_EQ(dec.code, 400) << dec.body;
        EXPECT_EQ(dec.body, not_found_json);
    }
    // A key reserved after the sweep is still served.
    auto fresh = n.curl("alice", enc_bob);
    ASSERT_EQ(fresh.code, 200) << fresh.body;
    auto fresh_dec = n.curl("bob", dec_alice + "?key_ID=" + parse_keys(fresh.body).ids.at(0));
    EXPECT_EQ(fresh_dec.code, 200) << fresh_dec.body;
}

TEST_F(node_expiry_test, unfetched_keys_past_the_table_size_keep_being_served) {
    node_options o;
    o.key_expiry_s = 1;
    o.reservations_max = 4096;
    o.rate_bps = 8'000'000; // 31250 keys/s: the source is never the limit
    n.write_config(o);
    n.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));

    // 24,576 keys, six times the table, reserved at most 2048 keys per 1.1 s (below what the
    // expiry frees), never fetched.
    constexpr int requests = 192;
    constexpr int keys_each = 128;
    std::string first_id;
    int failures = 0;
    std::string last_failure;
    for (int i = 0; i < requests; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        auto r = n.curl("alice", enc_bob + "?number=" + std::to_string(keys_each));
        if (r.code != 200) {
            ++failures;
            last_failure = std::to_string(r.code) + " " + r.body;
        } else if (first_id.empty()) {
            first_id = parse_keys(r.body).ids.at(0);
        }
        std::this_thread::sleep_until(t0 + std::chrono::milliseconds(70));
    }
    EXPECT_EQ(failures, 0) << last_failure;
    ASSERT_FALSE(first_id.empty());
    // The first key expired long ago.
    auto dec = n.curl("bob", dec_alice + "?key_ID=" + first_id);
    EXPECT_EQ(dec.code, 400) << dec.body;
    EXPECT_EQ(dec.body, not_found_json);
}

TEST_F(node_expiry_test, full_reservation_table_is_a_503_that_says_so) {
    node_options o;
    o.reservations_max = 256;
    o.rate_bps = 2'000'000;
    n.write_config(o);
    n.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));

    auto a = n.curl("alice", enc_bob + "?number=128");
    ASSERT_EQ(a.code, 200) << a.body;
    ASSERT_EQ(n.curl("alice", enc_bob + "?number=128").code, 200);
    auto full = n.curl("alice", enc_bob);
    EXPECT_EQ(full.code, 503);
    EXPECT_EQ(full.body, R"({"message":"reservation table full: 256 keys reserved and not yet )"
                         R"(fetched; they expire after 300 s"})");
    // Fetching a key frees its slot.
    auto dec = n.curl("bob", dec_alice + "?key_ID=" + parse_keys(a.body).ids.at(0));
    ASSERT_EQ(dec.code, 200) << dec.body;
    EXPECT_EQ(n.curl("alice", enc_bob).code, 200);
}

} // namespace
