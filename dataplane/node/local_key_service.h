#pragma once
// The ETSI 014 key_service of one shard: checks the SAEs against the settings, maps them to the
// store's sae_id (settings index + 1), and picks the key source of the pair:
// - every slave homed here: the node's local stream (local_source without a peer);
// - slaves homed at one neighbour (and perhaps some here): the stream of the link to it, from
//   this node's own share at once, the peer told by a batched Reserve (peer_link);
// - a slave further away, or slaves at two different neighbours: 503 until relay exists.
// dec_keys tries the stream that holds the keys; keys of a peer's master that have not
// arrived yet answer errc::pending while the caller may wait (the ETSI protocol parks the
// request and asks again), then not_found.
//
// Forwarded calls: the sources live on the key shard (node_runtime::key_shard). There this
// service calls them directly. On any other shard, the checks and the routing run here and
// the source call travels to the key shard (key_forward.h): the call answers errc::pending,
// the protocol parks the connection (forward_in_flight()), and when the result is back the
// request is handled again from the start. Each source call of a request is numbered, and a
// call whose result came back is answered from it (key material copied from the call's
// buffers), so the handler's sequence of calls (enc_keys, then status for the counts of a
// 503) replays to the same results. end_request() drops them (and wipes the buffers).
// Lives on: one instance per shard; the sources and links behind it are the key shard's.
#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "dataplane/etsi014/key_service.h"
#include "dataplane/node/key_forward.h"
#include "dataplane/node/local_source.h"
#include "dataplane/node/settings.h"
#include "engine/protocol.h"

namespace keyrail::dataplane::node {

class node_runtime;
class peer_link;

// Where "now" comes from: the shard's loop clock on a shard, a fake in tests.
class clock_source {
public:
    virtual ~clock_source() = default;
    [[nodiscard]] virtual std::uint64_t now_ns() const noexcept = 0;
};

// CLOCK_MONOTONIC, the clock the engine's shards and the block source's start time use.
class monotonic_clock final : public clock_source {
public:
    [[nodiscard]] std::uint64_t now_ns() const noexcept override;
};

class local_key_service final : public etsi014::key_service {
public:
    // source may be null: pairs homed here get 503. runtime may be null (no links, one shard;
    // tests). shard_index: the shard this instance serves; off the key shard, the source calls
    // are forwarded in the calls of runtime->pool(shard_index).
    local_key_service(const settings& cfg, local_source* source, const clock_source& clock,
                      node_runtime* runtime = nullptr, std::size_t shard_index = 0);
    ~local_key_service() override;
    local_key_service(const local_key_service&) = delete;
    local_key_service& operator=(const local_key_service&) = delete;

    // Before each request: the shard it runs on, the connection (forwarded calls and their
    // results are the connection's), and whether dec_keys may answer pending (false once the
    // caller's wait is over).
    void begin_request(engine::shard_context& shard, engine::connection_id conn,
                       bool may_wait) noexcept;
    // The request was answered: its forwarded results and call are released (wiped).
    void end_request() noexcept;
    // The connection closed: a call still away is freed when it comes back.
    void on_close(std::uint32_t conn_slot) noexcept;
    // The last call answered pending because it was forwarded and is still away: park the
    // connection until on_forward_done wakes it (not a dec_keys wait).
    [[nodiscard]] bool forward_in_flight() const noexcept;

    // Key shard: execute call `index` of shard `from`'s pool. Its result is posted back by
    // settle_forwards/post_forwards, after the group commit.
    void execute_forward(engine::shard_context& shard, std::size_t from,
                         std::uint32_t index) noexcept;
    // Key shard, in the output barrier after the commit: the calls executed since are
    // answered; committed false: the commit failed, so each gets errc::unavailable and its key
    // material is wiped (none of it is durable).
    void settle_forwards(bool committed) noexcept;
    // Key shard: posts the settled answers; false when a full ring left some (retry later).
    bool post_forwards(engine::shard_context& shard) noexcept;
    // Calling shard: call `index` is back; wakes its connection.
    void on_forward_done(engine::shard_context& shard, std::uint32_t index) noexcept;

