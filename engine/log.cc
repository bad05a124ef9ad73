#include "engine/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace keyrail::log {
namespace {

level initial_level() noexcept {
    const char* env = std::getenv("KEYRAIL_LOG");
    if (env == nullptr) {
        return level::info;
    }
    if (std::strcmp(env, "debug") == 0) {
        return level::debug;
    }
    if (std::strcmp(env, "warn") == 0) {
        return level::warn;
    }
    if (std::strcmp(env, "error") == 0) {
        return level::error;
    }
    return level::info;
}

// Relaxed: the level is a hint read on every log call; no data is published through it.
std::atomic<int> g_level{static_cast<int>(initial_level())};

const char* level_name(level l) noexcept {
    switch (l) {
    case level::debug:
        return "DEBUG";
    case level::info:
        return "INFO";
    case level::warn:
        return "WARN";
    case level::error:
        return "ERROR";
    }
    return "?";
}

} // namespace

void set_level(level l) noexcept { g_level.store(static_cast<int>(l), std::memory_order_relaxed); }

level current_level() noexcept {
    return static_cast<level>(g_level.load(std::memory_order_relaxed));
}

void write(level l, const char* module, const char* fmt, ...) noexcept {
    char line[1024];
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    tm utc{};
    gmtime_r(&ts.tv_sec, &utc);
    int used = std::snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
                             utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                             utc.tm_min, utc.tm_sec, ts.tv_nsec / 1000000, level_name(l), module);
    if (used < 0) {
        return;
    }
    auto offset = static_cast<std::size_t>(used);
    if (offset < sizeof line) {
        va_list args;
        va_start(args, fmt);
        std::vsnprintf(line + offset, sizeof line - offset, fmt, args);
        va_end(args);
    }
    // One fputs per line so lines from different threads do not interleave.
    std::size_t len = std::strlen(line);
    if (len + 1 < sizeof line) {
        line[len] = '\n';
        line[len + 1] = '\0';
    } else {
        line[sizeof line - 2] = '\n';
    }
    std::fputs(line, stderr);
}

} // namespace keyrail::log
