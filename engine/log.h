#pragma once
// Logging: one line per event to stderr, "<utc time> <level> <module>: <message>".
// Key material is never logged: pass key IDs, sequence numbers and counts, never key bytes.
#include <cstdarg>

namespace keyrail::log {

enum class level : int { debug = 0, info = 1, warn = 2, error = 3 };

// The minimum level printed; KEYRAIL_LOG=debug|info|warn|error at start-up sets it.
void set_level(level l) noexcept;
[[nodiscard]] level current_level() noexcept;

__attribute__((format(printf, 3, 4))) void write(level l, const char* module, const char* fmt,
                                                 ...) noexcept;

} // namespace keyrail::log

#define KEYRAIL_LOG(lvl, module, ...)                                                          \
    do {                                                                                       \
        if (::keyrail::log::level::lvl >= ::keyrail::log::current_level()) {                   \
            ::keyrail::log::write(::keyrail::log::level::lvl, module, __VA_ARGS__);            \
        }                                                                                      \
    } while (0)
