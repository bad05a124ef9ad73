#pragma once
// SAE ID policy. IDs appear in URL paths, certificates, configs and logs, so we accept a
// conservative ASCII set: letters, digits and - _ . : @, 1 to 128 bytes, not "." or ".." and
// no ".." inside. Unicode SAE IDs are refused with a clear message: look-alike characters
// would let two IDs print the same in logs and certificates, and no deployment we know needs
// them. Lives on: any thread.
#include <cstddef>
#include <string_view>

namespace keyrail::dataplane::etsi014 {

inline constexpr std::size_t sae_id_bytes_max = 128;

// Empty view if id is acceptable, else a static message for a 400 Error.
[[nodiscard]] std::string_view check_sae_id(std::string_view id) noexcept;

} // namespace keyrail::dataplane::etsi014
