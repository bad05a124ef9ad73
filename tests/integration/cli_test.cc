// Runs the keyrail binary as a user would, and checks its certificates with the openssl CLI.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/config_example.h"

#ifndef KEYRAIL_CLI_PATH
#error "KEYRAIL_CLI_PATH must name the keyrail binary"
#endif

namespace {

struct outcome {
    int exit_code;
    std::string output; // stdout and stderr together
};

outcome run(const std::string &command) {
    FILE *pipe = ::popen((command + " 2>&1").c_str(), "r");
    EXPECT_NE(pipe, nullptr) << command;
    std::string output;
    std::array<char, 4096> buf{};
    std::size_t n = 0;
    while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) {
        output.append(buf.data(), n);
    }
    const int status = ::pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::string quoted(const std::filesystem::path &p) {
    return "'" + p.string() + "'";
}

class cli : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/keyrail_cli_test_XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        _dir = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(_dir); }

    outcome keyrail(const std::string &args) {
        return run(std::string(KEYRAIL_CLI_PATH) + " " + args);
    }

    std::filesystem::path _dir;
};

TEST_F(cli, help_and_usage_errors) {
    const outcome help = keyrail("--help");
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_NE(help.output.find("keyrail cert sae"), std::string::npos);
    EXPECT_NE(help.output.find("keyrail config check FILE"), std::string::npos);
    EXPECT_EQ(keyrail("").exit_code, 2);
    const outcome unknown = keyrail("cert intermediate");
    EXPECT_EQ(unknown.exit_code, 2);
    EXPECT_NE(unknown.output.find("unknown command 'cert intermediate'"), std::string::npos);
    const outcome missing = keyrail("cert ca");
    EXPECT_EQ(missing.exit_code, 2);
    EXPECT_NE(missing.output.find("missing required option --out"), std::string::npos);
    const outcome bad_id = keyrail("cert sae --ca x --id 'a b' --out y");
    EXPECT_EQ(bad_id.exit_code, 2);
    EXPECT_NE(bad_id.output.find("--id must be 1 to 64 of [A-Za-z0-9._-]"), std::string::npos);
    const outcome no_ca = keyrail("cert sae --ca " + quoted(_dir / "none") + " --id a --out y");
    EXPECT_EQ(no_ca.exit_code, 1);
    EXPECT_NE(no_ca.output.find("cannot read the CA"), std::string::npos);
}

