// ML-KEM API behaviour and internals: round trips for every parameter set, the section 7
// input checks as errors, implicit rejection, and the arithmetic helpers against plain
// reference formulas (exhaustively where the domain is small).
#include <cstring>
#include <random>

#include <gtest/gtest.h>

#include "dataplane/crypto/errc.h"
#include "dataplane/crypto/hash.h"
#include "dataplane/crypto/mlkem.h"
#include "dataplane/crypto/mlkem_internal.h"
#include "tests/support/env.h"

namespace {

using namespace keyrail::crypto;
namespace d = keyrail::crypto::detail;

template <class S>
class mlkem_api : public ::testing::Test {};
using sets = ::testing::Types<d::mlkem_set<2>, d::mlkem_set<3>, d::mlkem_set<4>>;
TYPED_TEST_SUITE(mlkem_api, sets);

TYPED_TEST(mlkem_api, round_trip) {
    using S = TypeParam;
    for (int i = 0; i < 5; ++i) {
        auto kp = S::keygen(mlkem_default_backend());
        ASSERT_TRUE(kp);
        EXPECT_TRUE(S::check_encapsulation_key(kp->ek));
        EXPECT_TRUE(S::check_decapsulation_key(kp->dk.bytes()));
        auto enc = S::encaps(kp->ek, mlkem_default_backend());
        ASSERT_TRUE(enc);
        auto k = S::decaps(kp->dk.bytes(), enc->c, mlkem_default_backend());
        ASSERT_TRUE(k);
        EXPECT_TRUE(*k == enc->k);
    }
}

TYPED_TEST(mlkem_api, implicit_rejection_returns_j_of_z_and_c) {
    using S = TypeParam;
    auto kp = S::keygen(mlkem_default_backend());
    ASSERT_TRUE(kp);
    auto enc = S::encaps(kp->ek, mlkem_default_backend());
    ASSERT_TRUE(enc);
    for (std::size_t at : {std::size_t{0}, S::ciphertext_bytes / 2, S::ciphertext_bytes - 1}) {
        auto c = enc->c;
        c[at] ^= 1;
        auto k = S::decaps(kp->dk.bytes(), c, mlkem_default_backend());
        ASSERT_TRUE(k);
        std::uint8_t want[32];
        const auto z = kp->dk.bytes().subspan(S::decapsulation_key_bytes - 32);
        ASSERT_TRUE(d::hash(d::hash_kind::shake256, {z, c}, want));
        EXPECT_EQ(std::memcmp(k->data(), want, 32), 0) << "flipped byte " << at;
    }
}

TYPED_TEST(mlkem_api, input_checks_are_errors) {
    using S = TypeParam;
    auto kp = S::keygen(mlkem_default_backend());
    ASSERT_TRUE(kp);
    auto enc = S::encaps(kp->ek, mlkem_default_backend());
    ASSERT_TRUE(enc);
    const std::span<const std::uint8_t> ek(kp->ek);
    const std::span<const std::uint8_t> dk(kp->dk.bytes());
    const std::span<const std::uint8_t> c(enc->c);

    EXPECT_EQ(S::encaps(ek.first(ek.size() - 1), mlkem_default_backend()).error(),
              errc::invalid_encapsulation_key);
    auto bad_ek = kp->ek;
    bad_ek[0] = 0xff; // first coefficient becomes >= 3329 when its high nibble is 0xf
    bad_ek[1] |= 0x0f;
    EXPECT_EQ(S::encaps(bad_ek, mlkem_default_backend()).error(), errc::invalid_encapsulation_key);

    EXPECT_EQ(S::decaps(dk, c.first(c.size() - 1), mlkem_default_backend()).error(),
              errc::invalid_ciphertext);
    EXPECT_EQ(S::decaps(dk.first(dk.size() - 1), c, mlkem_default_backend()).error(),
              errc::invalid_decapsulation_key);
    auto bad_dk = kp->dk;
    bad_dk.data()[S::decapsulation_key_bytes - 40] ^= 1; // inside H(ek)
    EXPECT_FALSE(S::check_decapsulation_key(bad_dk.bytes()));
    EXPECT_EQ(S::decaps(bad_dk.bytes(), c, mlkem_default_backend()).error(),
              errc::invalid_decapsulation_key);
    EXPECT_FALSE(make_error_code(errc::invalid_ciphertext).message().empty());
}

TEST(mlkem_arith, div_q_matches_division) {
    for (std::uint32_t x = 0; x < (1u << 24); ++x) {
        ASSERT_EQ(d::div_q(x), x / d::q) << x;
    }
    std::mt19937_64 rng(keyrail::test::seed("mlkem_arith"));
    for (int i = 0; i < 1000000; ++i) {
        const auto x = static_cast<std::uint32_t>(rng());
        ASSERT_EQ(d::div_q(x), x / d::q) << x;
        ASSERT_EQ(d::reduce(x), x % d::q) << x;
    }
}

TEST(mlkem_arith, compress_and_decompress_match_the_rational_formulas) {
    for (unsigned bits : {1u, 4u, 5u, 10u, 11u}) {
        for (std::uint32_t x = 0; x < d::q; ++x) {
            // round(2^d x / q) = floor((2^(d+1) x + q) / (2q)).
            const std::uint32_t want = (((x << (bits + 1)) + d::q) / (2 * d::q)) % (1u << bits);
            ASSERT_EQ(d::compress(x, bits), want) << "d " << bits << " x " << x;
        }
        for (std::uint32_t y = 0; y < (1u << bits); ++y) {
            const std::uint32_t want = ((y * d::q * 2) + (1u << bits)) / (2u << bits);
            ASSERT_EQ(d::decompress(y, bits), want) << "d " << bits << " y " << y;
        }
    }
}

TEST(mlkem_arith, ntt_multiplication_is_negacyclic_convolution) {
    std::mt19937_64 rng(keyrail::test::seed("mlkem_ntt"));
    for (int round = 0; round < 20; ++round) {
        d::poly f;
        d::poly g;
        for (std::size_t i = 0; i < d::n; ++i) {
            f.c[i] = static_cast<std::uint16_t>(rng() % d::q);
            g.c[i] = static_cast<std::uint16_t>(rng() % d::q);
        }
        // Schoolbook product in Z_q[X]/(X^256 + 1).
        std::array<std::int64_t, d::n> want{};
        for (std::size_t i = 0; i < d::n; ++i) {
            for (std::size_t j = 0; j < d::n; ++j) {
                const std::int64_t p = std::int64_t{f.c[i]} * g.c[j];
                if (i + j < d::n) {
                    want[i + j] += p;
                } else {
                    want[i + j - d::n] -= p;
                }
            }
        }
        d::poly round_trip = f;
        d::ntt(round_trip);
        d::ntt_inverse(round_trip);
        EXPECT_EQ(round_trip.c, f.c);
        d::ntt(f);
        d::ntt(g);
        std::array<std::uint32_t, d::n> acc{};
        d::multiply_ntt_acc(acc, f, g);
        d::poly h;
        d::reduce_acc(h, acc);
        d::ntt_inverse(h);
        for (std::size_t i = 0; i < d::n; ++i) {
            const std::int64_t w = ((want[i] % d::q) + d::q) % d::q;
            ASSERT_EQ(h.c[i], w) << "coefficient " << i;
        }
    }
}

TEST(mlkem_arith, sample_ntt_resumes_after_running_out) {
    // Starting from one 3-byte group forces every retry step; the result must equal the
    // default single squeeze.
    for (std::uint8_t seed = 0; seed < 8; ++seed) {
        std::array<std::uint8_t, 32> rho{};
        rho.fill(seed);
        d::poly a;
        d::poly b;
        d::poly c;
        ASSERT_TRUE(d::sample_ntt(a, rho, 1, 2));
        ASSERT_TRUE(d::sample_ntt(b, rho, 1, 2, 3));
        ASSERT_TRUE(d::sample_ntt(c, rho, 1, 2, d::xof_block_bytes));
        EXPECT_EQ(a.c, b.c);
        EXPECT_EQ(a.c, c.c);
        for (auto x : a.c) {
            ASSERT_LT(x, d::q);
        }
    }
}

TEST(mlkem_arith, byte_encode_round_trips) {
    std::mt19937_64 rng(keyrail::test::seed("mlkem_encode"));
    for (unsigned bits : {1u, 4u, 5u, 10u, 11u, 12u}) {
        d::poly f;
        for (auto& x : f.c) {
            x = static_cast<std::uint16_t>(rng() % (bits == 12 ? d::q : (1u << bits)));
        }
        std::array<std::uint8_t, 384> buf{};
        d::byte_encode(std::span(buf.data(), 32 * bits), f, bits);
        d::poly g;
        d::byte_decode(g, std::span(buf.data(), 32 * bits), bits);
        EXPECT_EQ(f.c, g.c) << "d " << bits;
    }
}

} // namespace
