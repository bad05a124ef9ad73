#pragma once
// Machine topology (hwloc) and thread pinning. Runs at start-up, before shards exist.
#include <cstddef>
#include <vector>

#include "engine/result.h"

namespace keyrail::engine {

// One physical core: the OS indexes of its hardware threads (PUs) that this process may use.
struct core {
    std::vector<unsigned> cpus;
};

// The cores this process may run on, in hwloc's logical order. Fails (errc::topology) when
// hwloc cannot load the topology or finds no usable core.
[[nodiscard]] result<std::vector<core>> discover_cores() noexcept;

// Pins the calling thread to the hardware threads of c.
[[nodiscard]] result<void> pin_current_thread(const core& c) noexcept;

} // namespace keyrail::engine
