#pragma once
// One key stream's store: encrypted segment files of fixed-size blocks, the block states
// (available -> reserved -> delivered, or expired), reservations by key ID, the durable lease
// bound, and group commit. Lives on: the stream's home shard, which is the only writer of its
// files; nothing here is thread-safe, other shards reach it by message (see lease.h).
//
// Durability contract: every mutating call stages its change and returns a commit ticket; the
// change (and the bytes a call copied out) may be acknowledged to a client only once
// commits_done() >= ticket. commit() is the group commit: one per batch of requests.
#include "dataplane/store/seal.h"
#include "dataplane/store/types.h"
#include "engine/result.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace keyrail::dataplane {

enum class block_state : std::uint8_t {
    absent = 0,    // not ingested yet (or outside the live window)
    available = 1, // ingested, not reserved
    reserved = 2,  // part of a key (possibly held before its bytes arrived)
    delivered = 3, // delivered to every slave; bytes wiped
    expired = 4,   // skipped, released or timed out; bytes wiped
    lost = 5,      // below the ingest mark but its chunk is corrupt or missing
};

struct reserve_request {
    std::uint32_t key_bits = 256;
    sae_id master{};
    std::span<const sae_id> slaves; // 1..slaves_max
};

struct reserved_key {
    key_id id{};
    std::uint64_t ticket = 0; // acknowledge once commits_done() >= ticket
};

struct delivered_key {
    std::uint32_t key_bytes = 0;
    std::uint64_t ticket = 0;
};

struct key_view {
    sae_id master{};
    std::uint32_t key_bits = 0;
    std::uint32_t slave_count = 0;
    std::array<sae_id, slaves_max> slaves{};
    std::uint8_t delivered_mask = 0; // bit i: slaves[i] has been served
};

struct stream_status {
    std::uint64_t available_blocks = 0;       // all shares
    std::uint64_t owned_available_blocks = 0; // this node's share, not yet leased
    std::uint64_t capacity_blocks = 0;
    std::uint64_t ingested = 0; // next sequence number to append
    std::uint64_t next_lease = 0;
    std::uint32_t reservations = 0;
    std::uint32_t block_bytes = 0;
    bool compacting = false; // a journal compaction is being written (README.md)
};

// Blocks of key_bits: whole blocks, the tail of the last one unused and wiped.
[[nodiscard]] result<std::uint32_t> blocks_for_key(std::uint32_t key_bits,
                                                   std::uint32_t block_bytes) noexcept;

namespace detail {
struct segment;
struct cache_slot;
struct reservation;
} // namespace detail

class stream {
public:
    // Creates (create_if_missing and no meta file) or recovers the stream in dir.
    [[nodiscard]] static result<std::unique_ptr<stream>> open(const store_config& config,
                                                              const secret_key& data_key,
                                                              stream_id id, ownership own,
                                                              std::string dir) noexcept;
    ~stream();
    stream(const stream&) = delete;
    stream& operator=(const stream&) = delete;

    // Drivers: appends whole blocks at the next sequence numbers; returns the first one.
    // All or nothing; errc::store_full when the live window has no room.
    [[nodiscard]] result<seq_t> append(std::span<const std::byte> blocks) noexcept;

    // Lease authority side: hands out up to block_count owned, ingested, never-leased seqs.
    // The lease's upper bound is durable before this returns.
    [[nodiscard]] result<lease> grant(std::uint64_t block_count) noexcept;
    // Gives back the unused owned seqs in [from, l.end): they expire (never reused).
    void release(const lease& l, seq_t from) noexcept;

