#include "dataplane/node/local_source.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "dataplane/errc.h"
#include "dataplane/etsi014/errc.h"
#include "engine/assert.h"
#include "engine/log.h"
#include "engine/secure.h"

namespace keyrail::dataplane::node {
namespace {

[[nodiscard]] dataplane::key_id to_store(const etsi014::key_id& id) noexcept {
    dataplane::key_id out;
    std::memcpy(out.bytes.data(), id.bytes.data(), out.bytes.size());
    return out;
}

[[nodiscard]] etsi014::key_id to_etsi(const dataplane::key_id& id) noexcept {
    etsi014::key_id out;
    std::memcpy(out.bytes.data(), id.bytes.data(), out.bytes.size());
    return out;
}

// Store errors a request can meet, as the ETSI answer they deserve.
[[nodiscard]] etsi014::errc to_etsi_error(std::error_code ec) noexcept {
    if (ec.category() == dataplane_category()) {
        switch (static_cast<dataplane::errc>(ec.value())) {
        case dataplane::errc::lease_exhausted:
        case dataplane::errc::block_unavailable:
            return etsi014::errc::exhausted;
        case dataplane::errc::key_size_invalid:
            return etsi014::errc::size_unsupported;
        case dataplane::errc::unknown_key:
        case dataplane::errc::already_delivered:
            return etsi014::errc::not_found;
        case dataplane::errc::not_slave:
            return etsi014::errc::unauthorized;
        case dataplane::errc::too_many_slaves:
            return etsi014::errc::too_many_slaves;
        case dataplane::errc::reservations_full:
            return etsi014::errc::reservations_full;
        default:
            break;
        }
    }
    return etsi014::errc::unavailable;
}

} // namespace

local_source::local_source(stream& s, std::unique_ptr<block_source> source,
                           const local_source_options& options) noexcept
    : _stream(s), _source(std::move(source)), _options(options),
      _batch(pump_batch_blocks * s.block_bytes()), _expiry(options.reservations_max),
      _delivered(std::bit_ceil(std::size_t{2} * options.reservations_max)),
      _fresh(options.fresh ? fresh_state::unchecked : fresh_state::settled) {
    KEYRAIL_ASSERT(_source != nullptr, "local_source without a block source");
    KEYRAIL_ASSERT(options.reservations_max > 0, "reservations_max 0");
    KEYRAIL_ASSERT(options.key_expiry_ns > 0, "key_expiry_ns 0");
}

local_source::~local_source() {
    secure_wipe(_batch.data(), _batch.size());
}

bool local_source::append_held() noexcept {
    const std::size_t block_bytes = _stream.block_bytes();
    const std::uint64_t ingested = _stream.status().ingested;
    if (ingested != _held_first) {
        // The store moved without us (a bug elsewhere): appending now would store these
        // bytes under other sequence numbers.
        KEYRAIL_LOG(error, "node",
                    "local source: %zu device blocks from seq %llu but the store is at %llu: "
                    "ingest stopped until restart",
                    _held_blocks, static_cast<unsigned long long>(_held_first),
                    static_cast<unsigned long long>(ingested));
        _halted = true;
        return false;
    }
    const std::size_t bytes = _held_blocks * block_bytes;
    auto appended = _stream.append(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(_batch.data()), bytes));
    if (appended) {
        KEYRAIL_ASSERT(*appended == _held_first, "append at %llu, store was at %llu",
                       static_cast<unsigned long long>(*appended),
                       static_cast<unsigned long long>(_held_first));
        secure_wipe(_batch.data(), bytes);
        _held_first += _held_blocks;
        _held_blocks = 0;
        _refusal_logged = false;
        return true;
    }
    // store_full takes nothing; a seal or write error may have taken a prefix (append copies
    // a block before it advances the ingest mark). Keep exactly the rest.
    const std::uint64_t taken = _stream.status().ingested - _held_first;
    if (taken > _held_blocks) {
        KEYRAIL_LOG(error, "node",
                    "local source: failed append of %zu blocks from seq %llu moved the store by "
                    "%llu: ingest stopped until restart",
                    _held_blocks, static_cast<unsigned long long>(_held_first),
                    static_cast<unsigned long long>(taken));
        _halted = true;
        return false;
    }
    if (taken > 0) {
        const std::size_t taken_bytes = static_cast<std::size_t>(taken) * block_bytes;
        std::memmove(_batch.data(), _batch.data() + taken_bytes, bytes - taken_bytes);
        secure_wipe(_batch.data() + (bytes - taken_bytes), taken_bytes);
        _held_first += taken;
        _held_blocks -= static_cast<std::size_t>(taken);
    }
    if (!_refusal_logged) {
        KEYRAIL_LOG(warn, "node", "local source: store refused %zu blocks from seq %llu (%s): "
                    "held until it has room",
                    _held_blocks, static_cast<unsigned long long>(_held_first),
                    appended.error().message().c_str());
        _refusal_logged = true;
    }
    return false;
}

