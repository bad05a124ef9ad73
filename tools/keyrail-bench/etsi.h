#pragma once
// ETSI GS QKD 014 requests and response verification for keyrail-bench. Requests are built
// once per run as complete HTTP/1.1 byte strings (they never change, except dec_keys bodies).
// Verification is strict: JSON shape, UUID key_IDs without duplicates, standard base64 with
// padding, exactly `number` keys of exactly size/8 bytes, and in paired mode byte equality.
// Lives on: any thread; a verifier keeps scratch buffers, so one per load thread.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/etsi014/json.h"
#include "tools/keyrail-bench/options.h"

namespace keyrail::bench_client {

// One delivered key: canonical lowercase key_ID and its bytes. Wiped when released.
struct delivered_key {
    std::array<char, 36> id{};
    std::string bytes;
};

void wipe_keys(std::vector<delivered_key>& keys) noexcept;

[[nodiscard]] std::string status_request(const base_url& url, const std::string& slave_sae_id);
[[nodiscard]] std::string enc_keys_request(const base_url& url, const std::string& slave_sae_id,
                                           http_method method, std::uint32_t number,
                                           std::uint32_t size_bits);
// POST dec_keys with the IDs of keys, appended to out.
void append_dec_keys_request(std::string& out, const base_url& url,
                             const std::string& master_sae_id,
                             const std::vector<delivered_key>& keys);

// Strict standard base64 (RFC 4648 section 4, padded). False on any other character, a bad
// length or non-zero trailing bits.
[[nodiscard]] bool base64_decode(std::string_view text, std::string& out);

// nullptr when the body is valid, else a static reason.
class verifier {
public:
    // slave_sae_id empty: any slave_SAE_ID is accepted.
    [[nodiscard]] const char* check_status(std::string_view body,
                                           std::string_view slave_sae_id);
    // keys_out may be null when the keys are not needed.
    [[nodiscard]] const char* check_key_container(std::string_view body, std::uint32_t number,
                                                  std::uint32_t size_bits,
                                                  std::vector<delivered_key>* keys_out);
    // dec_keys: the same container shape, and the same IDs with the same bytes as expected
    // (in any order). Returns "key_mismatch" when shapes are fine but bytes differ.
    [[nodiscard]] const char* check_matches(std::string_view body,
                                            const std::vector<delivered_key>& expected,
                                            std::uint32_t size_bits, bool& mismatch);

private:
    [[nodiscard]] bool parse(std::string_view body, std::size_t tokens_count);

    std::vector<dataplane::etsi014::json::token> _tokens;
    dataplane::etsi014::json::document _doc;
    std::string _text;
    std::string _raw;
    std::vector<delivered_key> _scratch;
};

} // namespace keyrail::bench_client
