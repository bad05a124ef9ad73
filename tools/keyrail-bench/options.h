#pragma once
// keyrail-bench's command line: what to load, how hard, for how long. Parsed once at start-up
// on the main thread; the load threads get a const copy.
#include <cstdint>
#include <string>
#include <vector>

namespace keyrail::bench_client {

// https://host:port[/prefix]: the ETSI 014 base URL (the API lives under prefix/api/v1/keys).
struct base_url {
    std::string host;   // DNS name or IP literal (without brackets)
    std::uint16_t port = 443;
    std::string prefix; // "" or "/something", without a trailing slash
    [[nodiscard]] std::string text() const;
};

// Throws std::invalid_argument with a one-line reason.
[[nodiscard]] base_url parse_base_url(const std::string& url);

enum class request_kind : std::uint8_t { status, enc_keys, paired };
enum class http_method : std::uint8_t { get, post };

// One KME endpoint and the credentials of the SAE that calls it.
struct endpoint {
    base_url url;
    std::string ca_file;
    std::string cert_file;
    std::string key_file;
};

struct options {
    endpoint master;             // --url --ca --cert --key
    endpoint slave;              // --slave-url --slave-ca --slave-cert --slave-key (paired)
    std::string slave_sae_id;    // --slave-sae: {slave_SAE_ID} in status and enc_keys paths
    std::string master_sae_id;   // --master-sae: {master_SAE_ID} in dec_keys paths (paired)
    request_kind kind = request_kind::enc_keys;
    http_method method = http_method::get; // enc_keys only; dec_keys is always POST
    std::uint32_t key_number = 1;          // --number
    std::uint32_t key_size_bits = 256;     // --size
    std::uint32_t connections_count = 1;   // per endpoint, over all threads
    std::uint32_t pipeline_depth = 1;      // requests in flight per connection
    std::uint32_t threads_count = 1;
    std::vector<int> cpus;                 // --cpus 0,1: thread i runs on cpus[i % size]
    double rate_per_s = 0;                 // 0: closed loop; > 0: open loop at this rate
    double duration_s = 0;                 // 0 with requests_max == 0 means 10 s
    std::uint64_t requests_max = 0;        // 0: unbounded (duration decides)
    double timeout_s = 5;                  // per request; also the drain wait at the end
    bool skip_probe = false;               // --no-probe: start loading without a check
    bool progress = true;                  // a progress line when stdout is a terminal
    std::string json_file;                 // --json FILE

    // The effective bound on the run: duration_s, or 10 s when neither bound was given.
    [[nodiscard]] double duration_bound_s() const noexcept;
};

// Parses argv; throws std::invalid_argument on a bad or missing option. Sets help_requested
// (and returns defaults) for -h/--help.
[[nodiscard]] options parse_options(int argc, char** argv, bool& help_requested);

[[nodiscard]] const char* usage_text() noexcept;
[[nodiscard]] const char* to_string(request_kind k) noexcept;

} // namespace keyrail::bench_client