bool local_source::pump_some(std::uint64_t now_ns, std::size_t blocks_max) noexcept {
    std::size_t appended_blocks = 0;
    while (!_halted && appended_blocks < blocks_max) {
        if (_held_blocks > 0) {
            // A batch the store refused earlier goes first, at the sequence numbers the device
            // gave it.
            const std::size_t held = _held_blocks;
            if (!append_held()) {
                return false;
            }
            appended_blocks += held;
            continue;
        }
        const stream_status st = _stream.status();
        // A link stream counts this node's share (times the number of shares): the peer's
        // unused blocks must not stop the blocks this node serves from arriving (once they fill
        // the store's window, rebalancing lends them to this node). And a peer's reservations
        // of blocks not ingested here yet always get them: otherwise its slave would wait.
        const std::uint64_t held = shared() ? st.owned_available_blocks * _stream.owner().stride
                                            : st.available_blocks;
        std::uint64_t want =
            held < _options.ingest_cap_blocks ? _options.ingest_cap_blocks - held : 0;
        if (_peer_needs_end > st.ingested) {
            want = std::max<std::uint64_t>(want, _peer_needs_end - st.ingested);
            // Both ends' devices deliver the same blocks at the same time; only our ingest
            // lags. A driver that runs on its own clock (sim) is told to catch up.
            _source->deliver_through(_peer_needs_end);
        }
        if (want == 0) {
            return false; // the device holds the rest until keys are consumed
        }
        want = std::min<std::uint64_t>(want, pump_batch_blocks);
        want = std::min<std::uint64_t>(want, blocks_max - appended_blocks);
        const std::uint64_t first = _source->next_sequence();
        if (first != st.ingested) {
            // Blocks under the wrong sequence numbers would be served as two different keys
            // with the same bytes (or skip some): never append them.
            KEYRAIL_LOG(error, "node",
                        "local source: device at seq %llu, store at %llu: ingest stopped until "
                        "restart (the device resumes at the store's mark)",
                        static_cast<unsigned long long>(first),
                        static_cast<unsigned long long>(st.ingested));
            _halted = true;
            return false;
        }
        const std::size_t got = _source->produce(now_ns, _batch, static_cast<std::size_t>(want));
        if (got == 0) {
            return false;
        }
        KEYRAIL_ASSERT(got <= want, "device gave %zu blocks, asked %llu", got,
                       static_cast<unsigned long long>(want));
        _held_first = first;
        _held_blocks = got;
        if (!append_held()) {
            return false;
        }
        appended_blocks += got;
        if (got < want) {
            return false;
        }
    }
    return !_halted;
}

result<void> local_source::commit_now() noexcept {
    if (!_stream.has_pending()) {
        _commit_due = false; // everything is durable already
        return {};
    }
    auto done = _stream.commit();
    if (!done) {
        KEYRAIL_LOG(error, "node", "store commit failed: %s", done.error().message().c_str());
        return fail(done.error());
    }
    _commit_due = false; // whatever waited for the barrier is covered
    return {};
}

source_counts local_source::counts(std::uint64_t now_ns) noexcept {
    // Status is rare and its counts must be exact: take what the device has now.
    (void)pump_some(now_ns, pump_request_blocks_max);
    return {_stream.status().owned_available_blocks, _stream.block_bytes()};
}

