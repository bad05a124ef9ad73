#pragma once
// The ETSI GS QKD 014 v1.1.1 shim: routes a parsed HTTP request to status / enc_keys /
// dec_keys, validates it strictly, asks the key_service, and writes the complete HTTP response
// (status line, headers, exact ETSI JSON) into the caller's buffer.
//
// The caller's SAE ID comes from its TLS certificate, never from the request. Key bytes pass
// through the workspace, which is wiped before handle() returns; the response buffer then holds
// base64 key material, so the network layer wipes it (secure_wipe) once the TLS write is done.
// Nothing here logs. Lives on: each shard; a workspace is used by one handle() at a time.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "dataplane/etsi014/json.h"
#include "dataplane/etsi014/key_service.h"
#include "dataplane/etsi014/sae_id.h"
#include "dataplane/etsi014/uuid.h"
#include "engine/http/parser.h"

namespace keyrail::dataplane::etsi014 {

// additional_slave_SAE_IDs accepted in one request, whatever max_SAE_ID_count says.
inline constexpr std::size_t additional_slaves_max = 16;

struct workspace_limits {
    std::size_t keys_max = 1024;                 // keys or key_IDs in one request
    std::size_t key_bytes_max = 256 * 1024;      // sum of key sizes in one response
    std::size_t json_tokens_max = 4 * 1024 + 64; // a Key IDs body with keys_max entries
                                                 // (3 tokens each) plus the envelope
    std::size_t body_bytes_max = 128 * 1024;     // request bodies; larger -> 400
};

// Per-shard scratch for handle(): allocated once at shard start, reused for every request.
class workspace {
public:
    explicit workspace(const workspace_limits& lim); // allocates; throws only at start-up
    ~workspace();
    workspace(const workspace&) = delete;
    workspace& operator=(const workspace&) = delete;

    [[nodiscard]] const workspace_limits& limits() const noexcept { return _limits; }
    // An output buffer of this size fits every response handle() can write.
    [[nodiscard]] std::size_t response_bytes_max() const noexcept;

    [[nodiscard]] std::span<key_id> ids() noexcept { return {_ids.get(), _limits.keys_max}; }
    [[nodiscard]] std::span<std::byte> key_bytes() noexcept {
        return {_key_bytes.get(), _limits.key_bytes_max};
    }
    [[nodiscard]] std::span<std::uint32_t> key_sizes() noexcept {
        return {_key_sizes.get(), _limits.keys_max};
    }
    [[nodiscard]] std::span<json::token> tokens() noexcept {
        return {_tokens.get(), _limits.json_tokens_max};
    }
    // Decoded SAE IDs: the path's, then each additional slave's, sae_id_bytes_max apiece.
    [[nodiscard]] std::span<char> sae_text(std::size_t slot) noexcept;

private:
    workspace_limits _limits;
    std::unique_ptr<key_id[]> _ids;
    std::unique_ptr<std::byte[]> _key_bytes;
    std::unique_ptr<std::uint32_t[]> _key_sizes;
    std::unique_ptr<json::token[]> _tokens;
    std::unique_ptr<char[]> _sae_text;
};

// The smallest output buffer handle() accepts (errors and status always fit in it).
inline constexpr std::size_t response_bytes_min = 4096;

struct handle_result {
    int http_status = 0;
    std::size_t response_bytes = 0; // the complete HTTP response at the start of out
    // The service answered errc::pending: nothing was written; the caller asks again later.
    // From dec_keys: keys whose peer notice has not arrived; the caller waits, and once its
    // wait is over tells the service not to answer pending any more (the standard 400
    // follows). From any call: the service's answer is on its way (a node's call forwarded to
    // another shard); the caller asks again when the service says so.
    bool retry = false;
};

// Answers one request. out.size() >= response_bytes_min; with ws.response_bytes_max() every
// key response fits, with less a large request gets 400 before any key is reserved.
// The response repeats the request's keep-alive choice in its Connection header.
[[nodiscard]] handle_result handle(const engine::http::request& req, std::string_view caller_sae_id,
                                   key_service& service, workspace& ws,
                                   std::span<char> out) noexcept;

} // namespace keyrail::dataplane::etsi014
