#include "dataplane/node/identity.h"

#include <string_view>

namespace keyrail::dataplane::node {
namespace {

void set_detail(identity_outcome& o, std::string_view value) noexcept {
    const std::size_t room = o.detail.size() - 1;
    std::size_t n = 0;
    for (; n < value.size() && n < room; ++n) {
        const auto c = static_cast<unsigned char>(value[n]);
        o.detail[n] = (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
    }
    o.detail[n] = '\0';
}

identity_outcome refuse(const char* reason, std::string_view value) noexcept {
    identity_outcome o;
    o.reason = reason;
    set_detail(o, value);
    return o;
}

identity_outcome resolve(const settings& cfg, std::string_view id) noexcept {
    if (id.empty()) {
        return refuse("empty SAE ID", id);
    }
    const auto index = cfg.find_sae(id);
    if (!index) {
        return refuse("SAE ID not configured", id);
    }
    if (cfg.saes[*index].home != sae_home::local) {
        return refuse("SAE is homed on another node", id);
    }
    identity_outcome o;
    o.ok = true;
    o.sae_index = *index;
    set_detail(o, id);
    return o;
}

} // namespace

identity_outcome derive_sae(const settings& cfg, const engine::peer_identity& peer) noexcept {
    if (cfg.identity == identity_mode::cn) {
        if (peer.subject_cn.empty()) {
            return refuse("certificate subject has no CN", "");
        }
        return resolve(cfg, peer.subject_cn);
    }
    const std::string_view prefix = cfg.san_uri_prefix;
    const std::string* found = nullptr;
    for (const std::string& uri : peer.san_uris) {
        if (uri.size() >= prefix.size() && std::string_view(uri).substr(0, prefix.size()) == prefix) {
            if (found != nullptr) {
                // Two identities in one certificate: refuse rather than guess.
                return refuse("several URI SANs carry the SAE prefix", uri);
            }
            found = &uri;
        }
    }
    if (found == nullptr) {
        return refuse("no URI SAN with the SAE prefix", prefix);
    }
    return resolve(cfg, std::string_view(*found).substr(prefix.size()));
}

} // namespace keyrail::dataplane::node
