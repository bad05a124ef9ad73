#pragma once
// A key source over one store stream, fed by a block_source (the sim driver) at its configured
// rate, and the reservation and delivery of keys on it. Either the node's local stream (SAE
// pairs homed here; ownership stride 1), or a link's stream shared with the neighbour
// (options.peer_node; this node owns every other block): then it also keeps the notices for the
// peer (outbox, in flight until acked), applies the peer's reservations, voids and grants
// (local_source_peer.cc; dataplane/node/README.md, "Two nodes").
//
// Lives on: the key shard (node_runtime::key_shard), with no lock: its timers, the peer
// connections of its link and the group commit run there, and other shards forward their
// key calls (key_forward.h). Before the shards start, the main thread sets it up (recover).
//
// Timers (dataplane/node/node_hooks.h, on shard 0): pump() appends the blocks the source
// produced, in bounded batches every few milliseconds, so enc_keys does not pay for ingest;
// expire_due() voids reservations no slave fetched within key_expiry, so their slots free up.
// status still pumps first (its counts are exact), and enc_keys pumps only when the timer fell
// behind and too few blocks are available.
#include <algorithm>
#include <cstddef>
#include <deque>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dataplane/etsi014/uuid.h"
#include "dataplane/node/settings.h"
#include "dataplane/proto/encode.h"
#include "dataplane/store/stream.h"
#include "engine/result.h"

namespace keyrail::dataplane::node {

// A device that produces key blocks over time (drivers/sim's sim_link behind an adapter, so
// dataplane does not depend on drivers). Lives on: its local_source's shard.
class block_source {
public:
    virtual ~block_source() = default;
    // Writes up to max_blocks blocks that arrived by now_ns into out; returns how many.
    [[nodiscard]] virtual std::size_t produce(std::uint64_t now_ns, std::span<std::uint8_t> out,
                                              std::size_t max_blocks) noexcept = 0;
    [[nodiscard]] virtual std::uint64_t next_sequence() const noexcept = 0;
    // The peer's end of the link already has every block below sequence_end: a device that
    // keeps its own schedule (a simulation started at another time than its peer) makes them
    // ready now. A real device has them anyway.
    virtual void deliver_through(std::uint64_t sequence_end) noexcept { (void)sequence_end; }
};

struct source_counts {
    std::uint64_t available_blocks = 0; // ready to reserve
    std::uint32_t block_bytes = 0;
};

struct local_source_options {
    // A link stream shares its blocks with the neighbour peer_node (ownership split by the
    // store); empty peer_node: a stream only this node uses. cfg says where each SAE lives.
    const settings* cfg = nullptr;
    std::string peer_node;
    // A link stream created in this run (no store behind it before): it serves nothing from
    // its share until the peer's first StreamWatermark shows the link has no history this end
    // forgot (check_fresh); otherwise the lost store's keys would be served again.
    bool fresh = false;
    // The source pauses once this many blocks are available (the device keeps them; they
    // arrive later), so max_key_count bounds what the store holds.
    std::uint64_t ingest_cap_blocks = 0;
    // A reservation no slave fetched within this time is expired (its blocks wiped).
    std::uint64_t key_expiry_ns = 300'000'000'000;
    // The store's reservation slots per stream (store_config::reservations_max): sizes the
    // expiry queue, and a request that would pass it is refused before touching the store.
    std::uint32_t reservations_max = 1u << 14;
    // reserve and deliver leave their commit to commit_due(), which the shard's output
    // barrier calls before any answer leaves (engine shard_hooks::before_output): one group
    // commit per loop turn instead of one per request. Off: each commits before it returns.
    bool commit_at_barrier = false;
};

// Reserve notices for the peer, built by take_notices: every view points into this object's
// vectors (reused across calls) or into the settings. Lives on: the peer connection's shard.
struct notice_batch {
    std::uint64_t batch_id = 0;
    std::vector<proto::key_reservation_in> keys;
    std::vector<proto::seq_run> runs;
    std::vector<std::string_view> slaves;
    std::vector<seq_t> seqs;
};

struct reserve_args {
    std::uint32_t key_bits = 0;
    std::uint32_t number = 0;
    sae_id master{};
    std::span<const sae_id> slaves; // 1..slaves_max
};

class local_source {
public:
    // Allocates the expiry queue (reservations_max entries) and the ingest batch.
    local_source(stream& s, std::unique_ptr<block_source> source,
                 const local_source_options& options) noexcept;
    ~local_source();
    local_source(const local_source&) = delete;
    local_source& operator=(const local_source&) = delete;

