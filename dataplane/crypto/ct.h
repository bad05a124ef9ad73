#pragma once
// Constant-time helpers and the declassification hook of the valgrind constant-time test.
//
// The test build (tests/unit/mlkem_ct_probe.cc, compiled with KEYRAIL_CT_VALGRIND) marks every
// secret input undefined for memcheck, which then reports any branch or memory index that
// depends on it. Values that FIPS 203 makes public although they are computed from secrets
// (rho from G(d || k), the verdict of the section 7.3 hash check on the public half of dk)
// are passed through declassify(), which tells memcheck they are defined. In every other
// build declassify() is empty.
#include <cstddef>
#include <cstdint>

#if defined(KEYRAIL_CT_VALGRIND)
#include <valgrind/memcheck.h>
#endif

namespace keyrail::crypto::detail {

inline void declassify(const void* p, std::size_t n) noexcept {
#if defined(KEYRAIL_CT_VALGRIND)
    (void)VALGRIND_MAKE_MEM_DEFINED(p, n);
#else
    (void)p;
    (void)n;
#endif
}

// All ones when a != b over the full length, else zero; reads every byte (no early exit,
// so a zero byte cannot end the comparison as with strcmp).
[[nodiscard]] inline std::uint8_t ct_differ_mask(const std::uint8_t* a, const std::uint8_t* b,
                                                 std::size_t n) noexcept {
    std::uint32_t acc = 0;
    for (std::size_t i = 0; i < n; ++i) {
        acc |= static_cast<std::uint32_t>(a[i] ^ b[i]);
    }
    // acc is in [0, 255]; (0 - acc) has its top bit set exactly when acc != 0.
    return static_cast<std::uint8_t>(0u - ((0u - acc) >> 31));
}

// out = mask ? b : a, byte by byte, without a branch on mask.
inline void ct_select(std::uint8_t* out, const std::uint8_t* a, const std::uint8_t* b,
                      std::size_t n, std::uint8_t mask) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        out[i] = static_cast<std::uint8_t>(a[i] ^ (mask & (a[i] ^ b[i])));
    }
}

} // namespace keyrail::crypto::detail
