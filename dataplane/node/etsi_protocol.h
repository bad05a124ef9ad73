#pragma once
// The ETSI 014 protocol on the engine: one instance per shard. on_open reads the caller's SAE
// ID from its certificate (once per connection); on_data parses one HTTP/1.1 request, answers
// it through etsi014::handle into a per-shard scratch buffer, copies the response to the
// engine's output and wipes the scratch (it held base64 key material).
// Lives on: its shard; every member is that shard's.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "dataplane/etsi014/handler.h"
#include "dataplane/node/local_key_service.h"
#include "dataplane/node/node_runtime.h"
#include "dataplane/node/settings.h"
#include "engine/http/parser.h"
#include "engine/protocol.h"

namespace keyrail::dataplane::node {

struct protocol_limits {
    engine::http::limits http;
    etsi014::workspace_limits workspace;
};

class etsi_protocol final : public engine::protocol, public engine::timer_handler {
public:
    // Allocates the workspace and the scratch buffer (start-up, on the shard's thread) and
    // registers itself in runtime's slot for shard_index (runtime may be null: no waits).
    etsi_protocol(const settings& cfg, std::unique_ptr<local_key_service> service,
                  const protocol_limits& limits, node_runtime* runtime = nullptr,
                  std::size_t shard_index = 0);
    ~etsi_protocol() override;

    engine::admission on_open(engine::connection_context& ctx) noexcept override;
    engine::handler_result on_data(engine::connection_context& ctx, std::span<const char> in,
                                   engine::output& out) noexcept override;
    void on_close(engine::connection_context& ctx) noexcept override;
    // A dec_keys wait ran out (arg: connection slot and wait token).
    void on_timer(engine::shard_context& shard, engine::timer_id id,
                  std::uint64_t arg) noexcept override;
    // Keys arrived from a peer: every dec_keys waiting on this shard asks again.
    void wake_waiters(engine::shard_context& shard) noexcept;

    // The engine output buffer that fits every response this protocol writes.
    [[nodiscard]] std::size_t response_bytes_max() const noexcept { return _scratch_bytes; }

    // Per-connection word (connection_context::user_data): the SAE index + 1 in the low 32
    // bits (0: no valid SAE ID), and whether "100 Continue" went out for the current request.
    static constexpr std::uint64_t sae_mask = 0xffff'ffffu;
    static constexpr std::uint64_t continue_sent = std::uint64_t{1} << 32;

private:
    // A dec_keys parked until the peer's Reserve arrives or its wait runs out. The request
    // stays in the engine's input buffer and is handled again on each wake.
    struct wait_state {
        bool waiting = false;
        bool expired = false; // the wait is over: answer now, 400 if still missing
        std::uint32_t token = 0;
        engine::connection_id id{};
        std::optional<engine::timer_id> timer;
    };
    void end_wait(engine::shard_context& shard, wait_state& w) noexcept;

    const settings& _cfg;
    std::unique_ptr<local_key_service> _service;
    node_runtime* _runtime;
    std::size_t _shard_index;
    std::vector<wait_state> _waits; // by connection slot
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