    [[nodiscard]] source_counts counts(std::uint64_t now_ns) noexcept;

    // All or nothing: number keys of key_bits, IDs into ids_out, bytes packed into bytes_out.
    // Durable (committed) before it returns, or with commit_at_barrier by the next
    // commit_due(); each key expires key_expiry_ns after now_ns.
    // Errors are etsi014::errc values: exhausted, reservations_full, size_unsupported,
    // unavailable.
    [[nodiscard]] result<void> reserve(std::uint64_t now_ns, const reserve_args& args,
                                       std::span<etsi014::key_id> ids_out,
                                       std::span<std::byte> bytes_out) noexcept;

    // All or nothing: the keys ids reserved by master for caller, packed into bytes_out, each
    // size into sizes_out. Durable before it returns (or as reserve). Errors (etsi014::errc):
    // not_found, unauthorized, buffer_too_small, unavailable.
    [[nodiscard]] result<void> deliver(std::uint64_t now_ns, sae_id master, sae_id caller,
                                       std::span<const etsi014::key_id> ids,
                                       std::span<std::byte> bytes_out,
                                       std::span<std::uint32_t> sizes_out) noexcept;

    // Makes every staged change durable (drain, shutdown).
    [[nodiscard]] result<void> commit() noexcept;
    // The output barrier's group commit: commits if a reserve or deliver left its commit to
    // it (commit_at_barrier), else nothing.
    [[nodiscard]] result<void> commit_due() noexcept;

    // Timer work, bounded per call. pump: appends at most blocks_max blocks that arrived by
    // now_ns. expire_due: expires at most keys_max reservations whose deadline passed, then
    // commits. Each returns true when more work was left for a later call.
    bool pump(std::uint64_t now_ns, std::size_t blocks_max) noexcept;
    bool expire_due(std::uint64_t now_ns, std::size_t keys_max) noexcept;

