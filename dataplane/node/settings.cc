#include "dataplane/node/settings.h"

namespace keyrail::dataplane::node {

std::optional<std::size_t> settings::find_sae(std::string_view id) const noexcept {
    // A linear scan: a node has a handful of SAEs, and this runs at connection open and once
    // per named SAE of a request, never per key.
    for (std::size_t i = 0; i < saes.size(); ++i) {
        if (saes[i].id == id) {
            return i;
        }
    }
    return std::nullopt;
}

} // namespace keyrail::dataplane::node
