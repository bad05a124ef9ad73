#include "control/config.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "control/errc.h"
#include "tests/support/config_example.h"

namespace keyrail::control {
namespace {

const std::filesystem::path base_dir = "/etc/keyrail";

config parse(std::string_view text) {
    return parse_config(text, "node.yaml", base_dir);
}

// The example with the first occurrence of from replaced by to.
std::string edited(std::string_view from, std::string_view to) {
    std::string text(test::config_example);
    const auto at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) {
        text.replace(at, from.size(), to);
    }
    return text;
}

// The message parse() throws, or "" if it accepts the text.
std::string error_of(const std::string &text) {
    try {
        static_cast<void>(parse(text));
    } catch (const config_error &e) {
        return e.what();
    }
    return "";
}

TEST(config, example_parses_with_every_field) {
    const config cfg = parse(test::config_example);
    EXPECT_EQ(cfg.node.id, "kme-a");
    EXPECT_EQ(cfg.node.sae_api.address, "0.0.0.0");
    EXPECT_EQ(cfg.node.sae_api.port, 8443);
    EXPECT_EQ(cfg.node.peer_api.port, 9443);
    EXPECT_EQ(cfg.node.admin_api.address, "127.0.0.1");
    EXPECT_EQ(cfg.tls.cert, "/etc/keyrail/certs/kme-a.crt");
    EXPECT_EQ(cfg.tls.admin_ca, cfg.tls.peer_ca); // defaulted
    EXPECT_EQ(cfg.tls.verify_depth, 2);
    EXPECT_EQ(cfg.sae_identity.mode, sae_identity_mode::san_uri);
    EXPECT_EQ(cfg.sae_identity.san_uri_prefix, "urn:keyrail:sae:");
    ASSERT_EQ(cfg.saes.size(), 3u);
    EXPECT_EQ(cfg.saes[1].id, "bob");
    EXPECT_EQ(cfg.saes[1].home_node, "kme-b");
    EXPECT_EQ(cfg.remote_nodes, std::vector<std::string>{"kme-c"});
    EXPECT_EQ(cfg.store.dir, "/etc/keyrail/store");
    EXPECT_EQ(cfg.store.master_key_file, "/etc/keyrail/master.key");
    EXPECT_EQ(cfg.store.block_bits, 256u);
    EXPECT_EQ(cfg.store.durability_mode, durability::power);
    EXPECT_EQ(cfg.store.capacity_blocks, 1048576u);
    ASSERT_EQ(cfg.links.size(), 1u);
    const link_config &link = cfg.links[0];
    EXPECT_EQ(link.id, "a-b");
    EXPECT_EQ(link.peer, "kme-b");
    EXPECT_EQ(link.peer_address.address, "127.0.0.1");
    EXPECT_EQ(link.peer_address.port, 9543);
    EXPECT_EQ(link.kind, link_kind::qkd);
    EXPECT_EQ(link.driver, driver_kind::sim);
    EXPECT_EQ(link.sim.secret_file, "/etc/keyrail/secrets/a-b.hex");
    EXPECT_EQ(link.sim.rate_bps, 100000u);
    EXPECT_EQ(link.sim.burst_blocks, 16u);
    EXPECT_EQ(link.sim.jitter_percent, 20u);
    EXPECT_EQ(link.sim.seed, 7u);
    EXPECT_EQ(cfg.limits.key_size, 256u);
    EXPECT_EQ(cfg.limits.max_key_size, 65536u);
    EXPECT_EQ(cfg.limits.dec_keys_wait_ms, 50u);
    EXPECT_EQ(cfg.shards, 0u);
    EXPECT_EQ(summary(cfg), "node kme-a: 3 SAEs (1 at home), 1 links (a-b -> kme-b), "
                            "SAE API 0.0.0.0:8443, shards one per core");
}

TEST(config, minimal_config_gets_defaults) {
    const config cfg = parse(R"(
node:
  id: n1
  sae_api: {address: "::", port: 0}
  peer_api: {address: "::", port: 0}
  admin_api: {address: "::1", port: 0}
tls: {cert: /c, key: /k, sae_ca: /s, peer_ca: /p}
store: {dir: /var/lib/keyrail, master_key_env: KEYRAIL_MASTER_KEY}
)");
    EXPECT_EQ(cfg.store.master_key_env, "KEYRAIL_MASTER_KEY");
    EXPECT_TRUE(cfg.store.master_key_file.empty());
    EXPECT_EQ(cfg.store.block_bits, 256u);
    EXPECT_EQ(cfg.tls.cert, "/c");
    EXPECT_TRUE(cfg.links.empty());
    EXPECT_TRUE(cfg.saes.empty());
    const limits_config defaults;
    EXPECT_EQ(cfg.limits.key_size, defaults.key_size);
    EXPECT_EQ(cfg.limits.min_key_size, 8u);
    EXPECT_EQ(cfg.limits.max_key_size, 65536u);
    EXPECT_EQ(cfg.limits.dec_keys_wait_ms, 50u);
    EXPECT_EQ(cfg.sae_identity.san_uri_prefix, "urn:keyrail:sae:");
}

struct bad_case {
    const char *name;
    std::string text;
    const char *message;
};

TEST(config, bad_configs_name_file_line_column_and_problem) {
    const bad_case cases[] = {
        {"key size too large", edited("max_key_size: 65536", "max_key_size: 65537"),
         "node.yaml:40:17: limits.max_key_size: must be a multiple of 8 and <= 65536, got 65537"},
        {"key size zero", edited("key_size: 256", "key_size: 0"),
         "node.yaml:38:13: limits.key_size: must be positive, got 0"},
        {"key size below minimum", edited("min_key_size: 8", "min_key_size: 512"),
         "node.yaml:38:13: limits.key_size: must be between min_key_size (512) and "
         "max_key_size (65536), got 256"},
        {"block bits not a multiple of 8", edited("block_bits: 256", "block_bits: 100"),
         "node.yaml:24:15: store.block_bits: must be a multiple of 8 and >= 64 and <= 8192, got "
         "100"},
        {"unknown key in node", edited("  id: kme-a\n", "  id: kme-a\n  lisen: x\n"),
         "node.yaml:4:3: node.lisen: unknown key (expected one of: id, sae_api, peer_api, "
         "admin_api)"},
        {"unknown top-level key", std::string(test::config_example) + "sahrds: 1\n",
         "node.yaml:47:1: sahrds: unknown key (expected one of: node, tls, sae_identity, store, "
         "links, remote_nodes, saes, limits, shards)"},
        {"duplicate key", edited("  id: kme-a\n", "  id: kme-a\n  id: kme-b\n"),
         "node.yaml:4:3: node.id: duplicate key"},
        {"port out of range", edited("port: 8443", "port: 70000"),
         "node.yaml:4:37: node.sae_api.port: must be between 0 and 65535, got 70000"},
        {"port not a number", edited("port: 8443", "port: https"),
         "node.yaml:4:37: node.sae_api.port: must be a non-negative integer, got 'https'"},
        {"port clash", edited("port: 9443", "port: 8443"),
         "node.yaml:5:38: node.peer_api.port: same port as node.sae_api (8443)"},
        {"listener is a host name", edited("address: 0.0.0.0", "address: localhost"),
         "node.yaml:4:22: node.sae_api.address: must be an IPv4 or IPv6 literal, got "
         "'localhost'"},
        {"negative verify depth", edited("verify_depth: 2", "verify_depth: -1"),
         "node.yaml:12:17: tls.verify_depth: must be a non-negative integer, got '-1'"},
        {"missing tls cert", edited("  cert: certs/kme-a.crt\n", ""),
         "node.yaml:8:3: tls: missing required key 'cert'"},
        {"bad identity mode", edited("mode: san_uri", "mode: serial"),
         "node.yaml:14:9: sae_identity.mode: must be one of san_uri, cn, got 'serial'"},
        {"bad SAE id", edited("{id: alice", "{id: al/ice"),
         "node.yaml:17:10: saes[0].id: must be 1 to 64 of [A-Za-z0-9._-], starting with a "
         "letter or digit, without '..', got 'al/ice'"},
        {"duplicate SAE id", edited("{id: bob", "{id: alice"),
         "node.yaml:18:10: saes[1].id: duplicate SAE id 'alice' (also saes[0])"},
        {"unknown home node", edited("home_node: kme-b", "home_node: kme-z"),
         "node.yaml:18:26: saes[1].home_node: unknown node 'kme-z' (not node.id, a link peer or "
         "in remote_nodes)"},
        {"saes not a list",
         edited("saes:\n  - {id: alice, home_node: kme-a}\n  - {id: bob, "
                "home_node: kme-b}\n  - {id: carol, home_node: kme-c}\n",
                "saes: alice\n"),
         "node.yaml:16:7: saes: must be a list"},
        {"both master key sources",
         edited("master_key_file: master.key", "master_key_file: master.key\n  master_key_env: K"),
         "node.yaml:24:19: store: exactly one of master_key_file and master_key_env is required"},
        {"bad durability", edited("durability: power", "durability: fast"),
         "node.yaml:25:15: store.durability: must be one of process, power, got 'fast'"},
        {"link back to self", edited("peer: kme-b", "peer: kme-a"),
         "node.yaml:29:11: links[0].peer: a link cannot lead back to this node ('kme-a')"},
        {"pqc link", edited("kind: qkd", "kind: pqc"),
         "node.yaml:31:11: links[0].kind: 'pqc' links are not implemented yet; use qkd"},
        {"unknown driver", edited("      sim:\n", "      simm:\n"),
         "node.yaml:33:7: links[0].driver.simm: unknown key (expected one of: sim)"},
        {"short secret", edited("secret_file: secrets/a-b.hex", "secret_hex: abcd"),
         "node.yaml:34:21: links[0].driver.sim.secret_hex: must be 64 to 1024 hex digits (an "
         "even number); value not shown"},
        {"zero rate", edited("rate_bps: 100000", "rate_bps: 0"),
         "node.yaml:35:19: links[0].driver.sim.rate_bps: must be between 1 and 100000000000, "
         "got 0"},
        {"jitter over 100", edited("jitter_percent: 20", "jitter_percent: 101"),
         "node.yaml:36:45: links[0].driver.sim.burst.jitter_percent: must be between 0 and 100, "
         "got 101"},
        {"too many shards", edited("shards: 0", "shards: 65"),
         "node.yaml:46:9: shards: must be between 0 and 64, got 65"},
        {"limits not a mapping",
         edited("limits:\n  key_size: 256\n", "limits: 5\nx:\n  key_size: 256\n"),
         "node.yaml:37:9: limits: must be a mapping"},
        {"empty document", "", "node.yaml: the file is empty"},
        {"missing node", "tls: {}\n", "node.yaml:1:1: missing required key 'node'"},
    };
    for (const auto &c : cases) {
        EXPECT_EQ(error_of(c.text), c.message) << c.name;
    }
}

TEST(config, syntax_error_names_the_line) {
    const std::string message = error_of(edited("id: kme-a", "id: [kme-a"));
    EXPECT_EQ(message.rfind("node.yaml:", 0), 0u) << message;
    EXPECT_NE(message.find("invalid YAML"), std::string::npos) << message;
}

TEST(config, error_carries_its_parts) {
    try {
        static_cast<void>(parse(edited("shards: 0", "shards: 65")));
        FAIL() << "accepted";
    } catch (const config_error &e) {
        EXPECT_EQ(e.file(), "node.yaml");
        EXPECT_EQ(e.line(), 46);
        EXPECT_EQ(e.column(), 9);
        EXPECT_EQ(e.path(), "shards");
        EXPECT_EQ(e.problem(), "must be between 0 and 64, got 65");
    }
}

TEST(config, ids) {
    EXPECT_TRUE(is_valid_id("alice"));
    EXPECT_TRUE(is_valid_id("SAE_1.a-b"));
    EXPECT_TRUE(is_valid_id(std::string(64, 'a')));
    EXPECT_FALSE(is_valid_id(std::string(65, 'a')));
    EXPECT_FALSE(is_valid_id(""));
    EXPECT_FALSE(is_valid_id("-alice"));
    EXPECT_FALSE(is_valid_id(".."));
    EXPECT_FALSE(is_valid_id("a..b"));
    EXPECT_FALSE(is_valid_id("a/b"));
    EXPECT_FALSE(is_valid_id("a b"));
}

class config_files : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/keyrail_config_test_XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        _dir = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(_dir); }
    void write(const std::filesystem::path &rel, std::string_view text) {
        std::filesystem::create_directories((_dir / rel).parent_path());
        std::ofstream(_dir / rel) << text;
    }
    std::filesystem::path _dir;
};

