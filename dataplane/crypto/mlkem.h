#pragma once
// ML-KEM (FIPS 203, August 2024): the key encapsulation of hybrid and PQC-only relay hops.
// Lives on: any shard; every function is stateless and reentrant (each thread keeps its own
// OpenSSL hash context, see hash.h). No function throws or allocates on the heap.
//
//   auto kp = keyrail::crypto::mlkem768::keygen();           // receiving node
//   auto enc = keyrail::crypto::mlkem768::encaps(kp->ek);     // sending node: enc->c, enc->k
//   auto k = keyrail::crypto::mlkem768::decaps(kp->dk.bytes(), enc->c); // *k == enc->k
//
// keygen/encaps/decaps draw d, z and m from the OpenSSL DRBG and apply the input checks of
// FIPS 203 section 7; the *_internal forms take the seeds (Algorithms 16-18) and exist for
// known-answer tests. Decapsulation never fails on a well-formed but wrong ciphertext: it
// returns the implicit-rejection key J(z || c), in constant time.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "dataplane/crypto/secret.h"
#include "engine/result.h"

namespace keyrail::crypto {

// Which implementation runs. native is this folder's FIPS 203 code; openssl is EVP ML-KEM,
// compiled in only with OpenSSL >= 3.5 and -DKEYRAIL_MLKEM_OPENSSL=ON.
enum class mlkem_backend : std::uint8_t { native, openssl };

// The backends of this build; the first is the default of every call.
[[nodiscard]] std::span<const mlkem_backend> mlkem_backends() noexcept;
[[nodiscard]] mlkem_backend mlkem_default_backend() noexcept;

namespace detail {

// One ML-KEM parameter set (FIPS 203 Table 2), by its module rank k.
template <std::size_t K>
struct mlkem_set {
    static_assert(K == 2 || K == 3 || K == 4);
    static constexpr std::size_t k = K;
    static constexpr unsigned eta1 = K == 2 ? 3 : 2;
    static constexpr unsigned eta2 = 2;
    static constexpr unsigned du = K == 4 ? 11 : 10;
    static constexpr unsigned dv = K == 4 ? 5 : 4;
    static constexpr std::size_t encapsulation_key_bytes = 384 * K + 32;
    static constexpr std::size_t decapsulation_key_bytes = 768 * K + 96;
    static constexpr std::size_t ciphertext_bytes = 32 * (du * K + dv);
    static constexpr std::size_t shared_secret_bytes = 32;
    static constexpr std::size_t seed_bytes = 32;

    using encapsulation_key = std::array<std::uint8_t, encapsulation_key_bytes>;
    using decapsulation_key = secret_bytes<decapsulation_key_bytes>;
    using ciphertext = std::array<std::uint8_t, ciphertext_bytes>;
    using shared_secret = secret_bytes<shared_secret_bytes>;
    using seed = std::span<const std::uint8_t, seed_bytes>;

    struct key_pair {
        encapsulation_key ek;
        decapsulation_key dk;
    };
    struct encapsulation {
        ciphertext c;
        shared_secret k;
    };

