#pragma once
// secret_bytes<N>: a fixed-size buffer of key material, wiped (OPENSSL_cleanse) whenever it
// is destroyed or overwritten, so copies handed back through result<T> leave no residue.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/secure.h"

namespace keyrail::crypto {

template <std::size_t N>
class secret_bytes {
public:
    static constexpr std::size_t size_bytes = N;

    secret_bytes() noexcept = default;
    secret_bytes(const secret_bytes& other) noexcept : _bytes(other._bytes) {}
    secret_bytes& operator=(const secret_bytes& other) noexcept {
        _bytes = other._bytes;
        return *this;
    }
    ~secret_bytes() { secure_wipe(_bytes.data(), N); }

    [[nodiscard]] std::span<std::uint8_t, N> bytes() noexcept { return _bytes; }
    [[nodiscard]] std::span<const std::uint8_t, N> bytes() const noexcept { return _bytes; }
    [[nodiscard]] std::uint8_t* data() noexcept { return _bytes.data(); }
    [[nodiscard]] const std::uint8_t* data() const noexcept { return _bytes.data(); }
    [[nodiscard]] static constexpr std::size_t size() noexcept { return N; }

    // Constant-time equality (CRYPTO_memcmp).
    [[nodiscard]] friend bool operator==(const secret_bytes& a, const secret_bytes& b) noexcept {
        return secure_equal(a._bytes.data(), b._bytes.data(), N);
    }

private:
    std::array<std::uint8_t, N> _bytes{};
};

} // namespace keyrail::crypto
