// keyraild end to end on one node: a real process on 127.0.0.1 with generated certificates,
// driven by curl, openssl s_client and a small TLS client. Each test starts its own node.
#include <chrono>
#include <regex>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/node_harness.h"
#include "tests/support/tls_client.h"

namespace {

using keyrail::test::node::is_base64;
using keyrail::test::node::is_uuid_v4;
using keyrail::test::node::node_fixture;
using keyrail::test::node::node_options;
using keyrail::test::node::parse_keys;

const std::string status_bob = "/api/v1/keys/bob/status";
const std::string enc_bob = "/api/v1/keys/bob/enc_keys";
const std::string dec_alice = "/api/v1/keys/alice/dec_keys";

std::uint64_t json_number(const std::string& body, const std::string& name) {
    const std::regex re("\"" + name + "\":([0-9]+)");
    std::smatch m;
    if (!std::regex_search(body, m, re)) {
        ADD_FAILURE() << name << " missing in " << body;
        return 0;
    }
    return std::stoull(m[1]);
}

// A raw request over TLS as `who`; returns the status line ("" if the server sent none).
std::string raw_status_line(const node_fixture& n, const std::string& who,
                            const std::string& bytes) {
    keyrail::test::tls_client c({(n.dir / "ca.crt").string(), (n.dir / (who + ".crt")).string(),
                                 (n.dir / (who + ".key")).string(), 5000});
    if (!c.connect(static_cast<std::uint16_t>(n.port))) {
        return "connect failed";
    }
    (void)c.write_all(bytes);
    std::string line;
    if (!c.read_line(line)) {
        return "";
    }
    if (!line.empty() && line.back() == '\r') {
        line.pop_back();
    }
    return line;
}

class node_test : public ::testing::Test {
protected:
    void TearDown() override {
        if (n.pid > 0) {
            EXPECT_EQ(n.stop(SIGTERM), 0) << keyrail::test::node::read_text(n.log);
        }
        n.expect_log_clean();
    }
    node_fixture n;
};

TEST_F(node_test, etsi014_round_trip_with_curl) {
    n.write_config({});
    n.start();

    auto st = n.curl("alice", status_bob);
    ASSERT_EQ(st.code, 200) << st.body;
    for (const char* f : {"\"source_KME_ID\":\"kme-a\"", "\"target_KME_ID\":\"kme-a\"",
                          "\"master_SAE_ID\":\"alice\"", "\"slave_SAE_ID\":\"bob\"",
                          "\"key_size\":256", "\"max_key_count\":100000",
                          "\"max_key_per_request\":128", "\"max_key_size\":65536",
                          "\"min_key_size\":8", "\"max_SAE_ID_count\":0", "\"stored_key_count\":"}) {
        EXPECT_NE(st.body.find(f), std::string::npos) << f << " in " << st.body;
    }
    // Real counts: keys arrive at 200 kbit/s (781 256-bit keys per second) and are counted.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const std::uint64_t before = json_number(n.curl("alice", status_bob).body, "stored_key_count");
    EXPECT_GT(before, 0u);

    // enc_keys GET with number and size; dec_keys GET by the slave.
    auto enc = n.curl("alice", enc_bob + "?number=3&size=512");
    ASSERT_EQ(enc.code, 200) << enc.body;
    EXPECT_EQ(enc.body.rfind("{\"keys\":[", 0), 0u) << enc.body;
    auto k = parse_keys(enc.body);
    ASSERT_EQ(k.ids.size(), 3u) << enc.body;
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_TRUE(is_uuid_v4(k.ids[i])) << k.ids[i];
        EXPECT_TRUE(is_base64(k.keys[i])) << k.keys[i];
        EXPECT_EQ(keyrail::test::node::base64_to_hex(k.keys[i]).size(), 128u); // 64 bytes
    }
    auto dec = n.curl("bob", dec_alice + "?key_ID=" + k.ids[0]);
    ASSERT_EQ(dec.code, 200) << dec.body;
    auto d = parse_keys(dec.body);
    ASSERT_EQ(d.ids.size(), 1u);
    EXPECT_EQ(d.ids[0], k.ids[0]);
    EXPECT_EQ(d.keys[0], k.keys[0]); // byte for byte

