#include "control/pki.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <unistd.h>

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "control/errc.h"

namespace keyrail::control::pki {
namespace {

struct x509_free_fn {
    void operator()(X509 *p) const noexcept { X509_free(p); }
};
using x509_ptr = std::unique_ptr<X509, x509_free_fn>;

x509_ptr parse(const std::string &pem) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
    return x509_ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

// X509_verify_cert of leaf against a store holding only ca; returns the verify error code
// (X509_V_OK on success).
int verify(const credential &ca, const credential &leaf) {
    x509_ptr ca_cert = parse(ca.cert_pem);
    x509_ptr leaf_cert = parse(leaf.cert_pem);
    EXPECT_TRUE(ca_cert);
    EXPECT_TRUE(leaf_cert);
    std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(),
                                                                  &X509_STORE_free);
    EXPECT_EQ(X509_STORE_add_cert(store.get(), ca_cert.get()), 1);
    std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                        &X509_STORE_CTX_free);
    EXPECT_EQ(X509_STORE_CTX_init(ctx.get(), store.get(), leaf_cert.get(), nullptr), 1);
    const int ok = X509_verify_cert(ctx.get());
    const int err = X509_STORE_CTX_get_error(ctx.get());
    if (ok == 1) {
        EXPECT_EQ(err, X509_V_OK);
    } else {
        EXPECT_NE(err, X509_V_OK);
    }
    return err;
}

std::vector<std::string> san_uris(const credential &cred) {
    x509_ptr cert = parse(cred.cert_pem);
    std::vector<std::string> out;
    auto *gens = static_cast<GENERAL_NAMES *>(
        X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
    if (gens == nullptr) {
        return out;
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); ++i) {
        const GENERAL_NAME *gen = sk_GENERAL_NAME_value(gens, i);
        if (gen->type == GEN_URI) {
            const ASN1_STRING *s = gen->d.uniformResourceIdentifier;
            out.emplace_back(reinterpret_cast<const char *>(ASN1_STRING_get0_data(s)),
                             static_cast<std::size_t>(ASN1_STRING_length(s)));
        }
    }
    GENERAL_NAMES_free(gens);
    return out;
}

cert_spec sae_spec(const std::string &id) {
    cert_spec spec;
    spec.common_name = id;
    spec.san_uris = {"urn:keyrail:sae:" + id};
    spec.role = cert_role::client;
    return spec;
}

class pki : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        auto ca = make_ca("keyrail test CA");
        ASSERT_TRUE(ca) << ca.error().message();
        _ca = new credential(std::move(*ca));
    }
    static void TearDownTestSuite() {
        delete _ca;
        _ca = nullptr;
    }
    static const credential &ca() { return *_ca; }

private:
    static inline credential *_ca = nullptr;
};

TEST_F(pki, ca_is_self_signed_ca) {
    x509_ptr cert = parse(ca().cert_pem);
    ASSERT_TRUE(cert);
    EXPECT_EQ(X509_check_ca(cert.get()), 1);
    EXPECT_EQ(X509_check_issued(cert.get(), cert.get()), X509_V_OK);
    EXPECT_NE(ca().key_pem.find("PRIVATE KEY"), std::string::npos);
}

TEST_F(pki, client_cert_chains_to_its_ca_and_carries_san_uri) {
    auto alice = issue(ca(), sae_spec("alice"));
    ASSERT_TRUE(alice) << alice.error().message();
    EXPECT_EQ(verify(ca(), *alice), X509_V_OK);
    EXPECT_EQ(san_uris(*alice), std::vector<std::string>{"urn:keyrail:sae:alice"});
    x509_ptr cert = parse(alice->cert_pem);
    EXPECT_EQ(X509_check_ca(cert.get()), 0);
    EXPECT_TRUE((X509_get_extended_key_usage(cert.get()) & XKU_SSL_CLIENT) != 0);
    EXPECT_FALSE((X509_get_extended_key_usage(cert.get()) & XKU_SSL_SERVER) != 0);
}

TEST_F(pki, server_cert_has_dns_and_ip_and_server_auth) {
    cert_spec spec;
    spec.common_name = "node-a";
    spec.san_dns = {"localhost"};
    spec.san_ips = {"127.0.0.1", "::1"};
    spec.role = cert_role::server_and_client;
    auto node = issue(ca(), spec);
    ASSERT_TRUE(node) << node.error().message();
    EXPECT_EQ(verify(ca(), *node), X509_V_OK);
    x509_ptr cert = parse(node->cert_pem);
    EXPECT_EQ(X509_check_host(cert.get(), "localhost", 0, 0, nullptr), 1);
    EXPECT_EQ(X509_check_ip_asc(cert.get(), "127.0.0.1", 0), 1);
    EXPECT_EQ(X509_check_ip_asc(cert.get(), "::1", 0), 1);
    const auto xku = X509_get_extended_key_usage(cert.get());
    EXPECT_TRUE((xku & XKU_SSL_SERVER) != 0);
    EXPECT_TRUE((xku & XKU_SSL_CLIENT) != 0);
}

