// local_source: the peer side of a link stream. This node reserves keys from its own share and
// answers its master SAEs at once; the reservations are queued here, sent to the peer in
// batched Reserve frames by the peer protocol, and settled by the peer's ReserveAck. The
// peer's own reservations arrive the same way and are persisted here for the slaves homed on
// this node. See dataplane/node/README.md ("Two nodes").
#include <algorithm>
#include <cstring>

#include <openssl/rand.h>

#include "dataplane/errc.h"
#include "dataplane/node/local_source.h"
#include "engine/assert.h"
#include "engine/log.h"
#include "engine/secure.h"

namespace keyrail::dataplane::node {
namespace {

[[nodiscard]] proto::key_id_bytes to_wire(const dataplane::key_id& id) noexcept {
    proto::key_id_bytes out{};
    std::memcpy(out.data(), id.bytes.data(), out.size());
    return out;
}

[[nodiscard]] dataplane::key_id from_wire(const proto::fb::KeyId& id) noexcept {
    dataplane::key_id out;
    const auto* bytes = id.bytes();
    for (std::size_t i = 0; i < out.bytes.size(); ++i) {
        out.bytes[i] = static_cast<std::byte>(bytes->Get(static_cast<flatbuffers::uoffset_t>(i)));
    }
    return out;
}

[[nodiscard]] bool same(const proto::key_id_bytes& a, const dataplane::key_id& b) noexcept {
    return std::memcmp(a.data(), b.bytes.data(), a.size()) == 0;
}

// The store's refusal of a peer reservation, as the status the ack carries.
[[nodiscard]] proto::fb::ReserveStatus to_status(std::error_code ec) noexcept {
    using proto::fb::ReserveStatus;
    if (ec.category() == dataplane_category()) {
        switch (static_cast<dataplane::errc>(ec.value())) {
        case dataplane::errc::key_id_exists:
            return ReserveStatus::duplicate;
        case dataplane::errc::block_unavailable:
            return ReserveStatus::conflict;
        case dataplane::errc::not_peer_owned:
            return ReserveStatus::not_owned;
        case dataplane::errc::reservations_full:
        case dataplane::errc::store_full:
            return ReserveStatus::full;
        default:
            break;
        }
    }
    return ReserveStatus::rejected;
}

} // namespace

bool local_source::sae_at_peer(sae_id id) const noexcept {
    if (!shared() || _options.cfg == nullptr || id.value == 0 ||
        id.value > _options.cfg->saes.size()) {
        return false;
    }
    return _options.cfg->saes[id.value - 1].home_node == _options.peer_node;
}

bool local_source::sae_here(sae_id id) const noexcept {
    if (_options.cfg == nullptr || id.value == 0 || id.value > _options.cfg->saes.size()) {
        return false;
    }
    return _options.cfg->saes[id.value - 1].home == sae_home::local;
}

void local_source::recover(std::uint64_t now_ns) {
    std::vector<dataplane::key_id> ids;
    _stream.key_ids(ids);
    const std::uint64_t deadline_ns = now_ns + _options.key_expiry_ns;
    std::size_t told = 0;
    std::vector<seq_t> seqs(proto::limits::key_blocks_max);
    for (const dataplane::key_id& id : ids) {
        if (auto n = _stream.key_seqs(id, seqs); n && *n > 0) {
            _peer_needs_end = std::max(_peer_needs_end, seqs[*n - 1] + 1);
        }
        // The store keeps no reservation time: a recovered key gets a full expiry from now,
        // so it is late at most by the downtime plus one expiry, never kept for ever.
        expiry_push(deadline_ns, id);
        if (!shared()) {
            continue;
        }
        auto view = _stream.find_key(id);
        if (!view || !sae_here(view->master)) {
            continue; // the peer's key: the peer tells us again if it needs to
        }
        for (std::uint32_t s = 0; s < view->slave_count; ++s) {
            if (((view->delivered_mask >> s) & 1u) == 0 && sae_at_peer(view->slaves[s])) {
                _outbox.push_back(id);
                ++told;
                break;
            }
        }
    }
    if (!ids.empty()) {
        KEYRAIL_LOG(info, "node",
                    "stream %u: %zu reservations recovered (expire in %llu s), %zu to tell "
                    "peer %s again",
                    _stream.id().value, ids.size(),
                    static_cast<unsigned long long>(_options.key_expiry_ns / 1'000'000'000u),
                    told, shared() ? _options.peer_node.c_str() : "-");
    }
}

std::size_t local_source::take_notices(std::size_t keys_max, notice_batch& out) {
    out.keys.clear();
    out.runs.clear();
    out.slaves.clear();
    if (_outbox.empty() || keys_max == 0 || _options.cfg == nullptr ||
        _inflight_keys >= _options.reservations_max) {
        return 0; // nothing to send, or a peer that does not ack: wait for its acks
    }
    if (_commit_due) {
        // A reservation is told to the peer only once it is durable here (another shard's
        // barrier may not have run yet).
        if (auto c = commit_now(); !c) {
            return 0;
        }
    }
    const std::size_t take = std::min(keys_max, _outbox.size());
    // Every view below points into these vectors: size them first so nothing moves.
    out.runs.reserve(take * proto::limits::runs_max);
    out.slaves.reserve(take * proto::limits::slaves_max);
    out.keys.reserve(take);
    out.seqs.resize(proto::limits::key_blocks_max);
    inflight_batch batch;
    batch.batch_id = _next_batch++;
    batch.ids.reserve(take);
    const std::uint32_t stride = _stream.owner().stride;
    const auto& saes = _options.cfg->saes;
    std::size_t used = 0;
    for (; used < take; ++used) {
        const dataplane::key_id& id = _outbox[used];
        auto view = _stream.find_key(id);
        if (!view) {
            continue; // expired or voided since: nothing to tell
        }
        auto n = _stream.key_seqs(id, out.seqs);
        if (!n || *n == 0) {
            continue;
        }
        // Runs of consecutive owned seqs (the store's runs have the stream's stride).
        const std::size_t runs_at = out.runs.size();
        for (std::uint32_t i = 0; i < *n; ++i) {
            const seq_t seq = out.seqs[i];
            if (out.runs.size() > runs_at) {
                proto::seq_run& last = out.runs.back();
                if (last.first + std::uint64_t{last.count} * stride == seq) {
                    ++last.count;
                    continue;
                }
            }
            if (out.runs.size() - runs_at == proto::limits::runs_max) {
                break; // the store never makes keys this fragmented (key_runs_max)
            }
            out.runs.push_back({seq, 1, stride});
        }
        const std::size_t slaves_at = out.slaves.size();
        for (std::uint32_t s = 0; s < view->slave_count; ++s) {
            out.slaves.push_back(saes[view->slaves[s].value - 1].id);
        }
        proto::key_reservation_in k;
        std::memcpy(k.key_id.data(), id.bytes.data(), k.key_id.size());
        k.master_sae = saes[view->master.value - 1].id;
        k.slave_saes = std::span<const std::string_view>(out.slaves.data() + slaves_at,
                                                         out.slaves.size() - slaves_at);
        k.runs = std::span<const proto::seq_run>(out.runs.data() + runs_at,
                                                 out.runs.size() - runs_at);
        k.size_bits = view->key_bits;
        k.expiry_unix_ms = 1; // informational; each end expires on its own clock
        out.keys.push_back(k);
        batch.ids.push_back(id);
    }
    _outbox.erase(_outbox.begin(), _outbox.begin() + static_cast<std::ptrdiff_t>(used));
    if (batch.ids.empty()) {
        return 0;
    }
    out.batch_id = batch.batch_id;
    _inflight_keys += batch.ids.size();
    _inflight.push_back(std::move(batch));
    return out.keys.size();
}

void local_source::requeue(std::uint64_t batch_id) noexcept {
    for (auto it = _inflight.begin(); it != _inflight.end(); ++it) {
        if (it->batch_id == batch_id) {
            _outbox.insert(_outbox.begin(), it->ids.begin(), it->ids.end()); // oldest first
            _inflight_keys -= it->ids.size();
            _inflight.erase(it);
            return;
        }
    }
}

void local_source::requeue_all() noexcept {
    for (auto b = _inflight.rbegin(); b != _inflight.rend(); ++b) {
        _outbox.insert(_outbox.begin(), b->ids.begin(), b->ids.end()); // sent first, told first
    }
    _inflight.clear();
    _inflight_keys = 0;
    if (_outbox.size() > _options.reservations_max) {
        prune_outbox();
    }
}

bool local_source::has_outbound() noexcept {
    return !_outbox.empty() || !_voids.empty();
}

stream_status local_source::stream_state() noexcept {
    return _stream.status();
}

void local_source::serve_peer_slaves(const dataplane::key_id& id) noexcept {
    auto view = _stream.find_key(id);
    if (!view) {
        return;
    }
    for (std::uint32_t s = 0; s < view->slave_count; ++s) {
        if (((view->delivered_mask >> s) & 1u) == 0 && sae_at_peer(view->slaves[s])) {
            // Marks the slave served without copying; the last one wipes the blocks.
            (void)_stream.deliver(id, view->slaves[s], {});
        }
    }
    if (!_stream.find_key(id)) {
        delivered_erase(id); // every slave has it: forget the local deliveries too
    }
}

void local_source::on_ack(std::uint64_t first, std::uint64_t last,
                          std::span<const proto::key_ack_in> exceptions) noexcept {
    std::size_t refused = 0;
    for (auto it = _inflight.begin(); it != _inflight.end();) {
        if (it->batch_id < first || it->batch_id > last) {
            ++it;
            continue;
        }
        for (const dataplane::key_id& id : it->ids) {
            auto status = proto::fb::ReserveStatus::ok;
            for (const proto::key_ack_in& e : exceptions) {
                if (same(e.key_id, id)) {
                    status = e.status;
                    break;
                }
            }
            if (status == proto::fb::ReserveStatus::ok ||
                status == proto::fb::ReserveStatus::duplicate) {
                serve_peer_slaves(id);
            } else if (status == proto::fb::ReserveStatus::conflict) {
                // Its blocks are taken at the peer: after a lost ack this is a key the peer
                // already served (or expired). Either way no slave there gets it from us now.
                serve_peer_slaves(id);
                ++refused;
            } else {
                delivered_erase(id);
                (void)_stream.expire_key(id);
                ++refused;
            }
        }
        _inflight_keys -= it->ids.size();
        it = _inflight.erase(it);
    }
    if (refused > 0) {
        KEYRAIL_LOG(warn, "node", "stream %u: peer %s refused %zu reservations of batches %llu..%llu",
                    _stream.id().value, _options.peer_node.c_str(), refused,
                    static_cast<unsigned long long>(first), static_cast<unsigned long long>(last));
    }
    // No commit of its own: the next request's commit (or the expiry sweep's) carries these
    // records. Nothing here needs to be durable first: after a crash the reservation is told
    // again and the peer's duplicate or conflict settles it the same way.
}

std::size_t local_source::take_voids(std::size_t max, std::vector<proto::key_id_bytes>& out) {
    out.clear();
    const std::size_t take = std::min(max, _voids.size());
    for (std::size_t i = 0; i < take; ++i) {
        out.push_back(to_wire(_voids[_voids.size() - 1 - i]));
    }
    _voids.resize(_voids.size() - take);
    return take;
}

std::uint64_t local_source::durable_through() noexcept {
    return _stream.commits_done();
}

local_source::applied_batch local_source::apply_reserve(std::uint64_t now_ns,
                                                        const proto::fb::Reserve& batch,
                                                        std::vector<proto::key_ack_in>& exceptions) {
    exceptions.clear();
    KEYRAIL_ASSERT(_options.cfg != nullptr, "apply_reserve on a stream without settings");
    const settings& cfg = *_options.cfg;
    std::vector<seq_t>& seqs = _scratch_seqs;
    std::size_t applied = 0;
    const std::uint64_t deadline_ns = now_ns + _options.key_expiry_ns;
    for (const proto::fb::KeyReservation* k : *batch.keys()) {
        const dataplane::key_id id = from_wire(*k->key_id());
        auto refuse = [&](proto::fb::ReserveStatus st) {
            proto::key_ack_in a;
            std::memcpy(a.key_id.data(), id.bytes.data(), a.key_id.size());
            a.status = st;
            exceptions.push_back(a);
        };
        // The master must be the peer's SAE; the slaves kept here are those homed here.
        const auto master = cfg.find_sae(k->master_sae()->string_view());
        if (!master || cfg.saes[*master].home_node != _options.peer_node) {
            refuse(proto::fb::ReserveStatus::rejected);
            continue;
        }
        std::array<sae_id, slaves_max> slaves{};
        std::size_t slave_count = 0;
        for (const flatbuffers::String* name : *k->slave_saes()) {
            const auto s = cfg.find_sae(name->string_view());
            if (s && cfg.saes[*s].home == sae_home::local && slave_count < slaves.size()) {
                slaves[slave_count++] = sae_id{static_cast<std::uint64_t>(*s) + 1};
            }
        }
        if (slave_count == 0) {
            refuse(proto::fb::ReserveStatus::rejected);
            continue;
        }
        // Blocks of the peer's share, or of ours that we granted it (leased away, so the store
        // accepts them; a block of ours not leased away is refused as not_owned).
        seqs.clear();
        for (const proto::fb::SeqRun* r : *k->runs()) {
            for (std::uint32_t i = 0; i < r->count(); ++i) {
                seqs.push_back(r->first() + std::uint64_t{i} * r->stride());
            }
        }
        // A block far beyond what this end has would make it ingest that far at once (under
        // the lock): the peer is not that far ahead unless something is wrong (this end's
        // store was recreated: check_fresh).
        const std::uint64_t reach = _stream.status().ingested + _options.ingest_cap_blocks;
        if (_fresh == fresh_state::refused || (!seqs.empty() && seqs.back() >= reach)) {
            refuse(proto::fb::ReserveStatus::rejected);
            continue;
        }
        const reserve_request req{k->size_bits(), sae_id{static_cast<std::uint64_t>(*master) + 1},
                                  std::span<const sae_id>(slaves.data(), slave_count)};
        auto done = _stream.reserve_specific(id, req, seqs, {});
        if (!done) {
            const auto st = to_status(done.error());
            if (st != proto::fb::ReserveStatus::duplicate) {
                KEYRAIL_LOG(info, "node", "stream %u: peer reservation refused: %s",
                            _stream.id().value, done.error().message().c_str());
            }
            refuse(st);
            continue;
        }
        expiry_push(deadline_ns, id);
        _peer_needs_end = std::max(_peer_needs_end, seqs.back() + 1);
        ++applied;
    }
    if (_peer_needs_end > _stream.status().ingested) {
        (void)pump_some(now_ns, pump_request_blocks_max); // the named blocks, for the slave
    }
    // No commit here: a slave's dec_keys commits these records with its delivery, and the
    // peer protocol's ack timer commits whatever no request did.
    return {applied, _stream.has_pending() ? _stream.next_ticket() : _stream.commits_done()};
}

void local_source::apply_void(const proto::fb::Void& v) noexcept {
    std::size_t dropped = 0;
    for (const proto::fb::KeyId* k : *v.key_ids()) {
        const dataplane::key_id id = from_wire(*k);
        delivered_erase(id);
        if (_stream.expire_key(id)) {
            ++dropped;
        }
    }
    if (dropped > 0) {
        KEYRAIL_LOG(debug, "node", "stream %u: peer voided %zu keys", _stream.id().value, dropped);
        (void)commit_now();
    }
}

} // namespace keyrail::dataplane::node

namespace keyrail::dataplane::node {

void local_source::check_fresh(std::uint64_t peer_ingested_end) noexcept {
    if (_fresh != fresh_state::unchecked) {
        return;
    }
    const std::uint64_t ours = _stream.status().ingested;
    // Both ends of a new link stop ingesting near the cap (each end's share, both shares
    // counted): a new link differs by less than two caps. A history this end forgot shows as
    // more. (A history shorter than that is not caught: the watermark is all we have.)
    if (peer_ingested_end <= ours + 2 * _options.ingest_cap_blocks + 4096) {
        _fresh = fresh_state::settled;
        return;
    }
    _fresh = fresh_state::refused;
    KEYRAIL_LOG(error, "node",
                "stream %u: this end's link stream is new but %s has ingested up to seq %llu "
                "(here %llu): the store that held this link's history is gone, and serving from "
                "it again would repeat old keys. No keys are served on this link (and the "
                "peer's reservations are refused): give the link a new id and a new secret at "
                "both ends, or restore this store",
                _stream.id().value, _options.peer_node.c_str(),
                static_cast<unsigned long long>(peer_ingested_end),
                static_cast<unsigned long long>(ours));
}

void local_source::prune_outbox() noexcept {
    std::erase_if(_outbox, [this](const dataplane::key_id& id) { return !_stream.find_key(id); });
}

std::uint64_t local_source::granted_blocks() const noexcept {
    std::uint64_t n = 0;
    for (const proto::seq_run& r : _grants) {
        n += r.count;
    }
    return n;
}

std::uint64_t local_source::serving_blocks() noexcept {
    return _stream.status().owned_available_blocks + granted_blocks();
}

std::optional<lease> local_source::maybe_grant(std::uint64_t now_ns, std::uint64_t peer_serving,
                                               std::uint64_t low_water) noexcept {
    const std::uint64_t mine = _stream.status().owned_available_blocks;
    constexpr std::uint64_t grant_interval_ns = 1'000'000'000;
    if (peer_serving >= low_water || mine < 2 * std::max(peer_serving, low_water) ||
        (_last_grant_ns != 0 && now_ns - _last_grant_ns < grant_interval_ns) ||
        _fresh != fresh_state::settled) {
        return std::nullopt;
    }
    _last_grant_ns = now_ns;
    constexpr std::uint64_t grant_blocks_max = 1u << 16;
    const std::uint64_t give = std::min((mine - peer_serving) / 2, grant_blocks_max);
    auto l = _stream.grant(give);
    if (!l) {
        KEYRAIL_LOG(warn, "node", "stream %u: grant of %llu blocks to %s failed: %s",
                    _stream.id().value, static_cast<unsigned long long>(give),
                    _options.peer_node.c_str(), l.error().message().c_str());
        return std::nullopt;
    }
    KEYRAIL_LOG(info, "node",
                "stream %u: rebalancing: %llu blocks of this share (seq %llu..%llu) granted to %s, "
                "which serves from %llu",
                _stream.id().value, static_cast<unsigned long long>(l->block_count()),
                static_cast<unsigned long long>(l->first), static_cast<unsigned long long>(l->end),
                _options.peer_node.c_str(), static_cast<unsigned long long>(peer_serving));
    return *l;
}

void local_source::add_grant(std::uint64_t first, std::uint64_t end,
                             std::uint32_t stride) noexcept {
    const ownership own = _stream.owner();
    if (stride != own.stride || own.owns(first) || first >= end) {
        // A peer bug, not an attack (the peer is authenticated): one line per 1000 of them.
        if (_bad_grants++ % 1000 == 0) {
            KEYRAIL_LOG(warn, "node",
                        "stream %u: grant from %s of seq %llu..%llu stride %u is not the "
                        "peer's share: ignored (%llu such grants so far)",
                        _stream.id().value, _options.peer_node.c_str(),
                        static_cast<unsigned long long>(first),
                        static_cast<unsigned long long>(end), stride,
                        static_cast<unsigned long long>(_bad_grants));
        }
        return;
    }
    constexpr std::size_t grants_max = 64; // oldest dropped first: a bound, never reached in use
    if (_grants.size() == grants_max) {
        _grants.erase(_grants.begin());
    }
    const std::uint64_t count = (end - first + stride - 1) / stride;
    _grants.push_back({first, static_cast<std::uint32_t>(std::min<std::uint64_t>(count, UINT32_MAX)),
                       stride});
}

bool local_source::pick_granted(std::uint32_t blocks_needed,
                                       std::span<seq_t> out) noexcept {
    const std::uint64_t ingested = _stream.status().ingested;
    std::uint32_t n = 0;
    // Walk the grants without consuming, then consume what was picked (or passed over as
    // taken): a failed pick changes nothing.
    std::size_t run = 0;
    std::uint64_t seq = _grants.empty() ? 0 : _grants[0].first;
    std::uint32_t left = _grants.empty() ? 0 : _grants[0].count;
    while (n < blocks_needed && run < _grants.size()) {
        if (left == 0) {
            ++run;
            if (run < _grants.size()) {
                seq = _grants[run].first;
                left = _grants[run].count;
            }
            continue;
        }
        if (seq >= ingested) {
            return false; // the rest has not arrived here yet
        }
        if (_stream.state_of(seq) == block_state::available) {
            out[n++] = seq;
        }
        seq += _grants[run].stride;
        --left;
    }
    if (n < blocks_needed) {
        return false;
    }
    // Drop everything up to the last pick.
    _grants.erase(_grants.begin(), _grants.begin() + static_cast<std::ptrdiff_t>(run));
    if (!_grants.empty()) {
        _grants.front().first = seq;
        _grants.front().count = left;
        if (left == 0) {
            _grants.erase(_grants.begin());
        }
    }
    return true;
}

result<void> local_source::reserve_granted(const reserve_args& args,
                                                  std::span<etsi014::key_id> ids_out,
                                                  std::span<std::byte> bytes_out,
                                                  std::uint32_t& done) noexcept {
    auto per_key = blocks_for_key(args.key_bits, _stream.block_bytes());
    if (!per_key) {
        return fail(per_key.error());
    }
    const std::size_t each_bytes = args.key_bits / 8;
    std::vector<seq_t>& seqs = _scratch_seqs;
    seqs.resize(*per_key);
    const reserve_request req{args.key_bits, args.master, args.slaves};
    for (; done < args.number; ++done) {
        if (!pick_granted(*per_key, seqs)) {
            return fail(dataplane::errc::block_unavailable);
        }
        // Not from the store's pool: the key ID is made here, UUIDv4 from the DRBG.
        dataplane::key_id id;
        if (RAND_bytes(reinterpret_cast<unsigned char*>(id.bytes.data()),
                       static_cast<int>(id.bytes.size())) != 1) {
            return fail(dataplane::errc::crypto_failure);
        }
        id.bytes[6] = (id.bytes[6] & std::byte{0x0f}) | std::byte{0x40};
        id.bytes[8] = (id.bytes[8] & std::byte{0x3f}) | std::byte{0x80};
        auto r = _stream.reserve_specific(id, req, seqs,
                                          bytes_out.subspan(done * each_bytes, each_bytes));
        if (!r) {
            return fail(r.error());
        }
        std::memcpy(ids_out[done].bytes.data(), id.bytes.data(), id.bytes.size());
        ++_grants_taken_total;
    }
    return {};
}

} // namespace keyrail::dataplane::node