    // Once only.
    auto again = n.curl("bob", dec_alice + "?key_ID=" + k.ids[0]);
    EXPECT_EQ(again.code, 400);
    EXPECT_EQ(again.body, R"({"message":"one or more keys specified are not found on KME"})");

    // A configured SAE that is not a named slave: 401 without a body, and the key stays.
    auto carol = n.curl("carol", dec_alice + "?key_ID=" + k.ids[1]);
    EXPECT_EQ(carol.code, 401);
    EXPECT_TRUE(carol.body.empty()) << carol.body;

    // dec_keys POST with two IDs.
    auto dec2 = n.post("bob", dec_alice,
                       R"({"key_IDs":[{"key_ID":")" + k.ids[1] + R"("},{"key_ID":")" + k.ids[2] +
                           R"("}]})");
    ASSERT_EQ(dec2.code, 200) << dec2.body;
    auto d2 = parse_keys(dec2.body);
    ASSERT_EQ(d2.keys.size(), 2u);
    EXPECT_EQ(d2.keys[0], k.keys[1]);
    EXPECT_EQ(d2.keys[1], k.keys[2]);

    // enc_keys POST with defaults, then dec POST.
    auto enc_post = n.post("alice", enc_bob, R"({"number":2})");
    ASSERT_EQ(enc_post.code, 200) << enc_post.body;
    auto kp = parse_keys(enc_post.body);
    ASSERT_EQ(kp.keys.size(), 2u);
    EXPECT_EQ(keyrail::test::node::base64_to_hex(kp.keys[0]).size(), 64u); // 256 bits
    auto decp = n.post("bob", dec_alice, R"({"key_IDs":[{"key_ID":")" + kp.ids[0] + R"("}]})");
    ASSERT_EQ(decp.code, 200);
    EXPECT_EQ(parse_keys(decp.body).keys.at(0), kp.keys[0]);

    // Mandated messages and identities.
    auto bad_size = n.curl("alice", enc_bob + "?size=12");
    EXPECT_EQ(bad_size.code, 400);
    EXPECT_EQ(bad_size.body, R"({"message":"size shall be a multiple of 8"})");
    auto mallory = n.curl("mallory", status_bob); // valid certificate, not a configured SAE
    EXPECT_EQ(mallory.code, 401);
    EXPECT_TRUE(mallory.body.empty());
    auto cn_only = n.curl("cn-alice", status_bob); // no SAN URI in san_uri mode
    EXPECT_EQ(cn_only.code, 401);
    auto remote = n.curl("alice", "/api/v1/keys/dave/enc_keys");
    EXPECT_EQ(remote.code, 503) << remote.body; // dave lives on kme-b: no relay yet

    const std::string log = keyrail::test::node::read_text(n.log);
    EXPECT_NE(log.find("no valid SAE ID: SAE ID not configured ('mallory')"), std::string::npos);
    EXPECT_NE(log.find("no valid SAE ID: no URI SAN with the SAE prefix"), std::string::npos);

    // No client certificate: the handshake fails.
    int rc = 0;
    const std::string out = keyrail::test::node::run_capture(
        "printf 'GET /api/v1/keys/bob/status HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | timeout 10 "
        "openssl s_client -quiet -connect 127.0.0.1:" + std::to_string(n.port) + " -CAfile " +
            (n.dir / "ca.crt").string() + " 2>&1",
        &rc);
    EXPECT_EQ(out.find("HTTP/1.1 200"), std::string::npos) << out;
    EXPECT_NE(out.find("alert"), std::string::npos) << out;
}