    [[nodiscard]] static result<key_pair> keygen(mlkem_backend b) noexcept;
    [[nodiscard]] static result<encapsulation> encaps(std::span<const std::uint8_t> ek,
                                                      mlkem_backend b) noexcept;
    [[nodiscard]] static result<shared_secret> decaps(std::span<const std::uint8_t> dk,
                                                      std::span<const std::uint8_t> c,
                                                      mlkem_backend b) noexcept;
    [[nodiscard]] static result<key_pair> keygen_internal(seed d, seed z,
                                                          mlkem_backend b) noexcept;
    [[nodiscard]] static result<encapsulation>
    encaps_internal(std::span<const std::uint8_t> ek, seed m, mlkem_backend b) noexcept;
    [[nodiscard]] static result<shared_secret>
    decaps_internal(std::span<const std::uint8_t> dk, std::span<const std::uint8_t> c,
                    mlkem_backend b) noexcept;
    [[nodiscard]] static bool check_encapsulation_key(std::span<const std::uint8_t> ek) noexcept;
    [[nodiscard]] static bool check_decapsulation_key(std::span<const std::uint8_t> dk) noexcept;
};

extern template struct mlkem_set<2>;
extern template struct mlkem_set<3>;
extern template struct mlkem_set<4>;

} // namespace detail

// The same API for each parameter set: keyrail::crypto::mlkem768::keygen() and so on.
#define KEYRAIL_MLKEM_NAMESPACE(ns, rank)                                                      \
    namespace ns {                                                                             \
    using set = detail::mlkem_set<rank>;                                                       \
    inline constexpr std::size_t encapsulation_key_bytes = set::encapsulation_key_bytes;       \
    inline constexpr std::size_t decapsulation_key_bytes = set::decapsulation_key_bytes;       \
    inline constexpr std::size_t ciphertext_bytes = set::ciphertext_bytes;                     \
    inline constexpr std::size_t shared_secret_bytes = set::shared_secret_bytes;               \
    inline constexpr std::size_t seed_bytes = set::seed_bytes;                                 \
    using encapsulation_key = set::encapsulation_key;                                          \
    using decapsulation_key = set::decapsulation_key;                                          \
    using ciphertext = set::ciphertext;                                                        \
    using shared_secret = set::shared_secret;                                                  \
    using key_pair = set::key_pair;                                                            \
    using encapsulation = set::encapsulation;                                                  \
    /* Algorithm 19: fresh d and z from the DRBG. */                                           \
    [[nodiscard]] inline result<key_pair>                                                      \
    keygen(mlkem_backend b = mlkem_default_backend()) noexcept {                               \
        return set::keygen(b);                                                                 \
    }                                                                                          \
    /* Algorithm 20 with the 7.2 checks: errc::invalid_encapsulation_key on a bad ek. */       \
    [[nodiscard]] inline result<encapsulation>                                                 \
    encaps(std::span<const std::uint8_t> ek,                                                   \
           mlkem_backend b = mlkem_default_backend()) noexcept {                               \
        return set::encaps(ek, b);                                                             \
    }                                                                                          \
    /* Algorithm 21 with the 7.3 checks; implicit rejection for a wrong ciphertext. */         \
    [[nodiscard]] inline result<shared_secret>                                                 \
    decaps(std::span<const std::uint8_t> dk, std::span<const std::uint8_t> c,                  \
           mlkem_backend b = mlkem_default_backend()) noexcept {                               \
        return set::decaps(dk, c, b);                                                          \
    }                                                                                          \
    [[nodiscard]] inline result<key_pair>                                                      \
    keygen_internal(set::seed d, set::seed z,                                                  \
                    mlkem_backend b = mlkem_default_backend()) noexcept {                      \
        return set::keygen_internal(d, z, b);                                                  \
    }                                                                                          \
    [[nodiscard]] inline result<encapsulation>                                                 \
    encaps_internal(std::span<const std::uint8_t> ek, set::seed m,                             \
                    mlkem_backend b = mlkem_default_backend()) noexcept {                      \
        return set::encaps_internal(ek, m, b);                                                 \
    }                                                                                          \
    [[nodiscard]] inline result<shared_secret>                                                 \
    decaps_internal(std::span<const std::uint8_t> dk, std::span<const std::uint8_t> c,         \
                    mlkem_backend b = mlkem_default_backend()) noexcept {                      \
        return set::decaps_internal(dk, c, b);                                                 \
    }                                                                                          \
    /* FIPS 203 7.2: length and modulus check. */                                              \
    [[nodiscard]] inline bool check_encapsulation_key(std::span<const std::uint8_t> ek) noexcept \
    {                                                                                          \
        return set::check_encapsulation_key(ek);                                               \
    }                                                                                          \
    /* FIPS 203 7.3: length and hash check. */                                                 \
    [[nodiscard]] inline bool check_decapsulation_key(std::span<const std::uint8_t> dk) noexcept \
    {                                                                                          \
        return set::check_decapsulation_key(dk);                                               \
    }                                                                                          \
    }

KEYRAIL_MLKEM_NAMESPACE(mlkem512, 2)
KEYRAIL_MLKEM_NAMESPACE(mlkem768, 3)
KEYRAIL_MLKEM_NAMESPACE(mlkem1024, 4)

#undef KEYRAIL_MLKEM_NAMESPACE

} // namespace keyrail::crypto