result<void> local_source::reserve(std::uint64_t now_ns, const reserve_args& args,
                                   std::span<etsi014::key_id> ids_out,
                                   std::span<std::byte> bytes_out) noexcept {
    auto per_key = blocks_for_key(args.key_bits, _stream.block_bytes());
    if (!per_key) {
        return fail(etsi014::errc::size_unsupported);
    }
    const std::size_t each_bytes = args.key_bits / 8;
    KEYRAIL_ASSERT(ids_out.size() >= args.number, "%zu ids for %u keys", ids_out.size(),
                   args.number);
    KEYRAIL_ASSERT(bytes_out.size() >= args.number * each_bytes, "%zu bytes for %u x %zu",
                   bytes_out.size(), args.number, each_bytes);
    if (_fresh != fresh_state::settled) {
        return fail(etsi014::errc::unavailable); // see check_fresh
    }
    const std::uint64_t needed = std::uint64_t{args.number} * *per_key;
    bool from_grants = false;
    if (needed > _stream.status().owned_available_blocks) {
        // The pump timer fell behind (or the device is slow): take what has arrived by now.
        (void)pump_some(now_ns, pump_request_blocks_max);
        if (needed > _stream.status().owned_available_blocks) {
            // The peer may have lent us part of its share (rebalancing).
            if (needed > granted_blocks()) {
                return fail(etsi014::errc::exhausted);
            }
            from_grants = true;
        }
    }
    // Refuse before touching the store: a partial reservation would cost journal records to
    // undo, which is what a node under a flood of unfetched keys can least afford.
    if (std::uint64_t{_stream.status().reservations} + args.number >
        _options.reservations_max) {
        return fail(etsi014::errc::reservations_full);
    }
    const reserve_request req{args.key_bits, args.master, args.slaves};
    std::error_code failure;
    std::uint32_t done = 0;
    if (from_grants) {
        if (auto g = reserve_granted(args, ids_out, bytes_out, done); !g) {
            failure = g.error();
        }
    }
    for (; !from_grants && done < args.number; ++done) {
        auto r = _stream.reserve(req, bytes_out.subspan(done * each_bytes, each_bytes));
        if (!r) {
            failure = r.error();
            break;
        }
        ids_out[done] = to_etsi(r->id);
    }
    if (failure == dataplane::errc::lease_exhausted &&
        std::uint64_t{args.number - done} * *per_key <= granted_blocks()) {
        // The rest of this node's share lies beyond what the peer has ingested: the rest of
        // the request comes from what the peer lent us.
        failure.clear();
        if (auto g = reserve_granted(args, ids_out, bytes_out, done); !g) {
            failure = g.error();
        }
    }
    if (!failure) {
        if (auto c = commit_or_defer(); !c) {
            failure = c.error();
        } else {
            const std::uint64_t deadline_ns = now_ns + _options.key_expiry_ns;
            bool tell_peer = false;
            for (const sae_id slave : args.slaves) {
                tell_peer = tell_peer || sae_at_peer(slave);
            }
            for (std::uint32_t i = 0; i < args.number; ++i) {
                expiry_push(deadline_ns, to_store(ids_out[i]));
                if (tell_peer) {
                    _outbox.push_back(to_store(ids_out[i]));
                }
            }
            if (_outbox.size() > _options.reservations_max) {
                prune_outbox(); // the link is down: drop what expired meanwhile
            }
            return {};
        }
    }
    // Undo: nothing reserved here may outlive a failed request.
    secure_wipe(bytes_out.first(args.number * each_bytes));
    for (std::uint32_t i = 0; i < done; ++i) {
        (void)_stream.expire_key(to_store(ids_out[i]));
    }
    (void)commit_now();
    if (failure == dataplane::errc::lease_exhausted || failure == dataplane::errc::block_unavailable) {
        // Exhaustion is the client's 503, not a fault: no warning per request.
        KEYRAIL_LOG(debug, "node", "enc_keys of %u keys: %u reserved, then %s", args.number,
                    done, failure.message().c_str());
    } else {
        KEYRAIL_LOG(warn, "node", "enc_keys of %u keys failed after %u: %s", args.number, done,
                    failure.message().c_str());
    }
    return fail(to_etsi_error(failure));
}