    // enc_keys on the home shard: picks blocks from this node's share, a fresh key ID, copies
    // the key (key_bits / 8 bytes) into out.
    [[nodiscard]] result<reserved_key> reserve(const reserve_request& req,
                                               std::span<std::byte> out) noexcept;
    // Reserves these seqs for id: the peer's notice (seqs of its share, possibly not ingested
    // yet: held until they arrive), or a serving shard's seqs from its lease. out may be empty;
    // otherwise the key is copied (needs every block ingested). Returns the ticket.
    [[nodiscard]] result<std::uint64_t> reserve_specific(const key_id& id,
                                                         const reserve_request& req,
                                                         std::span<const seq_t> seqs,
                                                         std::span<std::byte> out) noexcept;
    // dec_keys: caller must be a named slave; copies the key once per slave. When every slave
    // has it, its blocks become delivered and are wiped after the commit. An empty out marks
    // the slave served without copying anything (another node served it: the peer's slaves of
    // a key this node reserved), so the blocks need not be ingested.
    [[nodiscard]] result<delivered_key> deliver(const key_id& id, sae_id caller,
                                                std::span<std::byte> out) noexcept;
    // Drops a reservation (timeout, peer Void): its blocks expire and are wiped.
    [[nodiscard]] result<std::uint64_t> expire_key(const key_id& id) noexcept;

    // Reads a reserved key without changing state (inspection, recovery checks).
    [[nodiscard]] result<std::uint32_t> read_key(const key_id& id,
                                                 std::span<std::byte> out) noexcept;
    // The plaintext of one block as stored (zeros once wiped): inspection and tests only.
    [[nodiscard]] result<void> read_block(seq_t seq, std::span<std::byte> out) noexcept;
    [[nodiscard]] result<key_view> find_key(const key_id& id) const noexcept;
    // A hint before a batch of find_key / expire_key / deliver calls: loads id's index slot
    // into the cache meanwhile. No effect on state.
    void prefetch_key(const key_id& id) const noexcept { index_prefetch(id); }
    // Appends the ID of every live reservation (recovery: resend and expiry after a restart);
    // returns how many. Allocates: start-up and reconnects, not the request path.
    std::size_t key_ids(std::vector<key_id>& out) const;
    // True when every block of the key has been ingested here, so deliver can copy it (a
    // peer's reservation may name blocks this end's driver has not delivered yet).
    [[nodiscard]] bool key_ready(const key_id& id) const noexcept;
    // The sequence numbers of a key (at most blocks_max entries written); returns the count.
    [[nodiscard]] result<std::uint32_t> key_seqs(const key_id& id,
                                                 std::span<seq_t> out) const noexcept;

    // Group commit: writes staged chunks and journal records, fdatasync (power mode), meta,
    // fdatasync; then wipes delivered and expired blocks in memory and on disk.
    [[nodiscard]] result<std::uint64_t> commit() noexcept;
    [[nodiscard]] std::uint64_t commits_done() const noexcept { return _commits_done; }
    [[nodiscard]] std::uint64_t next_ticket() const noexcept { return _commits_done + 1; }
    [[nodiscard]] bool has_pending() const noexcept;

    [[nodiscard]] stream_status status() const noexcept;
    [[nodiscard]] block_state state_of(seq_t seq) const noexcept;
    [[nodiscard]] stream_id id() const noexcept { return _id; }
    [[nodiscard]] ownership owner() const noexcept { return _own; }
    [[nodiscard]] std::uint32_t block_bytes() const noexcept { return _block_bytes; }

private:
    stream() noexcept;
    [[nodiscard]] result<void> create_files() noexcept;
    [[nodiscard]] result<void> recover() noexcept;
    [[nodiscard]] result<void> replay_journal(std::uint64_t journal_bytes) noexcept;
    void scan_segments() noexcept;

    [[nodiscard]] std::size_t ring_index(seq_t seq) const noexcept {
        return static_cast<std::size_t>(seq % _capacity);
    }
    [[nodiscard]] block_state& state_ref(seq_t seq) noexcept { return _state[ring_index(seq)]; }
    void set_state(seq_t seq, block_state s) noexcept;