    [[nodiscard]] result<etsi014::status_info> status(std::string_view master_sae_id,
                                                      std::string_view slave_sae_id) noexcept override;
    [[nodiscard]] result<etsi014::status_info> limits(std::string_view master_sae_id,
                                                      std::string_view slave_sae_id) noexcept override;
    [[nodiscard]] result<void> enc_keys(const etsi014::enc_request& req,
                                        std::span<etsi014::key_id> ids_out,
                                        std::span<std::byte> key_bytes_out) noexcept override;
    [[nodiscard]] result<void> dec_keys(const etsi014::dec_request& req,
                                        std::span<std::byte> key_bytes_out,
                                        std::span<std::uint32_t> key_bytes_each_out) noexcept override;

private:
    [[nodiscard]] result<etsi014::status_info>
    status_of(std::string_view master_sae_id, std::string_view slave_sae_id,
              bool with_counts) noexcept;
    // The key source for keys to these slaves: the local stream, or link index's stream.
    struct route {
        local_source* source = nullptr;
        std::optional<std::size_t> link; // set for a link stream
        std::string_view target_kme;
    };
    [[nodiscard]] result<sae_id> known_sae(std::string_view id) const noexcept;
    [[nodiscard]] result<sae_id> local_sae(std::string_view id) const noexcept;
    [[nodiscard]] result<route> route_to(std::span<const sae_id> slaves) const noexcept;
    [[nodiscard]] bool on_key_shard() const noexcept;

    // The source calls themselves (key shard).
    [[nodiscard]] local_source* source_of(std::uint32_t link) const noexcept;
    [[nodiscard]] result<void> run_enc(engine::shard_context* shard, std::uint32_t link,
                                       const reserve_args& args, std::span<etsi014::key_id> ids,
                                       std::span<std::byte> bytes) noexcept;
    [[nodiscard]] result<void> run_dec(sae_id caller, sae_id master, bool may_wait,
                                       std::span<const etsi014::key_id> ids,
                                       std::span<std::byte> bytes,
                                       std::span<std::uint32_t> sizes) noexcept;

    // Forwarded calls (other shards). A request's calls in order, and what came back.
    struct call_record {
        forward_call::op what = forward_call::op::counts;
        std::error_code error;
        source_counts counts{};
    };
    struct conn_calls {
        engine::connection_id id{};
        std::optional<std::uint32_t> call; // the pool call this request holds
        bool in_flight = false;
        std::uint32_t recorded = 0; // results of calls 0 .. recorded - 1
        std::array<call_record, 4> log{};
    };
    [[nodiscard]] conn_calls& current() noexcept { return _conns[_conn.slot]; }
    // The current request's next source call: a recorded result replays (true, with the
    // record), else the call to fill and post (false, with the pool call in *call); errors:
    // pending (already away), unavailable (no call free).
    struct next_call {
        const call_record* record = nullptr; // replay this
        forward_call* call = nullptr;        // or fill this and post()
    };
    [[nodiscard]] result<next_call> next(forward_call::op what) noexcept;
    // Posts the filled call to the key shard: errc::pending, or unavailable (ring full).
    [[nodiscard]] result<void> post() noexcept;

    const settings& _cfg;
    local_source* _source;
    const clock_source& _clock;
    node_runtime* _runtime;
    std::size_t _shard_index;
    engine::shard_context* _shard = nullptr;
    engine::connection_id _conn{};
    bool _may_wait = false;
    std::uint32_t _call_index = 0; // source calls of the current request so far
    forward_pool* _pool = nullptr; // the runtime's pool of this shard (off the key shard)
    std::vector<conn_calls> _conns; // by connection slot
    // By pool call: the connection slot waiting for it (no_conn: none; closed meanwhile).
    static constexpr std::uint32_t no_conn = ~std::uint32_t{0};
    std::vector<std::uint32_t> _call_conn;
    // Key shard: calls executed since the last barrier, and answers waiting for a ring.
    struct done_entry {
        std::size_t from = 0;
        std::uint32_t index = 0;
    };
    std::vector<done_entry> _executed;
    std::vector<done_entry> _settled;
};

} // namespace keyrail::dataplane::node
