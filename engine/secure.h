#pragma once
// Wiping and comparing secrets. Generic byte helpers; engine/ knows nothing about keys.
#include <cstddef>
#include <span>

#include <openssl/crypto.h>

namespace keyrail {

// Wipes bytes so the compiler cannot elide it (OPENSSL_cleanse).
inline void secure_wipe(void* p, std::size_t n) noexcept { OPENSSL_cleanse(p, n); }
inline void secure_wipe(std::span<std::byte> s) noexcept { OPENSSL_cleanse(s.data(), s.size()); }

// Constant-time equality of two equal-length byte ranges (CRYPTO_memcmp).
[[nodiscard]] inline bool secure_equal(const void* a, const void* b, std::size_t n) noexcept {
    return CRYPTO_memcmp(a, b, n) == 0;
}

} // namespace keyrail