    [[nodiscard]] result<detail::segment*> segment_for(std::uint64_t chunk, bool create) noexcept;
    [[nodiscard]] result<detail::cache_slot*> load_chunk(std::uint64_t chunk) noexcept;
    [[nodiscard]] detail::cache_slot* find_cached(std::uint64_t chunk) noexcept;
    [[nodiscard]] result<detail::cache_slot*> free_slot() noexcept;
    [[nodiscard]] result<void> seal_and_stage(detail::cache_slot& slot) noexcept;
    [[nodiscard]] result<void> flush_stage() noexcept;
    [[nodiscard]] result<std::uint64_t> take_nonce() noexcept;
    [[nodiscard]] result<void> write_meta(std::uint64_t journal_bytes, std::uint64_t lease_high,
                                          std::uint64_t nonce_high) noexcept;
    [[nodiscard]] result<void> sync(int fd) noexcept;
    [[nodiscard]] result<void> copy_key(const detail::reservation& r,
                                        std::span<std::byte> out) noexcept;
    [[nodiscard]] result<void> wipe_block(seq_t seq) noexcept;
    void consume_reservation(std::uint32_t slot, block_state final_state, bool wipe) noexcept;
    [[nodiscard]] std::uint32_t expand_seqs(const detail::reservation& r) noexcept;
    [[nodiscard]] std::string segment_path(std::uint64_t number) const noexcept;
    void try_reclaim() noexcept;

    // Reservation pool and key-ID index (open addressing, linear probing).
    // Starts loading the index slot where id lives (or would go) into the cache.
    void index_prefetch(const key_id& id) const noexcept;
    [[nodiscard]] std::uint32_t index_find(const key_id& id) const noexcept;
    void index_insert(const key_id& id, std::uint32_t slot) noexcept;
    void index_erase(const key_id& id) noexcept;
    [[nodiscard]] result<std::uint32_t> add_reservation(const key_id& id,
                                                        const reserve_request& req,
                                                        std::span<const seq_t> seqs) noexcept;
    void free_reservation(std::uint32_t slot) noexcept;
    // Adds one entry to the open batch record if it has this type and these common bytes (and
    // room), else closes it and opens a new one: consecutive reserves of one request (same
    // master, size and slaves), and consecutive deliveries or expiries, share one record
    // header and checksum.
    void journal_batch_add(std::uint32_t type, const void* common, std::uint32_t common_size,
                           const void* entry, std::uint32_t entry_size) noexcept;
    // Appends the open batch record's checksum (before any other record, and before a commit
    // writes the journal).
    void journal_close() noexcept;
    // A reservation as a reserve batch entry.
    void journal_reservation(const detail::reservation& r) noexcept;
    // Compaction (README.md, "Journal compaction"): after a commit, once the journal passes
    // store_config::journal_compact_bytes and four times the snapshot's size, it is rewritten
    // as a snapshot in the next generation's file: the snapshot is built at once, then written
    // journal_compact_step_bytes per commit with every record committed meanwhile appended;
    // the meta naming the new generation is the commit point.
    [[nodiscard]] std::size_t snapshot_estimate() const noexcept;
    void maybe_compact() noexcept;
    [[nodiscard]] result<void> start_compaction() noexcept;
    [[nodiscard]] result<void> continue_compaction() noexcept;
    void abandon_compaction() noexcept;
    void compaction_failed(const std::error_code& why) noexcept; // abandon, log, retry later
    [[nodiscard]] std::string journal_path(std::uint64_t gen) const;
    void remove_other_journals() noexcept;
    // One reservation, delivery or expiry read back from the journal (replay_journal).
    void replay_reserve(const key_id& id, sae_id master, std::uint32_t bits,
                        std::span<const sae_id> slaves, const std::byte* runs,
                        std::uint8_t run_count, const std::string& path, std::size_t off) noexcept;
    void replay_deliver(const key_id& id, std::uint8_t slave) noexcept;
    void replay_expire(const key_id& id) noexcept;