TEST_F(node_test, exhaustion_is_an_immediate_503_with_counts) {
    node_options o;
    o.max_key_count = 40; // the node holds at most 40 default-size keys
    o.max_key_per_request = 40;
    n.write_config(o);
    n.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const auto st = n.curl("alice", status_bob);
    ASSERT_EQ(st.code, 200);
    const std::uint64_t stored = json_number(st.body, "stored_key_count");
    EXPECT_LE(stored, 40u);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = n.curl("alice", enc_bob + "?number=40&size=4096"); // needs 640 blocks
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(r.code, 503) << r.body;
    EXPECT_LT(took, std::chrono::seconds(2));
    EXPECT_NE(r.body.find("available"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("781 keys/s"), std::string::npos) << r.body; // 200000 / 256
    // The node recovers: a small request still works.
    EXPECT_EQ(n.curl("alice", enc_bob + "?number=1").code, 200);
}

// Four shards: the keys live on shard 0 (the key shard); a request that lands on another
// shard has its key calls forwarded there and back. Each curl is a fresh connection, which
// SO_REUSEPORT puts on any shard; whichever answers, the slave gets the master's bytes once,
// status counts are real and exhaustion is an immediate 503 with the counts.
TEST_F(node_test, every_shard_serves_the_same_keys) {
    node_options o;
    o.shards = 4;
    o.max_key_count = 200;
    n.write_config(o);
    n.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    for (int i = 0; i < 12; ++i) {
        SCOPED_TRACE(i);
        auto st = n.curl("alice", status_bob);
        ASSERT_EQ(st.code, 200) << st.body;
        EXPECT_GT(json_number(st.body, "stored_key_count"), 0u) << st.body;
        auto enc = n.curl("alice", enc_bob + "?number=2&size=512");
        ASSERT_EQ(enc.code, 200) << enc.body;
        auto k = parse_keys(enc.body);
        ASSERT_EQ(k.ids.size(), 2u) << enc.body;
        // A configured SAE that is not the named slave: 401, no body, and the key stays.
        auto carol = n.curl("carol", dec_alice + "?key_ID=" + k.ids[0]);
        EXPECT_EQ(carol.code, 401);
        EXPECT_TRUE(carol.body.empty()) << carol.body;
        auto dec = n.post("bob", dec_alice,
                          R"({"key_IDs":[{"key_ID":")" + k.ids[0] + R"("},{"key_ID":")" +
                              k.ids[1] + R"("}]})");
        ASSERT_EQ(dec.code, 200) << dec.body;
        auto d = parse_keys(dec.body);
        ASSERT_EQ(d.keys.size(), 2u);
        EXPECT_EQ(d.ids, k.ids);
        EXPECT_EQ(d.keys, k.keys); // byte for byte
        auto again = n.curl("bob", dec_alice + "?key_ID=" + k.ids[1]);
        EXPECT_EQ(again.code, 400);
        EXPECT_EQ(again.body, R"({"message":"one or more keys specified are not found on KME"})");
    }
    for (int i = 0; i < 6; ++i) {
        SCOPED_TRACE(i);
        auto r = n.curl("alice", enc_bob + "?number=40&size=4096"); // 640 blocks: never held
        EXPECT_EQ(r.code, 503) << r.body;
        EXPECT_NE(r.body.find("available"), std::string::npos) << r.body;
        EXPECT_NE(r.body.find("781 keys/s"), std::string::npos) << r.body;
    }
}

