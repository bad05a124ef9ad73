// ML-KEM polynomial arithmetic, sampling and encoding (FIPS 203 sections 4.2, 4.3).
#include "dataplane/crypto/hash.h"
#include "dataplane/crypto/mlkem_internal.h"

#include "dataplane/crypto/errc.h"
#include "engine/assert.h"

namespace keyrail::crypto::detail {

void ntt(poly& f) noexcept {
    std::size_t i = 1;
    for (std::size_t len = 128; len >= 2; len /= 2) {
        for (std::size_t start = 0; start < n; start += 2 * len) {
            const std::uint32_t zeta = zetas_mont[i++];
            for (std::size_t j = start; j < start + len; ++j) {
                const std::uint32_t t = mont_mul(zeta, f.c[j + len]);
                f.c[j + len] = reduce_once(f.c[j] + q - t);
                f.c[j] = reduce_once(f.c[j] + t);
            }
        }
    }
}

void ntt_inverse(poly& f) noexcept {
    std::size_t i = 127;
    for (std::size_t len = 2; len <= 128; len *= 2) {
        for (std::size_t start = 0; start < n; start += 2 * len) {
            const std::uint32_t zeta = zetas_mont[i--];
            for (std::size_t j = start; j < start + len; ++j) {
                const std::uint32_t t = f.c[j];
                f.c[j] = reduce_once(t + f.c[j + len]);
                f.c[j + len] = mont_mul(zeta, reduce_once(f.c[j + len] + q - t));
            }
        }
    }
    // 3303 = 128^-1 mod q.
    constexpr std::uint32_t inv128 = to_mont(3303);
    for (auto& x : f.c) {
        x = mont_mul(x, inv128);
    }
}

void multiply_ntt_acc(std::array<std::uint32_t, n>& acc, const poly& f, const poly& g) noexcept {
    // Each term stays below 2 q^2 < 2^25, so four accumulated products fit in 32 bits.
    for (std::size_t i = 0; i < 128; ++i) {
        const std::uint32_t a0 = f.c[2 * i];
        const std::uint32_t a1 = f.c[2 * i + 1];
        const std::uint32_t b0 = g.c[2 * i];
        const std::uint32_t b1 = g.c[2 * i + 1];
        acc[2 * i] += a0 * b0 + std::uint32_t{mul_q(a1, b1)} * gammas[i];
        acc[2 * i + 1] += a0 * b1 + a1 * b0;
    }
}

void reduce_acc(poly& out, const std::array<std::uint32_t, n>& acc) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        out.c[i] = reduce(acc[i]);
    }
}

void byte_encode(std::span<std::uint8_t> out, const poly& f, unsigned d) noexcept {
    KEYRAIL_DEBUG_ASSERT(out.size() == 32 * d, "out %zu bytes, d %u", out.size(), d);
    std::uint64_t bits = 0;
    unsigned bit_count = 0;
    std::size_t o = 0;
    for (std::size_t i = 0; i < n; ++i) {
        bits |= std::uint64_t{f.c[i]} << bit_count;
        bit_count += d;
        while (bit_count >= 8) {
            out[o++] = static_cast<std::uint8_t>(bits);
            bits >>= 8;
            bit_count -= 8;
        }
    }
}

void byte_decode(poly& f, std::span<const std::uint8_t> in, unsigned d) noexcept {
    KEYRAIL_DEBUG_ASSERT(in.size() == 32 * d, "in %zu bytes, d %u", in.size(), d);
    const std::uint64_t mask = (std::uint64_t{1} << d) - 1;
    std::uint64_t bits = 0;
    unsigned bit_count = 0;
    std::size_t o = 0;
    for (std::size_t i = 0; i < n; ++i) {
        while (bit_count < d) {
            bits |= std::uint64_t{in[o++]} << bit_count;
            bit_count += 8;
        }
        const auto v = static_cast<std::uint32_t>(bits & mask);
        bits >>= d;
        bit_count -= d;
        // Values below 2^12 < 2q, so one masked subtraction reduces them mod q.
        f.c[i] = d == 12 ? reduce_once(v) : static_cast<std::uint16_t>(v);
    }
}

bool coefficients_reduced(std::span<const std::uint8_t> in) noexcept {
    std::uint32_t over = 0;
    for (std::size_t o = 0; o + 3 <= in.size(); o += 3) {
        const std::uint32_t a = in[o] | ((std::uint32_t{in[o + 1]} & 0x0f) << 8);
        const std::uint32_t b = (std::uint32_t{in[o + 1]} >> 4) | (std::uint32_t{in[o + 2]} << 4);
        over |= (q - 1 - a) | (q - 1 - b); // top bit set when a or b >= q
    }
    return (over >> 31) == 0;
}

void sample_cbd(poly& f, std::span<const std::uint8_t> bytes, unsigned eta) noexcept {
    KEYRAIL_DEBUG_ASSERT(bytes.size() == 64 * eta, "%zu bytes, eta %u", bytes.size(), eta);
    // Coefficient i uses bits [2 eta i, 2 eta (i + 1)): x = the sum of the first eta bits,
    // y = the sum of the next eta. Summed bit by bit: std::popcount may become a table lookup.
    std::uint64_t bits = 0;
    unsigned bit_count = 0;
    std::size_t o = 0;
    const unsigned width = 2 * eta;
    for (std::size_t i = 0; i < n; ++i) {
        while (bit_count < width) {
            bits |= std::uint64_t{bytes[o++]} << bit_count;
            bit_count += 8;
        }
        std::uint32_t x = 0;
        std::uint32_t y = 0;
        for (unsigned b = 0; b < eta; ++b) {
            x += static_cast<std::uint32_t>((bits >> b) & 1u);
            y += static_cast<std::uint32_t>((bits >> (eta + b)) & 1u);
        }
        bits >>= width;
        bit_count -= width;
        f.c[i] = reduce_once(x + q - y);
    }
}

result<void> sample_ntt(poly& out, std::span<const std::uint8_t, 32> rho, std::uint8_t j,
                        std::uint8_t i, std::size_t initial_bytes) noexcept {
    KEYRAIL_ASSERT(initial_bytes % 3 == 0, "initial_bytes %zu", initial_bytes);
    KEYRAIL_ASSERT(initial_bytes <= sample_ntt_max_bytes, "initial_bytes %zu", initial_bytes);
    std::array<std::uint8_t, sample_ntt_max_bytes> buf;
    const std::uint8_t ji[2] = {j, i};
    std::size_t count = 0;
    std::size_t pos = 0;
    for (std::size_t len = initial_bytes; len <= sample_ntt_max_bytes; len *= 2) {
        // A longer squeeze of the same input repeats the shorter one as its prefix, so parsing
        // resumes at pos with exactly the bytes an incremental XOF would have produced.
        if (!hash(hash_kind::shake128, {rho, ji}, std::span(buf.data(), len))) {
            return fail(errc::hash_failure);
        }
        for (; pos + 3 <= len && count < n; pos += 3) {
            const std::uint32_t d1 = buf[pos] | ((std::uint32_t{buf[pos + 1]} & 0x0f) << 8);
            const std::uint32_t d2 = (std::uint32_t{buf[pos + 1]} >> 4) |
                                     (std::uint32_t{buf[pos + 2]} << 4);
            if (d1 < q) {
                out.c[count++] = static_cast<std::uint16_t>(d1);
            }
            if (d2 < q && count < n) {
                out.c[count++] = static_cast<std::uint16_t>(d2);
            }
        }
        if (count == n) {
            return {};
        }
    }
    return fail(errc::sampling_exhausted);
}

} // namespace keyrail::crypto::detail
