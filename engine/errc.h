#pragma once
// Errors of the engine runtime (topology, sockets, TLS set-up, cross-shard rings).
// System call failures travel as std::system_category codes; these are the rest.
#include <system_error>

namespace keyrail::engine {

enum class errc : int {
    ring_full = 1,          // the target shard's inbound ring is full: backpressure
    bad_shard = 2,          // a shard index outside the server
    topology = 3,           // hwloc could not describe the machine
    tls_config = 4,         // certificate, key or CA file could not be loaded
    bad_config = 5,         // a server_config field is out of range
    already_running = 6,    // run() called twice
    timer_table_full = 7,   // every timer slot of the shard is armed: backpressure
    no_such_connection = 8, // a stale connection handle, or the connection is closing
    output_full = 9,        // the connection's output buffer has no room: backpressure
    not_connected = 10,     // an outbound connection is not (yet) established
};

[[nodiscard]] const std::error_category& engine_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), engine_category()};
}

} // namespace keyrail::engine

template <>
struct std::is_error_code_enum<keyrail::engine::errc> : std::true_type {};