    // ---- A link stream's peer side (options.peer_node set). ----
    [[nodiscard]] bool shared() const noexcept { return !_options.peer_node.empty(); }
    [[nodiscard]] const std::string& peer_node() const noexcept { return _options.peer_node; }
    // Start-up, before any shard runs: every reservation recovered from the store expires
    // key_expiry after now_ns, and this node's own reservations (master homed here) with
    // slaves at the peer not yet served are queued to be told again (the peer answers
    // duplicate for those it has).
    void recover(std::uint64_t now_ns);
    // Up to keys_max queued reservations for one Reserve frame; moved to the in-flight list
    // under out.batch_id until on_ack (or requeue). Returns the count (0: nothing to send).
    std::size_t take_notices(std::size_t keys_max, notice_batch& out);
    // The batch could not be sent (the connection's output was full): queue it again.
    void requeue(std::uint64_t batch_id) noexcept;
    // The connection closed: everything in flight goes out again on the next one.
    void requeue_all() noexcept;
    [[nodiscard]] bool has_outbound() noexcept;
    // Where the stream stands, for StreamWatermark.
    [[nodiscard]] stream_status stream_state() noexcept;
    [[nodiscard]] ownership stream_owner() const noexcept { return _stream.owner(); }
    // The peer persisted batches first..last: each key is ok unless listed in exceptions. An
    // ok (or duplicate) key is served for its slaves at the peer, so once this node's own
    // slaves (if any) have it, its blocks are wiped; a refused key is expired here.
    void on_ack(std::uint64_t first, std::uint64_t last,
                std::span<const proto::key_ack_in> exceptions) noexcept;
    // Up to max key IDs to void at the peer (expired unfetched here).
    std::size_t take_voids(std::size_t max, std::vector<proto::key_id_bytes>& out);
    // The peer's Reserve: reserves each key on the peer's share for the slaves homed here.
    // exceptions gets every key not ok. Nothing is committed here: the batch is durable once
    // durable_through() reaches the returned ticket (the next commit of any kind: a dec_keys,
    // the ack timer's commit(), the expiry sweep). Ack it only then.
    struct applied_batch {
        std::size_t applied = 0;  // keys reserved (a slave here may fetch them now)
        std::uint64_t ticket = 0; // durable once durable_through() >= ticket
    };
    [[nodiscard]] applied_batch apply_reserve(std::uint64_t now_ns,
                                              const proto::fb::Reserve& batch,
                                              std::vector<proto::key_ack_in>& exceptions);
    // The number of commits made so far (tickets up to it are durable).
    [[nodiscard]] std::uint64_t durable_through() noexcept;
    // The peer dropped these keys: expire them here too.
    void apply_void(const proto::fb::Void& v) noexcept;
    // Rebalancing. serving_blocks: what this node can still reserve from (its share's
    // available blocks not yet leased, plus unused grants), for StreamWatermark.
    [[nodiscard]] std::uint64_t serving_blocks() noexcept;
    // The peer serves from peer_serving blocks: if that is below low_water and this node has
    // plenty (twice as many), lease half the difference away from this node's share
    // (durably: never reserved here) and return it for a ShareGrant.
    // At most one grant per second.
    [[nodiscard]] std::optional<lease> maybe_grant(std::uint64_t now_ns,
                                                   std::uint64_t peer_serving,
                                                   std::uint64_t low_water) noexcept;
    // The peer's StreamWatermark on a fresh stream: if the peer has ingested more than a cap's
    // worth beyond this end, the link has a history this store lost: refuse to serve from it
    // (logged with what to do) instead of handing out its old blocks again.
    void check_fresh(std::uint64_t peer_ingested_end) noexcept;
    // The peer's ShareGrant: its blocks first, first + stride, ... below end may serve keys
    // here once this node's own share runs short.
    void add_grant(std::uint64_t first, std::uint64_t end, std::uint32_t stride) noexcept;
    // Below this many serving blocks a node asks for (and its peer considers) a grant.
    [[nodiscard]] std::uint64_t grant_low_water() const noexcept {
        return std::max<std::uint64_t>(64, _options.ingest_cap_blocks / 8);
    }

    // Tests and logs: reservations waiting in the expiry queue, keys expired so far.
    [[nodiscard]] std::size_t expiry_queued() noexcept;
    [[nodiscard]] std::uint64_t expired_total() noexcept;

private:
    // One reserved key and when it expires. Reservations are queued in deadline order (one
    // expiry for all, a monotonic clock), so the queue is a FIFO.
    struct expiry_entry {
        std::uint64_t deadline_ns = 0;
        dataplane::key_id id{};
    };

    // A multicast key this process delivered to some of its slaves, not yet to all.
    struct delivered_entry {
        dataplane::key_id id{};
        std::uint8_t mask = 0; // bit i: slaves[i] of the key has it
        bool used = false;
    };

    // Returns true when it stopped at blocks_max with blocks left to append.
    bool pump_some(std::uint64_t now_ns, std::size_t blocks_max) noexcept;
    // Appends the held batch; false when the store took less than all of it.
    bool append_held() noexcept;
    [[nodiscard]] std::size_t delivered_find(const dataplane::key_id& id) const noexcept;
    [[nodiscard]] bool delivered_to(const dataplane::key_id& id,
                                           std::uint32_t slave_index) const noexcept;
    void delivered_mark(const dataplane::key_id& id, std::uint32_t slave_index,
                               std::uint32_t slave_count) noexcept;
    void delivered_erase(const dataplane::key_id& id) noexcept;
    [[nodiscard]] result<void> commit_now() noexcept;
    [[nodiscard]] result<void> commit_or_defer() noexcept;
    void expiry_push(std::uint64_t deadline_ns, const dataplane::key_id& id) noexcept;
    void expiry_compact() noexcept;

