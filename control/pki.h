#pragma once
// Certificates for keyrail: a CA, node (server/peer) certificates and SAE (client)
// certificates carrying the SAE ID as a SAN URI (default prefix urn:keyrail:sae:).
// Used by `keyrail cert` and by tests. Keys are ECDSA P-256. Runs at start-up or in tools,
// never on a shard.
#include <filesystem>
#include <string>
#include <vector>

#include "engine/result.h"

namespace keyrail::control::pki {

enum class cert_role { ca, server, client, server_and_client };

struct cert_spec {
    std::string common_name;
    std::vector<std::string> san_uris; // e.g. "urn:keyrail:sae:alice"
    std::vector<std::string> san_dns;  // e.g. "localhost"
    std::vector<std::string> san_ips;  // e.g. "127.0.0.1"
    cert_role role = cert_role::server_and_client;
    long valid_from_offset_s = -3600;  // relative to now; negative = in the past
    long valid_for_s = 825L * 24 * 3600;
};

// PEM text of a certificate and its private key. The key is secret: wipe on destruction.
struct credential {
    std::string cert_pem;
    std::string key_pem;
    credential() = default;
    credential(const credential&) = default;
    credential(credential&&) noexcept = default;
    credential& operator=(const credential&) = default;
    credential& operator=(credential&&) noexcept = default;
    ~credential();
};

// A self-signed CA certificate.
[[nodiscard]] result<credential> make_ca(const std::string& common_name,
                                         long valid_for_s = 3650L * 24 * 3600);

// A certificate signed by ca for spec (fresh P-256 key). An expired certificate for tests is
// spec.valid_from_offset_s = -2 days, spec.valid_for_s = 1 day.
[[nodiscard]] result<credential> issue(const credential& ca, const cert_spec& spec);

// Writes cert and key PEM files (key mode 0600). Creates parent directories.
[[nodiscard]] result<void> write_files(const credential& cred,
                                       const std::filesystem::path& cert_path,
                                       const std::filesystem::path& key_path);

// Reads a credential back from PEM files.
[[nodiscard]] result<credential> read_files(const std::filesystem::path& cert_path,
                                            const std::filesystem::path& key_path);

} // namespace keyrail::control::pki
