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

std::optional<std::size_t> settings::find_link_to(std::string_view node) const noexcept {
    for (std::size_t i = 0; i < links.size(); ++i) {
        if (links[i].peer_node == node) {
            return i;
        }
    }
    return std::nullopt;
}

} // namespace keyrail::dataplane::node
