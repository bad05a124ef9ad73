#pragma once
// Limits shared across the engine. Relations between them are static_asserted here.
#include <cstddef>

namespace keyrail::engine::limits {

inline constexpr std::size_t shards_max = 64;
inline constexpr std::size_t cross_shard_ring_capacity = 1024;
inline constexpr std::size_t cross_shard_batch_max = 256;

// A connection slot index travels in 24 bits of an io_uring user_data word (engine/shard.cc).
inline constexpr std::size_t connections_per_shard_max = (std::size_t{1} << 24) - 1;
// A timer slot index travels in the same 24 bits.
inline constexpr std::size_t timers_per_shard_max = (std::size_t{1} << 24) - 1;
// The TLS BIO pair must hold one full record (16 KiB plaintext plus overhead) per direction.
inline constexpr std::size_t tls_pair_bytes_min = 17 * 1024;

static_assert(cross_shard_ring_capacity >= cross_shard_batch_max,
              "a ring must hold the largest batch");

} // namespace keyrail::engine::limits
