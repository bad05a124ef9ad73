#pragma once
// The optional OpenSSL EVP ML-KEM backend (OpenSSL >= 3.5, CMake -DKEYRAIL_MLKEM_OPENSSL=ON).
// Compiled out otherwise: the functions then return errc::backend_unavailable and
// mlkem_backends() lists only the native implementation. Included by mlkem.cc only.
#include <cstddef>
#include <cstdint>
#include <span>

#include <openssl/opensslv.h>

#include "dataplane/crypto/errc.h"
#include "dataplane/crypto/mlkem.h"

#if defined(KEYRAIL_MLKEM_OPENSSL) && OPENSSL_VERSION_NUMBER >= 0x30500000L
#define KEYRAIL_MLKEM_HAVE_OPENSSL 1
#else
#define KEYRAIL_MLKEM_HAVE_OPENSSL 0
#endif

namespace keyrail::crypto::detail {

#if KEYRAIL_MLKEM_HAVE_OPENSSL

template <std::size_t K>
[[nodiscard]] result<typename mlkem_set<K>::key_pair>
openssl_keygen(std::span<const std::uint8_t, 32> d, std::span<const std::uint8_t, 32> z) noexcept;
template <std::size_t K>
[[nodiscard]] result<typename mlkem_set<K>::encapsulation>
openssl_encaps(std::span<const std::uint8_t> ek, std::span<const std::uint8_t, 32> m) noexcept;
template <std::size_t K>
[[nodiscard]] result<typename mlkem_set<K>::shared_secret>
openssl_decaps(std::span<const std::uint8_t> dk, std::span<const std::uint8_t> c) noexcept;

#else

template <std::size_t K>
[[nodiscard]] result<typename mlkem_set<K>::key_pair>
openssl_keygen(std::span<const std::uint8_t, 32>, std::span<const std::uint8_t, 32>) noexcept {
    return fail(errc::backend_unavailable);
}
template <std::size_t K>
[[nodiscard]] result<typename mlkem_set<K>::encapsulation>
openssl_encaps(std::span<const std::uint8_t>, std::span<const std::uint8_t, 32>) noexcept {
    return fail(errc::backend_unavailable);
}
template <std::size_t K>
[[nodiscard]] result<typename mlkem_set<K>::shared_secret>
openssl_decaps(std::span<const std::uint8_t>, std::span<const std::uint8_t>) noexcept {
    return fail(errc::backend_unavailable);
}

#endif

} // namespace keyrail::crypto::detail
