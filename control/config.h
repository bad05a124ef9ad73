#pragma once
// The node configuration: one YAML file per node (schema and a full example in
// control/README.md). Parsed once at start-up or by `keyrail config check`, then frozen into
// the immutable snapshot the shards share. Lives on: the start-up thread; read-only after.
//
// Parsing is strict: unknown keys, wrong types, out-of-range values, malformed ids and
// dangling references are errors. Every error names the file, the line and column of the
// offending YAML node and the dotted path of the setting:
//     node.yaml:12:19: limits.max_key_size: must be a multiple of 8 and <= 65536, got 65537
// Exceptions are the error path here (STYLE.md: config parsing), caught in main.
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "engine/result.h"

namespace keyrail::control {

// A listening or peer address. address is an IP literal for listeners and an IP literal or
// host name for peers; port 0 (listeners only) asks the kernel for an ephemeral port.
struct endpoint {
    std::string address;
    std::uint16_t port = 0;
};

struct node_config {
    std::string id;     // this node's KME ID, unique in the network
    endpoint sae_api;   // ETSI GS QKD 014 REST API for SAEs (mTLS, sae_ca)
    endpoint peer_api;  // peer protocol between nodes (mTLS, peer_ca)
    endpoint admin_api; // admin API and metrics (mTLS, admin_ca)
};

// Paths are absolute after loading (relative ones are resolved against the config file's
// directory).
struct tls_config {
    std::filesystem::path cert;     // this node's certificate (server and client roles)
    std::filesystem::path key;      // its private key
    std::filesystem::path sae_ca;   // CA that issues SAE client certificates
    std::filesystem::path peer_ca;  // CA that issues other nodes' certificates
    std::filesystem::path admin_ca; // CA for admin clients; defaults to peer_ca
    int verify_depth = 2;           // longest accepted chain below the trust anchor
};

// How an SAE's ID is read from its client certificate.
enum class sae_identity_mode { san_uri, cn };

struct sae_identity_config {
    sae_identity_mode mode = sae_identity_mode::san_uri;
    std::string san_uri_prefix = "urn:keyrail:sae:"; // mode san_uri: the URI is prefix + id
};

struct sae_config {
    std::string id;        // the SAE ID of ETSI 014 (URL-safe: [A-Za-z0-9._-], <= 64)
    std::string home_node; // the node whose SAE API this SAE calls
};

// process: survives a process crash (data in the page cache). power: survives power loss
// (fdatasync on every commit).
enum class durability { process, power };

struct store_config {
    std::filesystem::path dir;
    std::filesystem::path master_key_file; // exactly one of master_key_file, master_key_env
    std::string master_key_env;
    std::uint32_t block_bits = 256; // the fixed size of one key block
    durability durability_mode = durability::power;
    std::uint64_t capacity_blocks = 1u << 20; // per stream
    // Keys reserved by enc_keys and not yet fetched, per stream (about 200 bytes each in
    // memory). When full, enc_keys answers 503 until keys are fetched or expire
    // (limits.key_expiry_s).
    std::uint32_t reservations_max = 1u << 14;
    // A stream's journal is compacted into a snapshot once it passes this many MiB (and four
    // times the snapshot); 0: never (the journal then grows with every key).
    std::uint32_t journal_compact_mb = 64;
};

enum class link_kind { qkd }; // pqc and hybrid come later
enum class driver_kind { sim };

// The simulated QKD device (drivers/sim). Blocks arrive in bursts of burst_blocks at the
// mean rate rate_bps, so a burst comes every burst_blocks * block_bits / rate_bps seconds,
// each displaced by a seeded jitter of up to jitter_percent of that interval.
struct sim_driver_config {
    std::filesystem::path secret_file; // exactly one of secret_file, secret_hex
    std::string secret_hex;            // wiped on destruction
    std::uint64_t rate_bps = 100'000;
    std::uint32_t burst_blocks = 1;
    std::uint32_t jitter_percent = 0;
    std::uint64_t seed = 0;

