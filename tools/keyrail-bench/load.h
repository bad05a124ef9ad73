#pragma once
// The load loop: threads, each with its own io_uring and keep-alive TLS connections (OpenSSL
// over memory BIOs, so the ring moves only ciphertext), issuing ETSI 014 requests closed loop
// (connections x pipeline in flight) or open loop (a fixed schedule; latency from the intended
// send time, so a stalled server shows as queueing instead of fewer samples).
// run_load() is called on the main thread; it starts and joins the load threads.
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>

#include <sys/socket.h>

#include "tools/keyrail-bench/histogram.h"
#include "tools/keyrail-bench/options.h"

namespace keyrail::bench_client {

// A set-up problem (unreachable, TLS refused, not ETSI 014, bad files): one line, exit 2.
class setup_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct resolved_address {
    sockaddr_storage addr{};
    socklen_t addr_bytes = 0;
};

// Resolves url's host (numeric or by DNS); throws setup_error.
[[nodiscard]] resolved_address resolve(const base_url& url);

// Counters of one thread, then of the whole run (merged). requests == successes + errors().
struct load_stats {
    std::uint64_t requests = 0;  // logical requests that finished (paired: both stages)
    std::uint64_t successes = 0;
    std::uint64_t http_requests = 0; // HTTP exchanges (paired: two per request)
    std::uint64_t keys = 0;          // keys delivered and verified
    std::uint64_t key_bytes = 0;
    std::array<std::uint64_t, 600> http_errors{}; // by status code, non-200 answers
    std::uint64_t invalid_response = 0; // 200 but the body failed verification
    std::uint64_t key_mismatch = 0;     // paired: dec_keys bytes differ from enc_keys
    std::uint64_t transport = 0;        // connection lost with the request in flight
    std::uint64_t timeouts = 0;         // no answer within --timeout
    std::uint64_t unsent = 0;           // open loop: scheduled but never sent before the end
    std::uint64_t connects = 0;         // TLS connections established
    std::map<std::string, std::uint64_t> connection_errors; // reason -> count (not requests)
    std::map<std::string, std::uint64_t> invalid_reasons;   // reason -> count
    histogram latency_ns;               // every request that got an HTTP answer

    [[nodiscard]] std::uint64_t http_error_count() const noexcept;
    [[nodiscard]] std::uint64_t errors() const noexcept {
        return http_error_count() + invalid_response + key_mismatch + transport + timeouts;
    }
    void merge(const load_stats& other);
};

struct run_result {
    load_stats stats;
    double elapsed_s = 0;      // from the first scheduled request to the last answer
    bool stalled = false;      // a thread gave up: no progress for --timeout
    std::string stall_reason;
};

// Live numbers for the progress line, read once a second by the main thread.
struct progress_sample {
    std::uint64_t requests = 0;
    std::uint64_t errors = 0;
    std::uint64_t keys = 0;
};
using progress_callback = std::function<void(double elapsed_s, const progress_sample&)>;

// Checks reachability, TLS and the ETSI 014 status endpoint of each KME, then runs the load.
// Throws setup_error for set-up failures. progress may be empty.
[[nodiscard]] run_result run_load(const options& opts, const progress_callback& progress);

} // namespace keyrail::bench_client
