#include "dataplane/etsi014/sae_id.h"

namespace keyrail::dataplane::etsi014 {

std::string_view check_sae_id(std::string_view id) noexcept {
    if (id.empty()) {
        return "SAE ID shall not be empty";
    }
    if (id.size() > sae_id_bytes_max) {
        return "SAE ID too long (at most 128 bytes)";
    }
    bool non_ascii = false;
    bool bad_char = false;
    for (char ch : id) {
        const auto c = static_cast<unsigned char>(ch);
        if (c >= 0x80) {
            non_ascii = true;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_' || c == '.' || c == ':' || c == '@')) {
            bad_char = true;
        }
    }
    if (non_ascii) {
        return "SAE ID shall be ASCII: unicode SAE IDs are not supported";
    }
    if (bad_char) {
        return "SAE ID may contain only letters, digits and - _ . : @";
    }
    if (id.find("..") != std::string_view::npos || id == ".") {
        return "SAE ID shall not be '.' or contain '..'";
    }
    return {};
}

} // namespace keyrail::dataplane::etsi014