result<void> local_source::deliver(std::uint64_t now_ns, sae_id master, sae_id caller,
                                   std::span<const etsi014::key_id> ids,
                                   std::span<std::byte> bytes_out,
                                   std::span<std::uint32_t> sizes_out) noexcept {
    (void)now_ns; // delivery needs no new blocks; expiry runs on its timer
    KEYRAIL_ASSERT(sizes_out.size() >= ids.size(), "%zu sizes for %zu ids", sizes_out.size(),
                   ids.size());
    // Check every key before delivering any, so a request either gets all its keys or
    // changes nothing: each exists, is the master's, names the caller as a slave, and has not
    // been delivered to the caller (earlier in this process, or earlier in this request).
    std::size_t total_bytes = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const dataplane::key_id id = to_store(ids[i]);
        auto view = _stream.find_key(id);
        if (!view || !(view->master == master)) {
            return fail(etsi014::errc::not_found);
        }
        std::uint32_t slave = 0;
        while (slave < view->slave_count && !(view->slaves[slave] == caller)) {
            ++slave;
        }
        if (slave == view->slave_count) {
            return fail(etsi014::errc::unauthorized);
        }
        if (((view->delivered_mask >> slave) & 1u) != 0 || delivered_to(id, slave)) {
            return fail(etsi014::errc::not_found);
        }
        if (!_stream.key_ready(id)) {
            // A peer's key whose blocks this end's driver has not delivered yet.
            return fail(etsi014::errc::pending);
        }
        for (std::size_t j = 0; j < i; ++j) {
            if (to_store(ids[j]).equals(id)) {
                return fail(etsi014::errc::not_found); // the second copy would fail
            }
        }
        total_bytes += view->key_bits / 8;
    }
    if (total_bytes > bytes_out.size()) {
        return fail(etsi014::errc::buffer_too_small);
    }
    std::size_t offset = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const dataplane::key_id id = to_store(ids[i]);
        auto view = _stream.find_key(id); // checked above; nothing in between removes it
        auto d = _stream.deliver(id, caller, bytes_out.subspan(offset));
        if (!d) {
            // Only a multicast key this slave fetched before a restart gets here (this
            // process's deliveries are checked above): the earlier keys of the request are
            // consumed, and the caller is told not_found.
            KEYRAIL_LOG(error, "node",
                        "dec_keys: key %zu of %zu failed after the checks (%s); %zu earlier keys "
                        "of the request were consumed",
                        i + 1, ids.size(), d.error().message().c_str(), i);
            secure_wipe(bytes_out.first(offset));
            (void)commit_now();
            return fail(to_etsi_error(d.error()));
        }
        if (!_stream.find_key(id)) {
            // Every slave has it now (some perhaps before a restart): forget it.
            delivered_erase(id);
        } else if (view) {
            std::uint32_t slave = 0;
            while (slave < view->slave_count && !(view->slaves[slave] == caller)) {
                ++slave;
            }
            delivered_mark(id, slave, view->slave_count);
        }
        sizes_out[i] = d->key_bytes;
        offset += d->key_bytes;
    }
    if (auto c = commit_or_defer(); !c) {
        secure_wipe(bytes_out.first(offset));
        return fail(etsi014::errc::unavailable);
    }
    return {};
}

std::size_t local_source::delivered_find(const dataplane::key_id& id) const noexcept {
    // Key IDs are random (UUIDv4 from RAND_bytes): their first bytes are a good hash.
    std::uint64_t h = 0;
    std::memcpy(&h, id.bytes.data(), sizeof h);
    const std::size_t mask = _delivered.size() - 1;
    for (std::size_t i = static_cast<std::size_t>(h) & mask;; i = (i + 1) & mask) {
        if (!_delivered[i].used || _delivered[i].id.equals(id)) {
            return i; // never full (at most half), so an empty slot ends every probe
        }
    }
}

bool local_source::delivered_to(const dataplane::key_id& id,
                                       std::uint32_t slave_index) const noexcept {
    if (_delivered_count == 0) {
        return false; // the common case: no multicast key half-delivered
    }
    const delivered_entry& e = _delivered[delivered_find(id)];
    return e.used && ((e.mask >> slave_index) & 1u) != 0;
}

void local_source::delivered_mark(const dataplane::key_id& id, std::uint32_t slave_index,
                                         std::uint32_t slave_count) noexcept {
    KEYRAIL_ASSERT(slave_count <= slaves_max, "%u slaves", slave_count);
    KEYRAIL_ASSERT(slave_index < slave_count, "slave %u of %u", slave_index, slave_count);
    delivered_entry& e = _delivered[delivered_find(id)];
    if (!e.used) {
        e = {id, 0, true};
        ++_delivered_count;
    }
    e.mask = static_cast<std::uint8_t>(e.mask | (1u << slave_index));
}

void local_source::delivered_erase(const dataplane::key_id& id) noexcept {
    if (_delivered_count == 0) {
        return;
    }
    const std::size_t mask = _delivered.size() - 1;
    std::size_t hole = delivered_find(id);
    if (!_delivered[hole].used) {
        return;
    }
    _delivered[hole] = {};
    --_delivered_count;
    // Backward-shift deletion: move later entries of the probe run into the hole when their
    // home slot does not lie (cyclically) between the hole and where they sit.
    for (std::size_t i = (hole + 1) & mask; _delivered[i].used; i = (i + 1) & mask) {
        std::uint64_t h = 0;
        std::memcpy(&h, _delivered[i].id.bytes.data(), sizeof h);
        const std::size_t home = static_cast<std::size_t>(h) & mask;
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            _delivered[hole] = _delivered[i];
            _delivered[i] = {};
            hole = i;
        }
    }
}

