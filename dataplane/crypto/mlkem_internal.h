#pragma once
// ML-KEM internals (FIPS 203 sections 4.2 and 4.3): arithmetic mod q, NTT, sampling and
// byte encoding. Exposed for the unit tests; the API is dataplane/crypto/mlkem.h.
// Every function here is constant time in its coefficient data, except sample_ntt, whose
// input (rho) is public. Coefficients are kept fully reduced, in [0, q).
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/result.h"

namespace keyrail::crypto::detail {

inline constexpr std::uint32_t q = 3329;
inline constexpr std::size_t n = 256;

struct poly {
    std::array<std::uint16_t, n> c;
};

// r < 2q -> r mod q, without a branch: the subtraction wraps when r < q and its top bit
// selects whether q is added back.
[[nodiscard]] constexpr std::uint16_t reduce_once(std::uint32_t r) noexcept {
    const std::uint32_t s = r - q;
    const std::uint32_t mask = 0u - (s >> 31);
    return static_cast<std::uint16_t>(s + (q & mask));
}

// floor(x / q) for every 32-bit x, by Barrett multiplication: m = floor(2^38 / q) makes the
// estimate t at most one too small, which the masked correction fixes. No divide instruction,
// whose latency can depend on its operands.
[[nodiscard]] constexpr std::uint32_t div_q(std::uint32_t x) noexcept {
    constexpr std::uint64_t m = (std::uint64_t{1} << 38) / q;
    std::uint32_t t = static_cast<std::uint32_t>((std::uint64_t{x} * m) >> 38);
    const std::uint32_t r = x - t * q; // in [0, 2q)
    const std::uint32_t s = r - q;
    t += 1u - (s >> 31);
    return t;
}

// x mod q for every 32-bit x.
[[nodiscard]] constexpr std::uint16_t reduce(std::uint32_t x) noexcept {
    return static_cast<std::uint16_t>(x - div_q(x) * q);
}

[[nodiscard]] constexpr std::uint16_t mul_q(std::uint32_t a, std::uint32_t b) noexcept {
    return reduce(a * b);
}

// Compress_d (FIPS 203 (4.7)): round(2^d x / q) mod 2^d; q is odd, so no ties.
[[nodiscard]] constexpr std::uint16_t compress(std::uint32_t x, unsigned d) noexcept {
    return static_cast<std::uint16_t>(div_q((x << d) + (q - 1) / 2) & ((1u << d) - 1));
}

// Decompress_d (FIPS 203 (4.8)): round(q y / 2^d).
[[nodiscard]] constexpr std::uint16_t decompress(std::uint32_t y, unsigned d) noexcept {
    return static_cast<std::uint16_t>((y * q + (1u << (d - 1))) >> d);
}

// a b 2^-16 mod q for a b < q 2^16, in 32-bit operations only so the NTT loops vectorise
// (Montgomery reduction with R = 2^16; 3327 = -q^-1 mod 2^16). Callers pass one operand
// premultiplied by 2^16 (see to_mont).
[[nodiscard]] constexpr std::uint16_t mont_mul(std::uint32_t a, std::uint32_t b) noexcept {
    const std::uint32_t x = a * b;
    const std::uint32_t t = (x * 3327u) & 0xffffu;
    return reduce_once((x + t * q) >> 16);
}

[[nodiscard]] constexpr std::uint16_t to_mont(std::uint32_t a) noexcept {
    return reduce(a << 16);
}

// The 7-bit bit reversal of FIPS 203 section 4.3.
[[nodiscard]] constexpr unsigned bit_rev7(unsigned i) noexcept {
    unsigned r = 0;
    for (unsigned b = 0; b < 7; ++b) {
        r |= ((i >> b) & 1u) << (6 - b);
    }
    return r;
}

[[nodiscard]] constexpr std::uint16_t pow_q(std::uint32_t base, unsigned e) noexcept {
    std::uint32_t r = 1;
    for (unsigned i = 0; i < e; ++i) {
        r = mul_q(r, base);
    }
    return static_cast<std::uint16_t>(r);
}

// zeta^BitRev7(i) for the NTT and zeta^(2 BitRev7(i) + 1) for BaseCaseMultiply, zeta = 17.
inline constexpr auto zetas = [] {
    std::array<std::uint16_t, 128> t{};
    for (unsigned i = 0; i < 128; ++i) {
        t[i] = pow_q(17, bit_rev7(i));
    }
    return t;
}();
inline constexpr auto gammas = [] {
    std::array<std::uint16_t, 128> t{};
    for (unsigned i = 0; i < 128; ++i) {
        t[i] = pow_q(17, 2 * bit_rev7(i) + 1);
    }
    return t;
}();

// The NTT twiddles in Montgomery form, for mont_mul.
inline constexpr auto zetas_mont = [] {
    std::array<std::uint16_t, 128> t{};
    for (unsigned i = 0; i < 128; ++i) {
        t[i] = to_mont(zetas[i]);
    }
    return t;
}();

void ntt(poly& f) noexcept;         // Algorithm 9
void ntt_inverse(poly& f) noexcept; // Algorithm 10
// acc += f * g in the NTT domain (Algorithms 11, 12), unreduced; reduce_acc finishes it.
void multiply_ntt_acc(std::array<std::uint32_t, n>& acc, const poly& f, const poly& g) noexcept;
void reduce_acc(poly& out, const std::array<std::uint32_t, n>& acc) noexcept;

// ByteEncode_d / ByteDecode_d (Algorithms 5, 6); 32 d bytes. Decoding with d = 12 reduces
// mod q, as FIPS 203 specifies.
void byte_encode(std::span<std::uint8_t> out, const poly& f, unsigned d) noexcept;
void byte_decode(poly& f, std::span<const std::uint8_t> in, unsigned d) noexcept;

// True when every 12-bit value in in (a multiple of 384 bytes) is < q: the modulus check of
// FIPS 203 7.2, equivalent to ByteEncode12(ByteDecode12(in)) == in. Public data only.
[[nodiscard]] bool coefficients_reduced(std::span<const std::uint8_t> in) noexcept;

// SamplePolyCBD_eta (Algorithm 8) from 64 eta bytes.
void sample_cbd(poly& f, std::span<const std::uint8_t> bytes, unsigned eta) noexcept;

// SampleNTT (Algorithm 7) on SHAKE128(rho || j || i). OpenSSL 3.0 squeezes a SHAKE context
// only once, so it squeezes initial_bytes and, if rejection sampling runs out, redoes the XOF
// with twice the length (the prefix is the same) and continues where it stopped.
inline constexpr std::size_t xof_block_bytes = 168;
inline constexpr std::size_t sample_ntt_default_bytes = 4 * xof_block_bytes;
inline constexpr std::size_t sample_ntt_max_bytes = 32 * xof_block_bytes;
[[nodiscard]] result<void> sample_ntt(poly& out, std::span<const std::uint8_t, 32> rho,
                                      std::uint8_t j, std::uint8_t i,
                                      std::size_t initial_bytes =
                                          sample_ntt_default_bytes) noexcept;

} // namespace keyrail::crypto::detail
