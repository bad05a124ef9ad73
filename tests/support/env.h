#pragma once
// Test knobs from the environment: KEYRAIL_SEED (printed so a run replays),
// KEYRAIL_STRESS_ITERATIONS.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace keyrail::test {

inline std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
        return fallback;
    }
    return std::strtoull(v, nullptr, 10);
}

// The run's seed: KEYRAIL_SEED if set, else random; printed either way.
inline std::uint64_t seed(const char* what) {
    std::random_device rd;
    const std::uint64_t fallback = (std::uint64_t{rd()} << 32) | rd();
    const std::uint64_t s = env_u64("KEYRAIL_SEED", fallback);
    std::printf("%s: KEYRAIL_SEED=%llu\n", what, static_cast<unsigned long long>(s));
    std::fflush(stdout);
    return s;
}

} // namespace keyrail::test