TEST_F(node_test, identity_from_subject_cn) {
    node_options o;
    o.identity_mode = "cn";
    n.write_config(o);
    n.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto enc = n.curl("cn-alice", enc_bob);
    ASSERT_EQ(enc.code, 200) << enc.body;
    auto k = parse_keys(enc.body);
    ASSERT_EQ(k.ids.size(), 1u);
    auto dec = n.curl("cn-bob", dec_alice + "?key_ID=" + k.ids[0]);
    ASSERT_EQ(dec.code, 200) << dec.body;
    EXPECT_EQ(parse_keys(dec.body).keys.at(0), k.keys[0]);
    // The SAN certificates carry the same CN, so they work too; an unknown CN does not.
    EXPECT_EQ(n.curl("alice", status_bob).code, 200);
    EXPECT_EQ(n.curl("mallory", status_bob).code, 401);
}

TEST_F(node_test, bad_input_corpus_over_tls) {
    n.write_config({});
    n.start();
    const std::string host = "Host: kme-a\r\n";
    struct bad {
        const char* what;
        std::string bytes;
        std::vector<int> codes;
    };
    const std::string big_header = "X-Big: " + std::string(20000, 'a') + "\r\n";
    const std::vector<bad> corpus = {
        {"wrong method", "DELETE " + status_bob + " HTTP/1.1\r\n" + host + "\r\n", {405}},
        {"unknown path", "GET /api/v1/keys/bob/nothing HTTP/1.1\r\n" + host + "\r\n", {404}},
        {"path traversal", "GET /api/v1/keys/../../../etc/passwd/status HTTP/1.1\r\n" + host + "\r\n", {400, 404}},
        {"encoded traversal", "GET /api/v1/keys/%2e%2e/status HTTP/1.1\r\n" + host + "\r\n", {400, 404}},
        {"unicode SAE", "GET /api/v1/keys/b%C3%B6b/status HTTP/1.1\r\n" + host + "\r\n", {400}},
        {"raw unicode SAE", "GET /api/v1/keys/b\xc3\xb6" "b/status HTTP/1.1\r\n" + host + "\r\n", {400}},
        {"bad JSON", "POST " + enc_bob + " HTTP/1.1\r\n" + host + "Content-Length: 9\r\n\r\n{number:1", {400}},
        {"huge number", "POST " + enc_bob + " HTTP/1.1\r\n" + host + "Content-Length: 33\r\n\r\n{\"number\":99999999999999999999999}", {400}},
        {"negative size", "POST " + enc_bob + " HTTP/1.1\r\n" + host + "Content-Length: 12\r\n\r\n{\"size\":-16}", {400}},
        {"negative number query", "GET " + enc_bob + "?number=-1 HTTP/1.1\r\n" + host + "\r\n", {400}},
        {"key_IDs as strings", "POST " + dec_alice + " HTTP/1.1\r\n" + host + "Content-Length: 52\r\n\r\n{\"key_IDs\":[\"00000000-0000-4000-8000-000000000000\"]}", {400}},
        {"bad UUID", "GET " + dec_alice + "?key_ID=zzz HTTP/1.1\r\n" + host + "\r\n", {400}},
        {"oversized body", "POST " + enc_bob + " HTTP/1.1\r\n" + host + "Content-Length: 100000000\r\n\r\n", {413}},
        {"oversized header", "GET " + status_bob + " HTTP/1.1\r\n" + host + big_header + "\r\n", {431, 400}},
        {"garbage", std::string("\x01\x02junk junk\r\n\r\n"), {400}},
        {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505}},
    };
    for (const bad& b : corpus) {
        const std::string line = raw_status_line(n, "alice", b.bytes);
        bool matched = false;
        for (int code : b.codes) {
            matched = matched || line.rfind("HTTP/1.1 " + std::to_string(code), 0) == 0;
        }
        EXPECT_TRUE(matched) << b.what << ": got '" << line << "'";
        EXPECT_EQ(n.curl("alice", status_bob).code, 200) << "after " << b.what;
    }
    // Truncated: the client goes away mid-request; the node stays up.
    {
        keyrail::test::tls_client c({(n.dir / "ca.crt").string(), (n.dir / "alice.crt").string(),
                                     (n.dir / "alice.key").string(), 2000});
        ASSERT_TRUE(c.connect(static_cast<std::uint16_t>(n.port)));
        ASSERT_TRUE(c.write_all("POST " + enc_bob + " HTTP/1.1\r\n" + host +
                                "Content-Length: 50\r\n\r\n{\"num"));
        c.close();
    }
    EXPECT_EQ(n.curl("alice", status_bob).code, 200);
}

