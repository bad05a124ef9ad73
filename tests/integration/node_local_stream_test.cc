// keyraild's local stream (master and slave on this node) must not be the link's own keystream,
// which the peer node derives too, and must not replay old keys when the store is recreated;
// a store whose local stream lost its salt does not start.
#include <signal.h>

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "drivers/sim/sim_link.h"
#include "tests/support/node_harness.h"

namespace {

namespace fs = std::filesystem;
using keyrail::test::node::base64_to_hex;
using keyrail::test::node::node_fixture;
using keyrail::test::node::node_options;
using keyrail::test::node::parse_keys;
using keyrail::test::node::read_text;

const std::string enc_bob = "/api/v1/keys/bob/enc_keys";

// 64 keys of 256 bits (one block each), as hex.
std::vector<std::string> take_keys(node_fixture& n) {
    std::vector<std::string> keys;
    for (int i = 0; i < 4; ++i) {
        const auto a = n.curl("alice", enc_bob + "?number=16&size=256");
        EXPECT_EQ(a.code, 200) << a.body;
        for (const auto& k : parse_keys(a.body).keys) {
            keys.push_back(base64_to_hex(k));
        }
    }
    return keys;
}

std::string hex_of(const std::uint8_t* p, std::size_t n) {
    std::string s;
    char two[3];
    for (std::size_t i = 0; i < n; ++i) {
        std::snprintf(two, sizeof two, "%02x", p[i]);
        s += two;
    }
    return s;
}

TEST(node_local_stream, keys_are_not_the_link_keystream_and_a_new_store_does_not_replay) {
    node_fixture n;
    node_options o;
    o.rate_bps = 10'000'000;
    n.write_config(o);
    n.start();
    const std::vector<std::string> first = take_keys(n);
    ASSERT_EQ(first.size(), 64u);
    EXPECT_EQ(n.stop(SIGTERM), 0);

    // The raw keystream of link a-b, as the peer node kme-b would derive it from the same
    // secret: none of its first blocks may be one of our local keys.
    const std::string secret_hex = read_text(n.dir / "link.hex");
    std::vector<std::uint8_t> secret;
    for (std::size_t i = 0; i + 1 < secret_hex.size() && secret.size() < 32; i += 2) {
        secret.push_back(static_cast<std::uint8_t>(std::stoi(secret_hex.substr(i, 2), nullptr, 16)));
    }
    keyrail::drivers::sim::sim_link_config sc;
    sc.link_id = "a-b";
    sc.secret = secret;
    sc.block_bytes = 32;
    sc.rate_bps = 1'000'000'000;
    auto link = keyrail::drivers::sim::sim_link::create(sc);
    ASSERT_TRUE(link.has_value());
    std::vector<std::uint8_t> blocks(32 * 4096);
    const std::size_t made = link->produce(1'000'000'000, blocks, 4096);
    ASSERT_GT(made, 1000u);
    std::set<std::string> link_blocks;
    for (std::size_t i = 0; i < made; ++i) {
        link_blocks.insert(hex_of(blocks.data() + 32 * i, 32));
    }
    for (const auto& k : first) {
        EXPECT_EQ(link_blocks.count(k), 0u) << "local key equals a block of the link keystream";
    }

    // A lost store (moved away) and a fresh one: the new local stream starts over at sequence
    // 0 but with a new salt, so none of the old keys comes back.
    fs::rename(n.dir / "store", n.dir / "store.old");
    n.start();
    const std::vector<std::string> second = take_keys(n);
    EXPECT_EQ(n.stop(SIGTERM), 0);
    const std::set<std::string> old(first.begin(), first.end());
    for (const auto& k : second) {
        EXPECT_EQ(old.count(k), 0u) << "a recreated store replayed a key";
    }

    // The local stream exists but its salt is gone: keyraild refuses to start and says why.
    fs::remove(n.dir / "store" / "local-stream.salt");
    const pid_t pid = ::fork();
    if (pid == 0) {
        std::FILE* f = std::fopen((n.dir / "refused.log").c_str(), "w");
        if (f != nullptr) {
            ::dup2(::fileno(f), 2);
        }
        ::execl(KEYRAIL_KEYRAILD_PATH, "keyraild", "--config", (n.dir / "node.yaml").c_str(),
                static_cast<char*>(nullptr));
        ::_exit(127);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 1);
    EXPECT_NE(read_text(n.dir / "refused.log").find("local-stream.salt"), std::string::npos)
        << read_text(n.dir / "refused.log");
    n.expect_log_clean();
}

} // namespace