TEST_F(config_files, paths_resolve_against_the_config_directory) {
    write("etc/node.yaml", test::config_example);
    const config cfg = load_config(_dir / "etc" / "node.yaml");
    EXPECT_EQ(cfg.source, _dir / "etc" / "node.yaml");
    EXPECT_EQ(cfg.tls.key, _dir / "etc" / "certs" / "kme-a.key");
    EXPECT_EQ(cfg.links[0].sim.secret_file, _dir / "etc" / "secrets" / "a-b.hex");
}

TEST_F(config_files, error_names_the_file_as_given) {
    const auto path = _dir / "bad.yaml";
    write("bad.yaml", edited("shards: 0", "shards: 65"));
    try {
        static_cast<void>(load_config(path));
        FAIL() << "accepted";
    } catch (const config_error &e) {
        EXPECT_EQ(std::string(e.what()),
                  path.string() + ":46:9: shards: must be between 0 and 64, got 65");
    }
}

TEST_F(config_files, missing_file_is_a_config_error) {
    const auto path = _dir / "none.yaml";
    try {
        static_cast<void>(load_config(path));
        FAIL() << "accepted";
    } catch (const config_error &e) {
        EXPECT_EQ(std::string(e.what()),
                  path.string() + ": cannot open: No such file or directory");
        EXPECT_EQ(e.line(), 0);
    }
}