    stream_id _id{};
    ownership _own{};
    durability _mode = durability::power;
    std::string _dir;
    std::uint32_t _block_bytes = 0;
    std::uint32_t _blocks_per_chunk = 0;
    std::uint32_t _segment_chunks = 0;
    std::uint64_t _blocks_per_segment = 0;
    std::uint64_t _capacity = 0;
    std::uint32_t _lease_headroom = 0;
    chunk_cipher _cipher;
    key_id_pool _key_ids;

    int _meta_fd = -1;
    int _journal_fd = -1;
    int _dir_fd = -1;
    std::uint64_t _meta_txn = 0;
    std::uint64_t _journal_durable = 0;
    std::uint64_t _lease_high = 0; // durable
    std::uint64_t _nonce_high = 0; // durable
    std::uint64_t _base = 0;       // first live seq (segment aligned)
    std::uint64_t _base_durable = 0;
    std::uint64_t _ingested = 0;
    std::uint64_t _ingested_written = 0; // blocks whose chunk page has been staged
    std::uint64_t _ingested_synced = 0;  // blocks whose chunk page was written before a meta
    std::uint64_t _next_lease = 0;
    std::uint64_t _skip_below = 0; // owned seqs below this arriving late expire at once
    std::uint64_t _nonce_next = 0;
    std::uint64_t _commits_done = 0;
    std::uint64_t _available = 0;
    std::uint64_t _tick = 0;
    std::size_t _last_hit = 0; // index into _cache

    std::vector<block_state> _state;              // ring over the live window
    std::vector<std::uint32_t> _segment_consumed; // per segment ring slot
    std::vector<detail::segment> _segments;       // ring: segment number % size
    std::vector<detail::cache_slot> _cache;
    std::unique_ptr<std::byte[]> _cache_bytes;
    std::unique_ptr<std::byte[]> _stage;
    std::vector<std::uint64_t> _stage_chunks;
    std::vector<int> _dirty_fds;
    std::vector<std::byte> _journal_pending;
    std::uint64_t _journal_gen = 0;
    std::uint64_t _next_gen = 1;          // the next compaction attempt's generation
    std::uint64_t _compact_bytes = 0;     // store_config::journal_compact_bytes
    std::uint64_t _compact_retry_at = 0;  // after a failed compaction: not below this size
    std::uint64_t _compact_step = 0;      // store_config::journal_compact_step_bytes
    // A compaction in progress: the next generation's file, its snapshot and how much of it
    // is written, and the bytes of the records committed since, written after the snapshot.
    int _compact_fd = -1;
    std::uint64_t _compact_gen = 0;
    std::vector<std::byte> _compact_data;
    std::size_t _compact_written = 0;
    std::uint64_t _compact_tail = 0;
    std::uint64_t _compact_from = 0;   // the old journal's length at the snapshot
    std::uint64_t _compact_build_us = 0;
    std::uint32_t _compact_commits = 0;
    std::chrono::steady_clock::time_point _compact_started{};
    // The generation a compaction replaced: the other meta slot names it until the next meta
    // write, which removes it.
    std::uint64_t _stale_gen = 0;
    bool _stale_gen_pending = false;
    // The open batch record in _journal_pending (its offset), or npos.
    std::size_t _journal_open = static_cast<std::size_t>(-1);
    std::vector<seq_t> _wipe_pending;
    std::vector<seq_t> _scratch;                // seqs of one key
    std::vector<std::uint64_t> _unlink_pending; // reclaimed segment numbers
    std::vector<detail::reservation> _slots;
    std::vector<std::uint32_t> _free_slots;
    std::uint32_t _slots_high = 0; // one past the highest slot ever used (compaction scans)
    // Open addressing over key IDs: (low 32 bits of the ID's hash) << 32 | (slot + 1), 0
    // empty. Probes compare the stored hash first, so a probe past other keys touches only
    // this array, not their reservations.
    std::vector<std::uint64_t> _index;
    std::uint32_t _reservations = 0;
    bool _meta_dirty = false;
    bool _leased = false; // something was leased since open: commits may raise lease_high
};

} // namespace keyrail::dataplane