TEST_F(cli, certificates_verify_with_openssl) {
    const auto ca = _dir / "ca";
    const auto nodes = _dir / "nodes";
    const auto saes = _dir / "saes";
    ASSERT_EQ(keyrail("cert ca --out " + quoted(ca) + " --cn 'Test CA'").exit_code, 0);
    const outcome node =
        keyrail("cert node --ca " + quoted(ca) + " --id kme-a --out " + quoted(nodes) +
                " --dns localhost --dns kme-a.test --ip 127.0.0.1");
    ASSERT_EQ(node.exit_code, 0) << node.output;
    const outcome sae =
        keyrail("cert sae --ca " + quoted(ca) + " --id alice --out " + quoted(saes));
    ASSERT_EQ(sae.exit_code, 0) << sae.output;
    EXPECT_NE(sae.output.find("alice.crt"), std::string::npos);

    const std::string ca_file = quoted(ca / "ca.crt");
    const outcome v_node = run("openssl verify -CAfile " + ca_file + " -purpose sslserver " +
                               quoted(nodes / "kme-a.crt"));
    EXPECT_EQ(v_node.exit_code, 0) << v_node.output;
    EXPECT_NE(v_node.output.find(": OK"), std::string::npos);
    const outcome v_sae = run("openssl verify -CAfile " + ca_file + " -purpose sslclient " +
                              quoted(saes / "alice.crt"));
    EXPECT_EQ(v_sae.exit_code, 0) << v_sae.output;
    // An SAE certificate is for clients only.
    EXPECT_NE(run("openssl verify -CAfile " + ca_file + " -purpose sslserver " +
                  quoted(saes / "alice.crt"))
                  .exit_code,
              0);

    const outcome text = run("openssl x509 -noout -text -in " + quoted(saes / "alice.crt"));
    EXPECT_NE(text.output.find("URI:urn:keyrail:sae:alice"), std::string::npos) << text.output;
    EXPECT_NE(text.output.find("Subject: CN = alice"), std::string::npos);
    EXPECT_NE(text.output.find("TLS Web Client Authentication"), std::string::npos);
    const outcome node_text = run("openssl x509 -noout -text -in " + quoted(nodes / "kme-a.crt"));
    EXPECT_NE(node_text.output.find("DNS:localhost, DNS:kme-a.test, IP Address:127.0.0.1"),
              std::string::npos)
        << node_text.output;
    EXPECT_NE(node_text.output.find("URI:urn:keyrail:node:kme-a"), std::string::npos);
    const outcome ca_text = run("openssl x509 -noout -text -in " + ca_file);
    EXPECT_NE(ca_text.output.find("CA:TRUE"), std::string::npos);

    // A certificate from another CA does not verify.
    const auto other = _dir / "other";
    ASSERT_EQ(keyrail("cert ca --out " + quoted(other)).exit_code, 0);
    ASSERT_EQ(
        keyrail("cert sae --ca " + quoted(other) + " --id mallory --out " + quoted(saes)).exit_code,
        0);
    EXPECT_NE(
        run("openssl verify -CAfile " + ca_file + " " + quoted(saes / "mallory.crt")).exit_code, 0);

    for (const auto &key : {ca / "ca.key", nodes / "kme-a.key", saes / "alice.key"}) {
        struct stat st {};
        ASSERT_EQ(::stat(key.c_str(), &st), 0) << key;
        EXPECT_EQ(st.st_mode & 0777, 0600u) << key;
    }
    // The key really is the certificate's.
    const outcome pub_cert = run("openssl x509 -noout -pubkey -in " + quoted(saes / "alice.crt"));
    const outcome pub_key = run("openssl pkey -pubout -in " + quoted(saes / "alice.key"));
    EXPECT_EQ(pub_cert.output, pub_key.output);
}

TEST_F(cli, sae_prefix_is_configurable) {
    const auto ca = _dir / "ca";
    ASSERT_EQ(keyrail("cert ca --out " + quoted(ca)).exit_code, 0);
    ASSERT_EQ(keyrail("cert sae --ca " + quoted(ca) + " --id bob --prefix urn:example:app: --out " +
                      quoted(_dir))
                  .exit_code,
              0);
    const outcome text = run("openssl x509 -noout -text -in " + quoted(_dir / "bob.crt"));
    EXPECT_NE(text.output.find("URI:urn:example:app:bob"), std::string::npos) << text.output;
}

TEST_F(cli, config_check_good_and_bad) {
    const auto good = _dir / "node.yaml";
    std::ofstream(good) << keyrail::test::config_example;
    const outcome ok = keyrail("config check " + quoted(good));
    EXPECT_EQ(ok.exit_code, 0) << ok.output;
    EXPECT_EQ(ok.output, "ok: " + good.string() +
                             ": node kme-a: 3 SAEs (1 at home), 1 links (a-b -> kme-b), SAE API "
                             "0.0.0.0:8443, shards one per core\n");

    std::string text(keyrail::test::config_example);
    const std::string from = "max_key_size: 65536";
    text.replace(text.find(from), from.size(), "max_key_size: 65537");
    const auto bad = _dir / "bad.yaml";
    std::ofstream(bad) << text;
    const outcome err = keyrail("config check " + quoted(bad));
    EXPECT_EQ(err.exit_code, 1);
    EXPECT_EQ(err.output, bad.string() +
                              ":40:17: limits.max_key_size: must be a multiple of 8 and <= 65536, "
                              "got 65537\n");

    const outcome missing = keyrail("config check " + quoted(_dir / "none.yaml"));
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_NE(missing.output.find("cannot open"), std::string::npos);
}

} // namespace
