#pragma once
// Limits shared across the engine. Relations between them are static_asserted here.
#include <cstddef>

namespace keyrail::engine::limits {

inline constexpr std::size_t shards_max = 64;
inline constexpr std::size_t cross_shard_ring_capacity = 1024;
inline constexpr std::size_t cross_shard_batch_max = 256;

static_assert(cross_shard_ring_capacity >= cross_shard_batch_max,
              "a ring must hold the largest batch");

} // namespace keyrail::engine::limits
