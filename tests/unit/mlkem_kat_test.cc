// ML-KEM known-answer tests: every vector in ../shared/testdata/mlkem (see its README), run
// against each backend of the build. Any mismatch fails; each test prints how many vectors it
// checked.
#include <algorithm>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "dataplane/crypto/errc.h"
#include "dataplane/crypto/hash.h"
#include "dataplane/crypto/mlkem.h"
#include "tests/support/mlkem_json.h"
#include "tests/support/mlkem_sets.h"
#include "tests/support/mlkem_testdata.h"

namespace {

using namespace keyrail;
using namespace keyrail::test;
using crypto::mlkem_backend;

const char* backend_name(mlkem_backend b) {
    return b == mlkem_backend::native ? "native" : "openssl";
}

template <class S>
std::span<const std::uint8_t, 32> seed32(const byte_vec& v) {
    EXPECT_EQ(v.size(), 32u);
    return std::span<const std::uint8_t, 32>(v.data(), 32);
}

// KeyGen_internal(d, z) == (ek, dk).
template <class S>
bool check_keygen(const byte_vec& d, const byte_vec& z, const byte_vec& ek, const byte_vec& dk,
                  mlkem_backend b) {
    auto kp = S::keygen_internal(seed32<S>(d), seed32<S>(z), b);
    return kp && same_bytes(kp->ek, ek) && same_bytes(kp->dk.bytes(), dk);
}

// Encaps_internal(ek, m) == (k, c).
template <class S>
bool check_encaps(const byte_vec& ek, const byte_vec& m, const byte_vec& c, const byte_vec& k,
                  mlkem_backend b) {
    auto enc = S::encaps_internal(ek, seed32<S>(m), b);
    return enc && same_bytes(enc->c, c) && same_bytes(enc->k.bytes(), k);
}

// Decaps_internal(dk, c) == k.
template <class S>
bool check_decaps(const byte_vec& dk, const byte_vec& c, const byte_vec& k, mlkem_backend b) {
    auto got = S::decaps_internal(dk, c, b);
    return got && same_bytes(got->bytes(), k);
}

class mlkem_kat : public ::testing::TestWithParam<mlkem_backend> {};

TEST_P(mlkem_kat, nist_acvp_keygen) {
    const auto root = json::parse(read_text(
        mlkem_testdata_dir() + "/nist-acvp/ML-KEM-keyGen-FIPS203/internalProjection.json"));
    int checked = 0;
    for (const auto& group : root["testGroups"].items()) {
        with_mlkem_set(group["parameterSet"].str(), [&]<class S>() {
            for (const auto& t : group["tests"].items()) {
                EXPECT_TRUE(check_keygen<S>(hex(t["d"].str()), hex(t["z"].str()),
                                            hex(t["ek"].str()), hex(t["dk"].str()), GetParam()))
                    << "tcId " << t["tcId"].num();
                ++checked;
            }
        });
    }
    EXPECT_EQ(checked, 75);
    std::printf("%s: nist acvp keyGen: %d vectors\n", backend_name(GetParam()), checked);
}

TEST_P(mlkem_kat, nist_acvp_encap_decap) {
    const auto root = json::parse(read_text(
        mlkem_testdata_dir() + "/nist-acvp/ML-KEM-encapDecap-FIPS203/internalProjection.json"));
    int encaps = 0;
    int decaps = 0;
    int rejections = 0;
    int dk_checks = 0;
    int ek_checks = 0;
    for (const auto& group : root["testGroups"].items()) {
        const std::string function = group["function"].str();
        with_mlkem_set(group["parameterSet"].str(), [&]<class S>() {
            for (const auto& t : group["tests"].items()) {
                const auto id = t["tcId"].num();
                if (function == "encapsulation") {
                    EXPECT_TRUE(check_encaps<S>(hex(t["ek"].str()), hex(t["m"].str()),
                                                hex(t["c"].str()), hex(t["k"].str()), GetParam()))
                        << "tcId " << id;
                    ++encaps;
                } else if (function == "decapsulation") {
                    const auto dk = hex(t["dk"].str());
                    if (group["keyFormat"].str() == "seed") {
                        EXPECT_TRUE(check_keygen<S>(hex(t["d"].str()), hex(t["z"].str()),
                                                    hex(t["ek"].str()), dk, GetParam()))
                            << "tcId " << id;
                    }
                    EXPECT_TRUE(
                        check_decaps<S>(dk, hex(t["c"].str()), hex(t["k"].str()), GetParam()))
                        << "tcId " << id << " " << t["reason"].str();
                    ++decaps;
                    rejections += t["reason"].str() == "modified ciphertext" ? 1 : 0;
                } else if (function == "decapsulationKeyCheck") {
                    EXPECT_EQ(S::check_decapsulation_key(hex(t["dk"].str())),
                              t["testPassed"].boolean())
                        << "tcId " << id;
                    ++dk_checks;
                } else if (function == "encapsulationKeyCheck") {
                    EXPECT_EQ(S::check_encapsulation_key(hex(t["ek"].str())),
                              t["testPassed"].boolean())
                        << "tcId " << id;
                    ++ek_checks;
                } else {
                    ADD_FAILURE() << "unknown function " << function;
                }
            }
        });
    }
    EXPECT_EQ(encaps, 75);
    EXPECT_EQ(decaps, 60);
    EXPECT_EQ(dk_checks, 30);
    EXPECT_EQ(ek_checks, 30);
    std::printf("%s: nist acvp encapDecap: %d encaps, %d decaps (%d implicit rejections), "
                "%d dk checks, %d ek checks\n",
                backend_name(GetParam()), encaps, decaps, rejections, dk_checks, ek_checks);
}

TEST_P(mlkem_kat, nist_flat_records) {
    int checked = 0;
    for (const std::string set : {"ML-KEM-512", "ML-KEM-768", "ML-KEM-1024"}) {
        const auto records =
            read_records(read_text(mlkem_testdata_dir() + "/flat/" + set + ".txt"));
        with_mlkem_set(set, [&]<class S>() {
            for (const auto& r : records) {
                const std::string& op = r.at("op");
                const std::string where = set + " " + op + " tcId " + r.at("tcId");
                if (op == "keygen") {
                    EXPECT_TRUE(check_keygen<S>(hex(r.at("d")), hex(r.at("z")), hex(r.at("ek")),
                                                hex(r.at("dk")), GetParam()))
                        << where;
                } else if (op == "encaps") {
                    EXPECT_TRUE(check_encaps<S>(hex(r.at("ek")), hex(r.at("m")), hex(r.at("c")),
                                                hex(r.at("k")), GetParam()))
                        << where;
                } else if (op == "decaps") {
                    EXPECT_TRUE(check_decaps<S>(hex(r.at("dk")), hex(r.at("c")), hex(r.at("k")),
                                                GetParam()))
                        << where;
                } else if (op == "ekcheck") {
                    EXPECT_EQ(S::check_encapsulation_key(hex(r.at("ek"))), r.at("valid") == "1")
                        << where;
                } else if (op == "dkcheck") {
                    EXPECT_EQ(S::check_decapsulation_key(hex(r.at("dk"))), r.at("valid") == "1")
                        << where;
                } else {
                    ADD_FAILURE() << "unknown op " << where;
                }
                ++checked;
            }
        });
    }
    EXPECT_EQ(checked, 3 * 90);
    std::printf("%s: flat records: %d\n", backend_name(GetParam()), checked);
}

TEST_P(mlkem_kat, cctv_strcmp) {
    int checked = 0;
    for (const std::string set : {"ML-KEM-512", "ML-KEM-768", "ML-KEM-1024"}) {
        const auto r =
            read_records(read_text(mlkem_testdata_dir() + "/cctv/strcmp/" + set + ".txt")).at(0);
        with_mlkem_set(set, [&]<class S>() {
            EXPECT_TRUE(check_decaps<S>(hex(r.at("dk")), hex(r.at("c")), hex(r.at("K")),
                                        GetParam()))
                << set;
        });
        ++checked;
    }
    std::printf("%s: cctv strcmp: %d\n", backend_name(GetParam()), checked);
}

TEST_P(mlkem_kat, cctv_unlucky_sample_ntt) {
    int checked = 0;
    for (const std::string set : {"ML-KEM-512", "ML-KEM-768", "ML-KEM-1024"}) {
        const auto r = read_records(
                           read_text(mlkem_testdata_dir() + "/cctv/unluckysample/" + set + ".txt"))
                           .at(0);
        with_mlkem_set(set, [&]<class S>() {
            EXPECT_TRUE(check_keygen<S>(hex(r.at("d")), hex(r.at("z")), hex(r.at("ek")),
                                        hex(r.at("dk")), GetParam()))
                << set;
            EXPECT_TRUE(check_encaps<S>(hex(r.at("ek")), hex(r.at("m")), hex(r.at("c")),
                                        hex(r.at("K")), GetParam()))
                << set;
            EXPECT_TRUE(
                check_decaps<S>(hex(r.at("dk")), hex(r.at("c")), hex(r.at("K")), GetParam()))
                << set;
        });
        ++checked;
    }
    std::printf("%s: cctv unluckysample: %d\n", backend_name(GetParam()), checked);
}

TEST_P(mlkem_kat, cctv_modulus) {
    int checked = 0;
    for (const std::string set : {"ML-KEM-512", "ML-KEM-768", "ML-KEM-1024"}) {
        const std::string text =
            read_gzip(mlkem_testdata_dir() + "/cctv/modulus/" + set + ".txt.gz");
        std::istringstream in(text);
        std::string line;
        int lines = 0;
        with_mlkem_set(set, [&]<class S>() {
            while (std::getline(in, line)) {
                if (line.empty()) {
                    continue;
                }
                const auto ek = hex(line);
                EXPECT_EQ(ek.size(), S::encapsulation_key_bytes);
                EXPECT_FALSE(S::check_encapsulation_key(ek)) << set << " line " << lines;
                auto enc = S::encaps(ek, GetParam());
                ASSERT_FALSE(enc) << set << " line " << lines;
                EXPECT_EQ(enc.error(), crypto::errc::invalid_encapsulation_key);
                ++lines;
            }
        });
        EXPECT_EQ(lines, set == "ML-KEM-512" ? 775 : set == "ML-KEM-768" ? 780 : 1040);
        checked += lines;
    }
    std::printf("%s: cctv modulus: %d invalid keys rejected\n", backend_name(GetParam()),
                checked);
}

TEST_P(mlkem_kat, wycheproof_keygen_seed) {
    using S = crypto::detail::mlkem_set<3>;
    const auto root = json::parse(
        read_text(mlkem_testdata_dir() + "/wycheproof/mlkem_768_keygen_seed_test.json"));
    int checked = 0;
    for (const auto& group : root["testGroups"].items()) {
        for (const auto& t : group["tests"].items()) {
            const auto seed = hex(t["seed"].str());
            ASSERT_EQ(seed.size(), 64u);
            const byte_vec d(seed.begin(), seed.begin() + 32);
            const byte_vec z(seed.begin() + 32, seed.end());
            const bool ok = check_keygen<S>(d, z, hex(t["ek"].str()), hex(t["dk"].str()),
                                            GetParam());
            EXPECT_EQ(ok, t["result"].str() != "invalid") << "tcId " << t["tcId"].num();
            ++checked;
        }
    }
    EXPECT_EQ(checked, static_cast<int>(root["numberOfTests"].num()));
    std::printf("%s: wycheproof keygen_seed: %d\n", backend_name(GetParam()), checked);
}

TEST_P(mlkem_kat, wycheproof_encaps) {
    using S = crypto::detail::mlkem_set<3>;
    const auto root =
        json::parse(read_text(mlkem_testdata_dir() + "/wycheproof/mlkem_768_encaps_test.json"));
    int valid = 0;
    int invalid = 0;
    for (const auto& group : root["testGroups"].items()) {
        for (const auto& t : group["tests"].items()) {
            const auto id = t["tcId"].num();
            const auto ek = hex(t["ek"].str());
            const auto m = hex(t["m"].str());
            ASSERT_EQ(m.size(), 32u) << "tcId " << id;
            if (t["result"].str() == "invalid") {
                EXPECT_FALSE(S::check_encapsulation_key(ek)) << "tcId " << id;
                EXPECT_FALSE(S::encaps(ek, GetParam())) << "tcId " << id;
                ++invalid;
            } else {
                EXPECT_TRUE(S::check_encapsulation_key(ek)) << "tcId " << id;
                EXPECT_TRUE(check_encaps<S>(ek, m, hex(t["c"].str()), hex(t["K"].str()),
                                            GetParam()))
                    << "tcId " << id;
                ++valid;
            }
        }
    }
    EXPECT_EQ(valid + invalid, static_cast<int>(root["numberOfTests"].num()));
    std::printf("%s: wycheproof encaps: %d valid, %d invalid\n", backend_name(GetParam()), valid,
                invalid);
}

TEST_P(mlkem_kat, wycheproof_decaps) {
    using S = crypto::detail::mlkem_set<3>;
    const auto root =
        json::parse(read_text(mlkem_testdata_dir() + "/wycheproof/mlkem_768_test.json"));
    int valid = 0;
    int invalid = 0;
    for (const auto& group : root["testGroups"].items()) {
        for (const auto& t : group["tests"].items()) {
            const auto id = t["tcId"].num();
            const auto seed = hex(t["seed"].str());
            const auto c = hex(t["c"].str());
            const bool expect_valid = t["result"].str() != "invalid";
            if (seed.size() != 64) {
                // A seed of the wrong length cannot be expressed: the API takes 32-byte d, z.
                EXPECT_FALSE(expect_valid) << "tcId " << id;
                ++invalid;
                continue;
            }
            auto kp = S::keygen_internal(std::span<const std::uint8_t, 32>(seed.data(), 32),
                                         std::span<const std::uint8_t, 32>(seed.data() + 32, 32),
                                         GetParam());
            ASSERT_TRUE(kp) << "tcId " << id;
            EXPECT_TRUE(same_bytes(kp->ek, hex(t["ek"].str()))) << "tcId " << id;
            auto k = S::decaps(kp->dk.bytes(), c, GetParam());
            if (expect_valid) {
                ASSERT_TRUE(k) << "tcId " << id;
                EXPECT_TRUE(same_bytes(k->bytes(), hex(t["K"].str()))) << "tcId " << id;
                ++valid;
            } else {
                EXPECT_FALSE(k) << "tcId " << id;
                ++invalid;
            }
        }
    }
    EXPECT_EQ(valid + invalid, static_cast<int>(root["numberOfTests"].num()));
    std::printf("%s: wycheproof decaps: %d valid, %d invalid\n", backend_name(GetParam()), valid,
                invalid);
}

TEST_P(mlkem_kat, wycheproof_semi_expanded_decaps) {
    using S = crypto::detail::mlkem_set<3>;
    const auto root = json::parse(
        read_text(mlkem_testdata_dir() + "/wycheproof/mlkem_768_semi_expanded_decaps_test.json"));
    int valid = 0;
    int invalid = 0;
    for (const auto& group : root["testGroups"].items()) {
        for (const auto& t : group["tests"].items()) {
            const auto id = t["tcId"].num();
            auto k = S::decaps(hex(t["dk"].str()), hex(t["c"].str()), GetParam());
            if (t["result"].str() != "invalid") {
                ASSERT_TRUE(k) << "tcId " << id;
                EXPECT_TRUE(same_bytes(k->bytes(), hex(t["K"].str()))) << "tcId " << id;
                ++valid;
            } else {
                EXPECT_FALSE(k) << "tcId " << id;
                ++invalid;
            }
        }
    }
    EXPECT_EQ(valid + invalid, static_cast<int>(root["numberOfTests"].num()));
    std::printf("%s: wycheproof semi-expanded decaps: %d valid, %d invalid\n",
                backend_name(GetParam()), valid, invalid);
}

// CCTV accumulated test (cctv/accumulated.json): N rounds of KeyGen, Encaps, Decaps and an
// implicit rejection, inputs from one SHAKE-128 stream, outputs into another. OpenSSL 3.0
// squeezes once, so the whole input stream is squeezed up front.
template <class S>
std::string accumulated_hash(std::size_t rounds, mlkem_backend b) {
    const std::size_t per_round = 3 * 32 + S::ciphertext_bytes;
    byte_vec stream(rounds * per_round);
    EXPECT_TRUE(crypto::detail::hash(crypto::detail::hash_kind::shake128, {}, stream));
    byte_vec acc;
    acc.reserve(rounds * (S::encapsulation_key_bytes + S::decapsulation_key_bytes +
                          S::ciphertext_bytes + 64));
    for (std::size_t i = 0; i < rounds; ++i) {
        const std::uint8_t* in = stream.data() + i * per_round;
        auto kp = S::keygen_internal(std::span<const std::uint8_t, 32>(in, 32),
                                     std::span<const std::uint8_t, 32>(in + 32, 32), b);
        EXPECT_TRUE(kp);
        auto enc = S::encaps_internal(kp->ek, std::span<const std::uint8_t, 32>(in + 64, 32), b);
        EXPECT_TRUE(enc);
        auto k = S::decaps_internal(kp->dk.bytes(), enc->c, b);
        EXPECT_TRUE(k && *k == enc->k) << "round " << i;
        auto k_random =
            S::decaps_internal(kp->dk.bytes(), std::span(in + 96, S::ciphertext_bytes), b);
        EXPECT_TRUE(k_random);
        acc.insert(acc.end(), kp->ek.begin(), kp->ek.end());
        acc.insert(acc.end(), kp->dk.data(), kp->dk.data() + kp->dk.size());
        acc.insert(acc.end(), enc->c.begin(), enc->c.end());
        acc.insert(acc.end(), enc->k.data(), enc->k.data() + 32);
        acc.insert(acc.end(), k_random->data(), k_random->data() + 32);
    }
    std::uint8_t out[32];
    EXPECT_TRUE(crypto::detail::hash(crypto::detail::hash_kind::shake128, {acc}, out));
    return to_hex(out, sizeof out);
}

TEST_P(mlkem_kat, cctv_accumulated_100) {
    const auto root = json::parse(read_text(mlkem_testdata_dir() + "/cctv/accumulated.json"));
    int checked = 0;
    for (const std::string set : {"ML-KEM-512", "ML-KEM-768", "ML-KEM-1024"}) {
        const std::string want = root["fips203_final"][set]["100"].str();
        const std::string got =
            with_mlkem_set(set, [&]<class S>() { return accumulated_hash<S>(100, GetParam()); });
        EXPECT_EQ(got, want) << set;
        checked += 100;
    }
    EXPECT_EQ(checked, 300);
    std::printf("%s: cctv accumulated: %d rounds over 3 parameter sets\n", backend_name(GetParam()),
                checked);
}

// The 10 000-round ML-KEM-768 hash; mlkem_accumulated_test runs it (gtest filter), with a
// longer timeout than the other vectors need.
TEST_P(mlkem_kat, cctv_accumulated_10000_768) {
    if (std::getenv("KEYRAIL_MLKEM_LONG") == nullptr) {
        GTEST_SKIP() << "run by mlkem_accumulated_test (KEYRAIL_MLKEM_LONG=1)";
    }
    using S = crypto::detail::mlkem_set<3>;
    const auto root = json::parse(read_text(mlkem_testdata_dir() + "/cctv/accumulated.json"));
    EXPECT_EQ(accumulated_hash<S>(10000, GetParam()),
              root["fips203_final"]["ML-KEM-768"]["10000"].str());
    std::printf("%s: cctv accumulated: ML-KEM-768 x 10000 rounds\n", backend_name(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(backends, mlkem_kat,
                         ::testing::ValuesIn(crypto::mlkem_backends().begin(),
                                             crypto::mlkem_backends().end()),
                         [](const auto& p) { return std::string(backend_name(p.param)); });

} // namespace