    sim_driver_config() = default;
    sim_driver_config(const sim_driver_config &) = default;
    sim_driver_config(sim_driver_config &&) noexcept = default;
    sim_driver_config &operator=(const sim_driver_config &) = default;
    sim_driver_config &operator=(sim_driver_config &&) noexcept = default;
    ~sim_driver_config();
};

struct link_config {
    std::string id;        // unique among this node's links; both ends use the same id
    std::string peer;      // the neighbour's node id
    endpoint peer_address; // where the neighbour's peer API listens
    link_kind kind = link_kind::qkd;
    driver_kind driver = driver_kind::sim;
    sim_driver_config sim; // when driver == sim
};

// ETSI 014 limits, reported in Status and enforced on requests. Sizes are in bits.
struct limits_config {
    std::uint32_t key_size = 256;
    std::uint32_t min_key_size = 8;
    std::uint32_t max_key_size = 65536;
    std::uint32_t max_key_per_request = 128;
    std::uint64_t max_key_count = 100'000;
    std::uint32_t max_SAE_ID_count = 0; // 0 = no multicast (additional_slave_SAE_IDs)
    std::uint32_t dec_keys_wait_ms = 50;
    std::uint32_t key_expiry_s = 300; // a reserved key not fetched by its slave is voided
};

struct config {
    std::filesystem::path source; // the file it came from (absolute)
    node_config node;
    tls_config tls;
    sae_identity_config sae_identity;
    std::vector<sae_config> saes;
    std::vector<std::string> remote_nodes; // non-neighbour nodes that SAEs may call home
    store_config store;
    std::vector<link_config> links;
    limits_config limits;
    std::uint32_t shards = 0; // 0 = one per core
};

// A configuration problem. what() is the full "file:line:col: path: problem" line; line and
// column are 1-based, 0 when the problem has no position (an unreadable file).
class config_error : public std::runtime_error {
public:
    config_error(std::string file, int line, int column, std::string path, std::string problem);
    [[nodiscard]] const std::string &file() const noexcept { return _file; }
    [[nodiscard]] int line() const noexcept { return _line; }
    [[nodiscard]] int column() const noexcept { return _column; }
    [[nodiscard]] const std::string &path() const noexcept { return _path; }
    [[nodiscard]] const std::string &problem() const noexcept { return _problem; }

private:
    std::string _file;
    int _line;
    int _column;
    std::string _path;
    std::string _problem;
};

// Reads and checks a config file. Throws config_error.
[[nodiscard]] config load_config(const std::filesystem::path &file);

// Checks YAML text. display_name appears in errors; relative paths resolve against base_dir.
// Throws config_error.
[[nodiscard]] config parse_config(std::string_view yaml, const std::string &display_name,
                                  const std::filesystem::path &base_dir);

// True if s is a valid node, SAE or link id: 1 to 64 of [A-Za-z0-9._-], starting with a
// letter or digit, without ".." (ids appear in URL paths, certificate CNs, which hold at most
// 64 characters, and file names). A subset of what the ETSI 014 shim accepts.
[[nodiscard]] bool is_valid_id(std::string_view s) noexcept;

// A link secret, wiped on destruction.
class secret_bytes {
public:
    secret_bytes() = default;
    explicit secret_bytes(std::vector<std::uint8_t> bytes) noexcept : _bytes(std::move(bytes)) {}
    secret_bytes(const secret_bytes &) = delete;
    secret_bytes &operator=(const secret_bytes &) = delete;
    secret_bytes(secret_bytes &&other) noexcept : _bytes(std::move(other._bytes)) {}
    secret_bytes &operator=(secret_bytes &&other) noexcept;
    ~secret_bytes();
    [[nodiscard]] const std::vector<std::uint8_t> &bytes() const noexcept { return _bytes; }

private:
    std::vector<std::uint8_t> _bytes;
};

// The sim driver's link secret, from secret_hex or by reading secret_file (hex text, at least
// 32 bytes, surrounding whitespace ignored). An I/O problem is a result error; malformed
// file content is errc::invalid_spec.
[[nodiscard]] result<secret_bytes> read_link_secret(const sim_driver_config &sim);

// One-line summary for `keyrail config check`: node id, counts of SAEs and links, shards.
[[nodiscard]] std::string summary(const config &cfg);

} // namespace keyrail::control
