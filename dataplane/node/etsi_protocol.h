#pragma once
// The ETSI 014 protocol on the engine: one instance per shard. on_open reads the caller's SAE
// ID from its certificate (once per connection); on_data parses one HTTP/1.1 request, answers
// it through etsi014::handle into a per-shard scratch buffer, copies the response to the
// engine's output and wipes the scratch (it held base64 key material).
// Lives on: its shard; every member is that shard's.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "dataplane/etsi014/handler.h"
#include "dataplane/node/settings.h"
#include "engine/http/parser.h"
#include "engine/protocol.h"

namespace keyrail::dataplane::node {

struct protocol_limits {
    engine::http::limits http;
    etsi014::workspace_limits workspace;
};

class etsi_protocol final : public engine::protocol {
public:
    // Allocates the workspace and the scratch buffer (start-up, on the shard's thread).
    etsi_protocol(const settings& cfg, std::unique_ptr<etsi014::key_service> service,
                  const protocol_limits& limits);
    ~etsi_protocol() override;

    engine::admission on_open(engine::connection_context& ctx) noexcept override;
    engine::handler_result on_data(engine::connection_context& ctx, std::span<const char> in,
                                   engine::output& out) noexcept override;

    // The engine output buffer that fits every response this protocol writes.
    [[nodiscard]] std::size_t response_bytes_max() const noexcept { return _scratch_bytes; }

    // Per-connection word (connection_context::user_data): the SAE index + 1 in the low 32
    // bits (0: no valid SAE ID), and whether "100 Continue" went out for the current request.
    static constexpr std::uint64_t sae_mask = 0xffff'ffffu;
    static constexpr std::uint64_t continue_sent = std::uint64_t{1} << 32;

private:
    const settings& _cfg;
    std::unique_ptr<etsi014::key_service> _service;
    protocol_limits _limits;
    etsi014::workspace _workspace;
    std::size_t _scratch_bytes = 0;
    std::unique_ptr<char[]> _scratch;
    engine::http::request _request; // views into the engine's input buffer, one call at a time
    // Rate limit of the 5xx log line: the next time one may be logged, and how many were not.
    static constexpr std::uint64_t server_error_log_interval_ns = 1'000'000'000;
    std::uint64_t _server_error_log_ns = 0;
    std::uint64_t _server_errors_unlogged = 0;
};

} // namespace keyrail::dataplane::node
