#pragma once
// ETSI GS QKD 014 requests and response verification for keyrail-bench. Requests are built
// once per run as complete HTTP/1.1 byte strings (they never change, except dec_keys bodies).
// Verification is strict: JSON shape, UUID key_IDs without duplicates, standard base64 with
// padding (dataplane/etsi014/base64.h), exactly `number` keys of exactly size/8 bytes, and in
// paired mode byte equality. Once warm it allocates nothing: a load generator must cost far less
// per key than the server it measures.
// Lives on: any thread; a verifier keeps scratch buffers, so one per load thread.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/etsi014/json.h"
#include "dataplane/etsi014/uuid.h"
#include "tools/keyrail-bench/options.h"

namespace keyrail::bench_client {

// The keys of one response: their key_IDs and their bytes, packed. A set is reused from request to
// request and keeps its capacity, so a warm one allocates nothing; its bytes are wiped by clear()
// and on destruction.
class key_set {
public:
    key_set() = default;
    ~key_set();
    key_set(const key_set&) = delete;
    key_set& operator=(const key_set&) = delete;

    void clear() noexcept; // wipes the bytes
    [[nodiscard]] std::size_t size() const noexcept { return _count; }
    [[nodiscard]] bool empty() const noexcept { return _count == 0; }
    [[nodiscard]] std::size_t key_bytes_each() const noexcept { return _each_bytes; }
    [[nodiscard]] const dataplane::etsi014::key_id& id(std::size_t i) const noexcept {
        return _ids[i];
    }
    [[nodiscard]] std::span<const std::byte> bytes(std::size_t i) const noexcept {
        return {_bytes.get() + i * _each_bytes, _each_bytes};
    }
    [[nodiscard]] std::span<const std::byte> all_bytes() const noexcept {
        return {_bytes.get(), _count * _each_bytes};
    }

private:
    friend class verifier;
    // Room for count keys of each_bytes, not zeroed (the verifier writes every byte); the previous
    // bytes are wiped first.
    void reset(std::size_t count, std::size_t each_bytes);
    [[nodiscard]] std::span<std::byte> writable_bytes(std::size_t i) noexcept {
        return {_bytes.get() + i * _each_bytes, _each_bytes};
    }

    std::vector<dataplane::etsi014::key_id> _ids;
    std::unique_ptr<std::byte[]> _bytes;
    std::size_t _bytes_capacity = 0;
    std::size_t _count = 0;
    std::size_t _each_bytes = 0;
};

// Detects duplicate key_IDs and finds them by ID, in time linear in the count: an open addressing
// table over random UUIDs, reused across requests.
class key_id_index {
public:
    // False if ids holds a duplicate.
    [[nodiscard]] bool build(const key_set& keys);
    // keys' index of id, or keys.size() when absent (keys as given to build()).
    [[nodiscard]] std::size_t find(const key_set& keys,
                                   const dataplane::etsi014::key_id& id) const noexcept;

private:
    std::vector<std::uint32_t> _slots; // key index + 1; 0 is empty
    std::size_t _mask = 0;
};

[[nodiscard]] std::string status_request(const base_url& url, const std::string& slave_sae_id);
[[nodiscard]] std::string enc_keys_request(const base_url& url, const std::string& slave_sae_id,
                                           http_method method, std::uint32_t number,
                                           std::uint32_t size_bits);
// POST dec_keys with the IDs of keys, appended to out (no temporary strings).
void append_dec_keys_request(std::string& out, const base_url& url,
                             const std::string& master_sae_id, const key_set& keys);

// nullptr when the body is valid, else a static reason.
class verifier {
public:
    // slave_sae_id empty: any slave_SAE_ID is accepted.
    [[nodiscard]] const char* check_status(std::string_view body, std::string_view slave_sae_id);
    // keys_out may be null when the keys are not needed.
    [[nodiscard]] const char* check_key_container(std::string_view body, std::uint32_t number,
                                                  std::uint32_t size_bits, key_set* keys_out);
    // dec_keys: the same container shape, and the same IDs with the same bytes as expected
    // (in any order). Returns "key_mismatch" when shapes are fine but bytes differ.
    [[nodiscard]] const char* check_matches(std::string_view body, const key_set& expected,
                                            std::uint32_t size_bits, bool& mismatch);

private:
    [[nodiscard]] bool parse(std::string_view body, std::size_t tokens_count);
    // A string token's text: the raw text when it has no escape, else decoded into scratch.
    [[nodiscard]] bool text_of(std::size_t index, std::string& scratch, std::string_view& out);

    std::vector<dataplane::etsi014::json::token> _tokens;
    dataplane::etsi014::json::document _doc;
    std::string _text; // decoded strings with escapes (never in keyrail's own answers)
    key_set _scratch;
    key_id_index _index;
    key_id_index _expected_index;
};

} // namespace keyrail::bench_client
