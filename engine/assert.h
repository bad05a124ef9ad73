#pragma once
// KEYRAIL_ASSERT is on in every build and prints the values; KEYRAIL_DEBUG_ASSERT is for
// per-item hot-loop checks and is on in debug and sanitizer builds. Bugs assert and crash;
// nothing that came from the network, disk or a client is ever asserted (that is a result).
#include <cstdio>
#include <cstdlib>

namespace keyrail::detail {

[[noreturn]] __attribute__((format(printf, 4, 5))) inline void
assert_fail(const char* expr, const char* file, int line, const char* fmt, ...) noexcept {
    std::fprintf(stderr, "keyrail: assertion failed: %s at %s:%d: ", expr, file, line);
    __builtin_va_list args;
    __builtin_va_start(args, fmt);
    std::vfprintf(stderr, fmt, args);
    __builtin_va_end(args);
    std::fputc('\n', stderr);
    std::fflush(stderr);
    std::abort();
}

} // namespace keyrail::detail

#define KEYRAIL_ASSERT(cond, ...)                                                              \
    do {                                                                                       \
        if (__builtin_expect(!(cond), 0)) {                                                    \
            ::keyrail::detail::assert_fail(#cond, __FILE__, __LINE__, __VA_ARGS__);            \
        }                                                                                      \
    } while (0)

#if defined(KEYRAIL_DEBUG_CHECKS)
#define KEYRAIL_DEBUG_ASSERT(cond, ...) KEYRAIL_ASSERT(cond, __VA_ARGS__)
#else
#define KEYRAIL_DEBUG_ASSERT(cond, ...)                                                        \
    do {                                                                                       \
        (void)sizeof(cond);                                                                    \
    } while (0)
#endif