    static constexpr std::size_t pump_batch_blocks = 256;
    static constexpr std::size_t pump_request_blocks_max = std::size_t{1} << 20;

    // Picks blocks_needed available, ingested blocks from the grants into out (consumed grant
    // blocks leave _grants); false (nothing picked) when the grants cannot cover it.
    [[nodiscard]] bool pick_granted(std::uint32_t blocks_needed, std::span<seq_t> out) noexcept;
    [[nodiscard]] std::uint64_t granted_blocks() const noexcept;
    [[nodiscard]] result<void> reserve_granted(const reserve_args& args,
                                                      std::span<etsi014::key_id> ids_out,
                                                      std::span<std::byte> bytes_out,
                                                      std::uint32_t& done) noexcept;
    [[nodiscard]] bool sae_at_peer(sae_id id) const noexcept;
    [[nodiscard]] bool sae_here(sae_id id) const noexcept;
    void serve_peer_slaves(const dataplane::key_id& id) noexcept;

    struct inflight_batch {
        std::uint64_t batch_id = 0;
        std::vector<dataplane::key_id> ids;
    };

    stream& _stream;
    std::unique_ptr<block_source> _source;
    local_source_options _options;
    // pump_batch_blocks blocks. Blocks the device produced and the store has not taken yet
    // (refused: store_full, or a write error part-way) stay here, at _held_first, and are
    // appended before the device is asked for more: the store's sequence numbers and the
    // device's never drift. Wiped once appended.
    std::vector<std::uint8_t> _batch;
    std::uint64_t _held_first = 0;
    std::size_t _held_blocks = 0;
    bool _refusal_logged = false; // once per run of refusals
    bool _halted = false;         // device and store disagree: no more ingest until restart
    // Ring of reservations_max entries: every reservation this process made and has not
    // seen expire. Delivered keys stay until their deadline or a compaction drops them.
    std::vector<expiry_entry> _expiry;
    std::size_t _expiry_head = 0;
    std::size_t _expiry_count = 0;
    std::uint64_t _expired_total = 0;
    // Open addressing (linear probing) over 2 * reservations_max entries, rounded up to a
    // power of two: at most one entry per live reservation, so it is never more than half
    // full. The store's key_view does not say which slaves have a key, and a dec_keys must know
    // before it delivers anything. Empty after a restart (see deliver).
    std::vector<delivered_entry> _delivered;
    std::size_t _delivered_count = 0; // entries in use: lookups skip an empty table
    bool _commit_due = false;         // results wait for commit_due() (commit_at_barrier)
    // Link streams: reservations of this node's share not yet told to the peer (told oldest
    // first), batches sent and not acked, and keys to void at the peer. The outbox is pruned of
    // keys gone from the store when it passes reservations_max (every live entry names a live
    // reservation), at most reservations_max keys are in flight, the voids are capped there.
    std::deque<dataplane::key_id> _outbox; // oldest first
    std::vector<inflight_batch> _inflight;
    std::vector<dataplane::key_id> _voids;
    std::uint64_t _next_batch = 1;
    std::vector<seq_t> _scratch_seqs; // one peer key's seqs (apply_reserve)
    // Runs of the peer's blocks it granted us (rebalancing), oldest first; memory only: a
    // restart forgets them and those blocks are lost, never served twice.
    std::vector<proto::seq_run> _grants;
    // One past the highest block a peer reservation named: ingest continues at least to here
    // whatever the cap says.
    std::uint64_t _peer_needs_end = 0;
    enum class fresh_state : std::uint8_t { settled, unchecked, refused };
    fresh_state _fresh = fresh_state::settled;
    std::uint64_t _last_grant_ns = 0;
    std::uint64_t _bad_grants = 0;
    std::size_t _inflight_keys = 0;
    void prune_outbox() noexcept;
    std::uint64_t _grants_taken_total = 0;
};

} // namespace keyrail::dataplane::node
