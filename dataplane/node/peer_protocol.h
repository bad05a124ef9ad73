#pragma once
// The peer protocol on the engine: one instance per shard; keyraild's peer listener accepts
// only on the key shard, which also dials the links, so only that instance has connections. Frames are
// dataplane/proto's; this is the connection layer above them.
//
// A connection carries one link. Both sides send Hello at once (node id, versions, a fresh
// nonce and the link's key-confirmation value over it); nothing else is accepted before a
// Hello that names the expected node and link and confirms the same link secret. Then the
// link is attached to this connection: the sender's queued reservations (including those
// in flight on a previous connection) go out as Reserve batches, answered by ReserveAck after
// the peer's group commit; expired keys go out as Void; Ping/Pong and StreamWatermark every
// second. Any frame that fails verification, or arrives out of order, closes the connection
// with a logged reason.
// Lives on: its shard; the links it touches are shared (peer_link's atomics and small lock),
// their local_source is the key shard's alone.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include "dataplane/node/node_runtime.h"
#include "dataplane/node/settings.h"
#include "dataplane/proto/encode.h"
#include "dataplane/proto/frame.h"
#include "engine/protocol.h"

namespace keyrail::dataplane::node {

class peer_protocol final : public engine::protocol, public engine::timer_handler {
public:
    // outbound_links[i]: the link index of server_config::outbound[i].
    peer_protocol(const settings& cfg, node_runtime& runtime, std::size_t shard_index,
                  std::vector<std::size_t> outbound_links, std::size_t frame_bytes_max);
    ~peer_protocol() override;

    engine::admission on_open(engine::connection_context& ctx) noexcept override;
    engine::handler_result on_data(engine::connection_context& ctx, std::span<const char> in,
                                   engine::output& out) noexcept override;
    void on_close(engine::connection_context& ctx) noexcept override;
    void on_timer(engine::shard_context& shard, engine::timer_id id,
                  std::uint64_t arg) noexcept override;

    // Sends link's queued notices and voids if its connection is on this shard.
    void flush_link(engine::shard_context& shard, std::size_t link) noexcept;

private:
    struct conn_state {
        bool used = false;
        bool hello_received = false;
        bool watermark_received = false; // the link is logged "up" at the first one
        std::size_t link = 0;
        engine::connection_id id{};
        std::uint16_t version = 0;
        std::array<std::byte, 16> nonce{};
        std::array<std::byte, 32> session{}; // the TLS exporter value Hello is bound to
        // Reserve batches applied but not acked yet, oldest first: each is acked once the
        // store commit that covers it is done (never before), on this connection only.
        struct pending_ack {
            std::uint32_t stream = 0; // echoed from the Reserve
            std::uint64_t batch_id = 0;
            std::uint64_t ticket = 0;
            std::vector<proto::key_ack_in> exceptions;
        };
        std::vector<pending_ack> acks;
        // The store could not make applied batches durable: no acks; the connection closes
        // at its next frame (a watermark comes every 100 ms) and the peer resends them.
        bool persist_failed = false;
    };

    [[nodiscard]] conn_state* state_of(const engine::connection_context& ctx) noexcept;
    [[nodiscard]] bool on_hello(engine::connection_context& ctx, conn_state& st,
                                const proto::fb::Hello& h) noexcept;
    [[nodiscard]] bool send_frame(engine::shard_context& shard, engine::connection_id id,
                                  proto::frame_bytes frame) noexcept;
    void send_watermark_and_ping(engine::shard_context& shard, const conn_state& st,
                                 bool ping) noexcept;
    void arm_tick(engine::shard_context& shard) noexcept;
    // Commits what the acks wait for (if no request did) and sends every durable ack.
    void send_acks(engine::shard_context& shard, conn_state& st) noexcept;

    const settings& _cfg;
    node_runtime& _runtime;
    std::size_t _shard_index;
    std::vector<std::size_t> _outbound_links;
    std::size_t _frame_bytes_max; // what the peer's input buffer holds
    std::vector<conn_state> _conns; // by connection slot
    flatbuffers::FlatBufferBuilder _fbb;
    notice_batch _batch;
    std::vector<proto::key_ack_in> _exceptions;
    std::vector<proto::key_id_bytes> _void_ids;
    std::size_t _notice_keys_max = 256; // halved while a batch is over _frame_bytes_max
    bool _tick_armed = false;
    bool _ack_timer_armed = false;
    std::uint64_t _ticks = 0;
    std::uint64_t _pings = 0;
};

} // namespace keyrail::dataplane::node