TEST_F(node_test, sigterm_drains_and_restart_keeps_reserved_keys) {
    n.write_config({});
    n.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto enc = n.curl("alice", enc_bob + "?number=3");
    ASSERT_EQ(enc.code, 200) << enc.body;
    auto k = parse_keys(enc.body);
    ASSERT_EQ(k.ids.size(), 3u);
    ASSERT_EQ(n.curl("bob", dec_alice + "?key_ID=" + k.ids[0]).code, 200);

    // An in-flight request across SIGTERM: half sent, then the signal, then the rest.
    keyrail::test::tls_client c({(n.dir / "ca.crt").string(), (n.dir / "alice.crt").string(),
                                 (n.dir / "alice.key").string(), 5000});
    ASSERT_TRUE(c.connect(static_cast<std::uint16_t>(n.port)));
    ASSERT_TRUE(c.write_all("GET " + status_bob + " HTTP/1.1\r\nHost: kme-a\r\n"));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ::kill(n.pid, SIGTERM);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ASSERT_TRUE(c.write_all("Connection: close\r\n\r\n"));
    std::string line;
    ASSERT_TRUE(c.read_line(line)) << c.error();
    EXPECT_EQ(line.rfind("HTTP/1.1 200", 0), 0u) << line;
    c.close();
    EXPECT_EQ(n.stop(0), 0) << keyrail::test::node::read_text(n.log);

    // Restart on the same store: the undelivered keys are still there, the delivered one not.
    n.start();
    auto d1 = n.curl("bob", dec_alice + "?key_ID=" + k.ids[1]);
    ASSERT_EQ(d1.code, 200) << d1.body;
    EXPECT_EQ(parse_keys(d1.body).keys.at(0), k.keys[1]);
    auto d2 = n.post("bob", dec_alice, R"({"key_IDs":[{"key_ID":")" + k.ids[2] + R"("}]})");
    ASSERT_EQ(d2.code, 200) << d2.body;
    EXPECT_EQ(parse_keys(d2.body).keys.at(0), k.keys[2]);
    auto gone = n.curl("bob", dec_alice + "?key_ID=" + k.ids[0]);
    EXPECT_EQ(gone.code, 400);
    EXPECT_EQ(gone.body, R"({"message":"one or more keys specified are not found on KME"})");
}

TEST_F(node_test, bad_config_names_file_and_line) {
    n.write_config({});
    {
        std::ofstream y(n.dir / "node.yaml", std::ios::app);
        y << "bogus_key: 1\n";
    }
    int rc = 0;
    const std::string out = keyrail::test::node::run_capture(
        std::string(KEYRAIL_KEYRAILD_PATH) + " --config " + (n.dir / "node.yaml").string() + " 2>&1",
        &rc);
    EXPECT_EQ(rc, 1);
    EXPECT_NE(out.find("node.yaml:"), std::string::npos) << out;
    EXPECT_NE(out.find("bogus_key"), std::string::npos) << out;

    // A wrong master key is named too.
    n.write_config({});
    n.start();
    EXPECT_EQ(n.stop(SIGTERM), 0);
    std::ofstream(n.dir / "master.key") << std::string(64, 'b') << "\n";
    const std::string out2 = keyrail::test::node::run_capture(
        std::string(KEYRAIL_KEYRAILD_PATH) + " --config " + (n.dir / "node.yaml").string() + " 2>&1",
        &rc);
    EXPECT_EQ(rc, 1);
    EXPECT_NE(out2.find("master_key_file"), std::string::npos) << out2;
}

} // namespace
