#pragma once
// Forward declarations of engine types.
#include <cstddef>

namespace keyrail::engine {

template <class T, std::size_t capacity, template <class> class Atomic>
class spsc_ring;

} // namespace keyrail::engine
