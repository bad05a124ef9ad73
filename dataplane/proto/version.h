#pragma once
// Protocol version and capabilities. A frame carries the version it is encoded in; Hello
// carries the range each side speaks and a capabilities bitmask. Both sides then use the
// highest common version and the intersection of capabilities.
#include <cstdint>

namespace keyrail::proto {

inline constexpr std::uint16_t protocol_version = 1;     // what this build speaks best
inline constexpr std::uint16_t protocol_version_min = 1; // the oldest it still decodes

// Capability bits. Unknown bits from a newer peer are ignored, never an error.
enum class capability : std::uint64_t {
    reserve = 1u << 0,         // Reserve / ReserveAck / Void on owned shares
    watermark = 1u << 1,       // StreamWatermark convergence
    relay = 1u << 2,           // Relay / RelayAck (later)
    lsa = 1u << 3,             // link-state flooding (later)
    kem = 1u << 4,             // KemInit / KemReply for pqc and hybrid hops (later)
    rebalance = 1u << 5,       // ShareGrant, StreamWatermark.serving_blocks
};

[[nodiscard]] constexpr std::uint64_t operator|(capability a, capability b) noexcept {
    return static_cast<std::uint64_t>(a) | static_cast<std::uint64_t>(b);
}
[[nodiscard]] constexpr bool has(std::uint64_t caps, capability c) noexcept {
    return (caps & static_cast<std::uint64_t>(c)) != 0;
}

// What version 1 of this build offers.
inline constexpr std::uint64_t capabilities_v1 =
    capability::reserve | capability::watermark | static_cast<std::uint64_t>(capability::rebalance);

// The version both sides speak, or 0 if their ranges do not meet.
[[nodiscard]] constexpr std::uint16_t negotiate_version(std::uint16_t peer_min,
                                                        std::uint16_t peer_max) noexcept {
    const std::uint16_t hi = peer_max < protocol_version ? peer_max : protocol_version;
    const std::uint16_t lo = peer_min > protocol_version_min ? peer_min : protocol_version_min;
    return hi >= lo ? hi : std::uint16_t{0};
}

} // namespace keyrail::proto