TEST_F(pki, serials_are_random_and_128_bit) {
    auto a = issue(ca(), sae_spec("a"));
    auto b = issue(ca(), sae_spec("b"));
    ASSERT_TRUE(a);
    ASSERT_TRUE(b);
    x509_ptr ca_cert = parse(a->cert_pem);
    x509_ptr cb_cert = parse(b->cert_pem);
    const ASN1_INTEGER *sa = X509_get0_serialNumber(ca_cert.get());
    const ASN1_INTEGER *sb = X509_get0_serialNumber(cb_cert.get());
    EXPECT_EQ(ASN1_STRING_length(sa), 16);
    EXPECT_NE(ASN1_INTEGER_cmp(sa, sb), 0);
}

TEST_F(pki, expired_spec_gives_expired_cert) {
    cert_spec spec = sae_spec("old");
    spec.valid_from_offset_s = -2L * 24 * 3600;
    spec.valid_for_s = 24L * 3600;
    auto old = issue(ca(), spec);
    ASSERT_TRUE(old) << old.error().message();
    EXPECT_EQ(verify(ca(), *old), X509_V_ERR_CERT_HAS_EXPIRED);
}

TEST_F(pki, not_yet_valid_spec_gives_future_cert) {
    cert_spec spec = sae_spec("future");
    spec.valid_from_offset_s = 24L * 3600;
    auto future = issue(ca(), spec);
    ASSERT_TRUE(future);
    EXPECT_EQ(verify(ca(), *future), X509_V_ERR_CERT_NOT_YET_VALID);
}

TEST_F(pki, wrong_ca_fails_to_verify) {
    auto other = make_ca("other CA");
    ASSERT_TRUE(other);
    auto alice = issue(*other, sae_spec("alice"));
    ASSERT_TRUE(alice);
    EXPECT_EQ(verify(ca(), *alice), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    EXPECT_EQ(verify(*other, *alice), X509_V_OK);
}

TEST_F(pki, bad_specs_are_rejected) {
    cert_spec empty_cn = sae_spec("x");
    empty_cn.common_name.clear();
    EXPECT_EQ(issue(ca(), empty_cn).error(), make_error_code(errc::invalid_spec));

    cert_spec bad_ip = sae_spec("x");
    bad_ip.san_ips = {"300.1.1.1"};
    EXPECT_EQ(issue(ca(), bad_ip).error(), make_error_code(errc::invalid_spec));

    cert_spec spaced_uri = sae_spec("x");
    spaced_uri.san_uris = {"urn:keyrail:sae:a b"};
    EXPECT_EQ(issue(ca(), spaced_uri).error(), make_error_code(errc::invalid_spec));

    cert_spec no_time = sae_spec("x");
    no_time.valid_for_s = 0;
    EXPECT_EQ(issue(ca(), no_time).error(), make_error_code(errc::invalid_spec));
}

TEST_F(pki, leaf_cannot_act_as_ca) {
    auto alice = issue(ca(), sae_spec("alice"));
    ASSERT_TRUE(alice);
    EXPECT_EQ(issue(*alice, sae_spec("mallory")).error(), make_error_code(errc::invalid_spec));
}

TEST_F(pki, mismatched_key_is_rejected) {
    auto other = make_ca("other CA");
    ASSERT_TRUE(other);
    credential franken;
    franken.cert_pem = ca().cert_pem;
    franken.key_pem = other->key_pem;
    EXPECT_EQ(issue(franken, sae_spec("x")).error(), make_error_code(errc::key_mismatch));
    credential garbage;
    garbage.cert_pem = "not a pem";
    garbage.key_pem = other->key_pem;
    EXPECT_EQ(issue(garbage, sae_spec("x")).error(), make_error_code(errc::bad_pem));
}

TEST_F(pki, write_then_read_round_trips_with_key_mode_0600) {
    char tmpl[] = "/tmp/keyrail_pki_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::filesystem::path dir(tmpl);
    const auto cert_path = dir / "sub" / "alice.crt";
    const auto key_path = dir / "sub" / "alice.key";
    auto alice = issue(ca(), sae_spec("alice"));
    ASSERT_TRUE(alice);
    // A pre-existing, world-readable key file must come out 0600 anyway.
    std::filesystem::create_directories(key_path.parent_path());
    {
        FILE *f = std::fopen(key_path.c_str(), "w");
        ASSERT_NE(f, nullptr);
        std::fclose(f);
        ::chmod(key_path.c_str(), 0644);
    }
    ASSERT_TRUE(write_files(*alice, cert_path, key_path));
    struct stat st {};
    ASSERT_EQ(::stat(key_path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    auto back = read_files(cert_path, key_path);
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(back->cert_pem, alice->cert_pem);
    EXPECT_EQ(back->key_pem, alice->key_pem);
    EXPECT_FALSE(read_files(dir / "missing.crt", key_path));
    std::filesystem::remove_all(dir);
}

} // namespace
} // namespace keyrail::control::pki