TEST_F(config_files, link_secret_from_file_and_hex) {
    const std::string hex(64, 'a');
    write("s.hex", "  " + hex + "\n");
    sim_driver_config sim;
    sim.secret_file = _dir / "s.hex";
    auto secret = read_link_secret(sim);
    ASSERT_TRUE(secret) << secret.error().message();
    EXPECT_EQ(secret->bytes(), std::vector<std::uint8_t>(32, 0xaa));

    sim_driver_config inline_sim;
    inline_sim.secret_hex = std::string(62, '0') + "ff";
    auto inline_secret = read_link_secret(inline_sim);
    ASSERT_TRUE(inline_secret);
    EXPECT_EQ(inline_secret->bytes().back(), 0xff);

    write("short.hex", "abcd");
    sim.secret_file = _dir / "short.hex";
    EXPECT_EQ(read_link_secret(sim).error(), make_error_code(errc::invalid_spec));
    sim.secret_file = _dir / "missing.hex";
    EXPECT_FALSE(read_link_secret(sim));
}

} // namespace
} // namespace keyrail::control

namespace keyrail::control {
namespace {

TEST(config, store_reservations_max_defaults_and_bounds) {
    EXPECT_EQ(parse(test::config_example).store.reservations_max, 16384u);
    const config big = parse(edited("  capacity_blocks: 1048576\n",
                                    "  capacity_blocks: 1048576\n  reservations_max: 1048576\n"));
    EXPECT_EQ(big.store.reservations_max, 1048576u);
    const std::string zero = error_of(edited("  capacity_blocks: 1048576\n",
                                             "  capacity_blocks: 1048576\n  reservations_max: 0\n"));
    EXPECT_NE(zero.find("store.reservations_max"), std::string::npos) << zero;
    const std::string huge = error_of(
        edited("  capacity_blocks: 1048576\n", "  capacity_blocks: 1048576\n"
                                               "  reservations_max: 16777217\n"));
    EXPECT_NE(huge.find("store.reservations_max"), std::string::npos) << huge;
    EXPECT_NE(huge.find("node.yaml:"), std::string::npos) << huge;
}

TEST(config, store_journal_compact_mb_defaults_and_bounds) {
    EXPECT_EQ(parse(test::config_example).store.journal_compact_mb, 64u);
    const config never = parse(edited("  capacity_blocks: 1048576\n",
                                      "  capacity_blocks: 1048576\n  journal_compact_mb: 0\n"));
    EXPECT_EQ(never.store.journal_compact_mb, 0u);
    const std::string bad = error_of(edited(
        "  capacity_blocks: 1048576\n", "  capacity_blocks: 1048576\n  journal_compact_mb: -1\n"));
    EXPECT_NE(bad.find("store.journal_compact_mb"), std::string::npos) << bad;
}

} // namespace
} // namespace keyrail::control