result<void> local_source::commit() noexcept {
    return commit_now();
}

result<void> local_source::commit_or_defer() noexcept {
    if (_options.commit_at_barrier) {
        _commit_due = true;
        return {};
    }
    return commit_now();
}

result<void> local_source::commit_due() noexcept {
    if (!_commit_due) {
        return {};
    }
    return commit_now(); // on failure still due: the next barrier tries again
}

bool local_source::pump(std::uint64_t now_ns, std::size_t blocks_max) noexcept {
    return pump_some(now_ns, blocks_max);
}

void local_source::expiry_push(std::uint64_t deadline_ns,
                                      const dataplane::key_id& id) noexcept {
    if (_expiry_count == _expiry.size()) {
        expiry_compact();
    }
    // Every live entry names a reservation of the store, which holds at most
    // reservations_max of them including this new one, so compaction leaves room, unless a
    // key ID came back (a peer reserving an ID it voided before: two entries, one key). Then
    // the oldest entry goes: its key (if it is still there) expires now, not later.
    if (_expiry_count == _expiry.size()) {
        const dataplane::key_id oldest = _expiry[_expiry_head].id;
        delivered_erase(oldest);
        if (_stream.expire_key(oldest) && shared() && _voids.size() < _options.reservations_max) {
            _voids.push_back(oldest);
        }
        _expiry_head = (_expiry_head + 1) % _expiry.size();
        --_expiry_count;
    }
    _expiry[(_expiry_head + _expiry_count) % _expiry.size()] = {deadline_ns, id};
    ++_expiry_count;
}

void local_source::expiry_compact() noexcept {
    // Drops the entries of keys already delivered, keeping the order (and so the deadlines
    // sorted). Runs when the queue is full: at most once per reservations_max reservations.
    const std::size_t size = _expiry.size();
    std::size_t kept = 0;
    for (std::size_t i = 0; i < _expiry_count; ++i) {
        const expiry_entry& e = _expiry[(_expiry_head + i) % size];
        if (_stream.find_key(e.id)) {
            _expiry[(_expiry_head + kept) % size] = e;
            ++kept;
        } else {
            delivered_erase(e.id); // gone from the store: its delivery record too
        }
    }
    _expiry_count = kept;
}

bool local_source::expire_due(std::uint64_t now_ns, std::size_t keys_max) noexcept {
    std::size_t expired = 0;
    std::size_t looked = 0;
    while (_expiry_count > 0 && looked < keys_max) {
        const expiry_entry& e = _expiry[_expiry_head];
        if (e.deadline_ns > now_ns) {
            break;
        }
        // The index slot of an entry a few ahead loads while this one expires.
        constexpr std::size_t prefetch_ahead = 8;
        if (prefetch_ahead < _expiry_count) {
            std::size_t ahead = _expiry_head + prefetch_ahead;
            ahead = ahead >= _expiry.size() ? ahead - _expiry.size() : ahead;
            _stream.prefetch_key(_expiry[ahead].id);
        }
        // unknown_key: delivered in time (or voided otherwise); nothing to do.
        delivered_erase(e.id);
        if (_stream.expire_key(e.id)) {
            ++expired;
            if (shared() && _voids.size() < _options.reservations_max) {
                _voids.push_back(e.id); // the peer drops its copy too
            }
        }
        _expiry_head = (_expiry_head + 1) % _expiry.size();
        --_expiry_count;
        ++looked;
    }
    // Also commits what acks staged on an idle node (their blocks are wiped by the commit).
    if (expired > 0 || _stream.has_pending()) {
        if (auto c = commit_now(); c && expired > 0) {
            _expired_total += expired;
            KEYRAIL_LOG(debug, "node", "local source: %zu reserved keys expired unfetched",
                        expired);
        }
    }
    return _expiry_count > 0 && looked == keys_max &&
           _expiry[_expiry_head].deadline_ns <= now_ns;
}

std::size_t local_source::expiry_queued() noexcept {
    return _expiry_count;
}

std::uint64_t local_source::expired_total() noexcept {
    return _expired_total;
}

} // namespace keyrail::dataplane::node
