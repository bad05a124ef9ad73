#include "dataplane/node/local_key_service.h"

#include <time.h>

#include "dataplane/node/node_runtime.h"
#include "dataplane/node/peer_link.h"
#include "engine/assert.h"

namespace keyrail::dataplane::node {

std::uint64_t monotonic_clock::now_ns() const noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

using etsi014::errc;

result<sae_id> local_key_service::known_sae(std::string_view id) const noexcept {
    const auto index = _cfg.find_sae(id);
    if (!index) {
        return fail(errc::unknown_sae);
    }
    return sae_id{static_cast<std::uint64_t>(*index) + 1};
}

result<sae_id> local_key_service::local_sae(std::string_view id) const noexcept {
    auto s = known_sae(id);
    if (s && _cfg.saes[s->value - 1].home != sae_home::local) {
        return fail(errc::unauthorized); // a caller homed elsewhere calls its own KME
    }
    return s;
}

result<local_key_service::route> local_key_service::route_to(
    std::span<const sae_id> slaves) const noexcept {
    std::string_view remote;
    for (const sae_id s : slaves) {
        const sae_entry& e = _cfg.saes[s.value - 1];
        if (e.home == sae_home::local) {
            continue;
        }
        if (!remote.empty() && remote != e.home_node) {
            return fail(errc::unavailable); // two neighbours: needs relay
        }
        remote = e.home_node;
    }
    if (remote.empty()) {
        if (_source == nullptr) {
            return fail(errc::unavailable);
        }
        return route{_source, std::nullopt, _cfg.kme_id};
    }
    const auto link = _cfg.find_link_to(remote);
    if (!link || _runtime == nullptr || *link >= _runtime->links().size()) {
        return fail(errc::unavailable); // not a neighbour: needs relay
    }
    peer_link& l = *_runtime->links()[*link];
    if (!l.serving()) {
        return fail(errc::link_unconfirmed);
    }
    return route{&l.source(), link, _cfg.links[*link].peer_node};
}

result<etsi014::status_info> local_key_service::status(std::string_view master_sae_id,
                                                       std::string_view slave_sae_id) noexcept {
    return status_of(master_sae_id, slave_sae_id, true);
}

result<etsi014::status_info> local_key_service::limits(std::string_view master_sae_id,
                                                       std::string_view slave_sae_id) noexcept {
    return status_of(master_sae_id, slave_sae_id, false);
}

result<etsi014::status_info> local_key_service::status_of(std::string_view master_sae_id,
                                                          std::string_view slave_sae_id,
                                                          bool with_counts) noexcept {
    auto master = local_sae(master_sae_id);
    if (!master) {
        // The caller comes from a verified certificate, so this is a configuration change at
        // most; refuse it like any other unknown caller.
        return fail(errc::unauthorized);
    }
    auto slave = known_sae(slave_sae_id);
    if (!slave) {
        return fail(slave.error());
    }
    const sae_id one[] = {*slave};
    auto r = route_to(one);
    if (!r) {
        return fail(r.error());
    }
    etsi014::status_info s;
    if (with_counts) {
        const source_counts c = r->source->counts(_clock.now_ns());
        auto per_key = blocks_for_key(_cfg.key_size_bits, c.block_bytes);
        KEYRAIL_ASSERT(per_key.has_value() && *per_key > 0, "key_size %u with %u-byte blocks",
                       _cfg.key_size_bits, c.block_bytes);
        s.stored_key_count = c.available_blocks / *per_key;
    }
    s.source_kme_id = _cfg.kme_id;
    s.target_kme_id = r->target_kme;
    s.master_sae_id = master_sae_id;
    s.slave_sae_id = slave_sae_id;
    s.key_size_bits = _cfg.key_size_bits;
    s.max_key_count = _cfg.max_key_count;
    s.max_key_per_request = _cfg.max_key_per_request;
    s.max_key_size_bits = _cfg.max_key_size_bits;
    s.min_key_size_bits = _cfg.min_key_size_bits;
    s.max_sae_id_count = _cfg.max_sae_id_count;
    const std::uint64_t rate = r->link ? _runtime->links()[*r->link]->rate_bps()
                                       : _cfg.key_rate_bits_per_s;
    s.key_rate_per_s = rate / _cfg.key_size_bits;
    return s;
}

result<void> local_key_service::enc_keys(const etsi014::enc_request& req,
                                         std::span<etsi014::key_id> ids_out,
                                         std::span<std::byte> key_bytes_out) noexcept {
    auto master = local_sae(req.master_sae_id);
    if (!master) {
        return fail(errc::unauthorized);
    }
    std::array<sae_id, slaves_max> slaves{};
    std::size_t slave_count = 0;
    auto first = known_sae(req.slave_sae_id);
    if (!first) {
        return fail(first.error());
    }
    slaves[slave_count++] = *first;
    if (req.additional_slave_sae_ids.size() > _cfg.max_sae_id_count ||
        req.additional_slave_sae_ids.size() + 1 > slaves_max) {
        return fail(errc::too_many_slaves);
    }
    for (std::string_view extra : req.additional_slave_sae_ids) {
        auto s = known_sae(extra);
        if (!s) {
            return fail(s.error());
        }
        for (std::size_t i = 0; i < slave_count; ++i) {
            if (slaves[i] == *s) {
                return fail(errc::too_many_slaves); // named twice
            }
        }
        slaves[slave_count++] = *s;
    }
    if (req.size_bits < _cfg.min_key_size_bits || req.size_bits > _cfg.max_key_size_bits ||
        req.size_bits % 8 != 0) {
        return fail(errc::size_unsupported);
    }
    if (req.number == 0 || req.number > _cfg.max_key_per_request) {
        return fail(errc::number_unsupported);
    }
    const std::span<const sae_id> named(slaves.data(), slave_count);
    auto r = route_to(named);
    if (!r) {
        return fail(r.error());
    }
    const reserve_args args{req.size_bits, req.number, *master, named};
    auto done = r->source->reserve(_clock.now_ns(), args, ids_out, key_bytes_out);
    if (done && r->link && _shard != nullptr) {
        _runtime->request_flush(*_shard, *r->link);
    }
    return done;
}

result<void> local_key_service::dec_keys(const etsi014::dec_request& req,
                                         std::span<std::byte> key_bytes_out,
                                         std::span<std::uint32_t> key_bytes_each_out) noexcept {
    auto caller = local_sae(req.slave_sae_id);
    if (!caller) {
        return fail(errc::unauthorized);
    }
    auto master = known_sae(req.master_sae_id);
    if (!master) {
        return fail(master.error());
    }
    const sae_entry& m = _cfg.saes[master->value - 1];
    const std::uint64_t now_ns = _clock.now_ns();
    bool pending = false;
    // Each source either delivers every key or changes nothing; not_found moves on.
    auto attempt = [&](local_source* src) -> std::optional<result<void>> {
        if (src == nullptr) {
            return std::nullopt;
        }
        auto got = src->deliver(now_ns, *master, *caller, req.ids, key_bytes_out,
                                key_bytes_each_out);
        if (got) {
            return got;
        }
        if (got.error() == errc::pending) {
            pending = true;
            return std::nullopt;
        }
        if (got.error() == errc::not_found) {
            return std::nullopt;
        }
        return got;
    };
    if (m.home == sae_home::local) {
        if (auto r = attempt(_source)) {
            return *r;
        }
    }
    if (_runtime != nullptr) {
        for (peer_link* l : _runtime->links()) {
            if (!l->serving()) {
                continue; // an unconfirmed secret: its blocks may differ from the peer's
            }
            if (auto r = attempt(&l->source())) {
                return *r;
            }
        }
    }
    // A peer's master: its Reserve may still be on the way. Wait while the caller may.
    const bool neighbour_master = m.home == sae_home::remote && _cfg.find_link_to(m.home_node);
    if (_may_wait && (pending || neighbour_master)) {
        return fail(errc::pending);
    }
    return fail(errc::not_found);
}

} // namespace keyrail::dataplane::node
