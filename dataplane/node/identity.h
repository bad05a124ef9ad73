#pragma once
// The calling SAE's identity, read only from its verified client certificate: the URI SAN
// `<prefix><SAE ID>` or the subject CN, as the configuration says. A certificate that yields
// no SAE homed on this node is refused with a reason the connection logs once.
// Lives on: any thread; touches only its arguments. Called once per connection (on_open).
#include <array>
#include <cstddef>

#include "dataplane/node/settings.h"
#include "engine/tls.h"

namespace keyrail::dataplane::node {

struct identity_outcome {
    bool ok = false;
    std::size_t sae_index = 0; // into settings::saes, when ok
    const char* reason = "";   // when !ok: a static sentence
    // The offending value, made printable (control characters become '?') and truncated, so
    // a hostile certificate cannot forge log lines.
    std::array<char, 80> detail{};
};

[[nodiscard]] identity_outcome derive_sae(const settings& cfg,
                                          const engine::peer_identity& peer) noexcept;

} // namespace keyrail::dataplane::node
