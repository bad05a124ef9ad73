#include "dataplane/node/local_key_service.h"

#include <time.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "dataplane/node/node_runtime.h"
#include "dataplane/node/peer_link.h"
#include "engine/assert.h"
#include "engine/log.h"
#include "engine/secure.h"

namespace keyrail::dataplane::node {

std::uint64_t monotonic_clock::now_ns() const noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

using etsi014::errc;

// ---- local_key_service ----

local_key_service::local_key_service(const settings& cfg, local_source* source,
                                     const clock_source& clock, node_runtime* runtime,
                                     std::size_t shard_index)
    : _cfg(cfg), _source(source), _clock(clock), _runtime(runtime), _shard_index(shard_index),
      _call_conn(forward_pool::calls_max, no_conn) {
    if (_runtime != nullptr) {
        _runtime->slot(_shard_index).service = this;
        _pool = &_runtime->pool(_shard_index);
    }
}

local_key_service::~local_key_service() {
    if (_runtime != nullptr) {
        _runtime->slot(_shard_index).service = nullptr;
    }
}

bool local_key_service::on_key_shard() const noexcept {
    return _runtime == nullptr || _shard_index == node_runtime::key_shard;
}

void local_key_service::begin_request(engine::shard_context& shard, engine::connection_id conn,
                                      bool may_wait) noexcept {
    _shard = &shard;
    _conn = conn;
    _may_wait = may_wait;
    _call_index = 0;
    if (!on_key_shard() && conn.slot >= _conns.size()) {
        _conns.resize(conn.slot + 1); // once per connection slot
    }
}

void local_key_service::end_request() noexcept {
    if (on_key_shard() || _conn.slot >= _conns.size()) {
        return;
    }
    conn_calls& c = current();
    KEYRAIL_ASSERT(!c.in_flight, "request answered with a call away");
    if (c.call) {
        _pool->release(*c.call);
        c.call.reset();
    }
    c.recorded = 0;
}

void local_key_service::on_close(std::uint32_t conn_slot) noexcept {
    if (conn_slot >= _conns.size()) {
        return;
    }
    conn_calls& c = _conns[conn_slot];
    if (c.call && !c.in_flight) {
        _pool->release(*c.call);
    } else if (c.call) {
        _call_conn[*c.call] = no_conn; // away: freed when it comes back
    }
    c = conn_calls{};
}

bool local_key_service::forward_in_flight() const noexcept {
    return !on_key_shard() && _conn.slot < _conns.size() && _conns[_conn.slot].in_flight;
}

result<local_key_service::next_call> local_key_service::next(forward_call::op what) noexcept {
    conn_calls& c = current();
    const std::uint32_t k = _call_index++;
    if (k < c.recorded) {
        const call_record& r = c.log[k];
        if (r.what != what) {
            // The same request makes the same calls in the same order; anything else is a bug.
            KEYRAIL_LOG(error, "node", "shard %zu: forwarded call %u replayed as another kind",
                        _shard_index, k);
            return fail(errc::unavailable);
        }
        if (r.error == errc::pending) {
            c.recorded = k; // keys not there yet: the next attempt asks the key shard again
        }
        return next_call{&r, nullptr};
    }
    if (c.in_flight) {
        return fail(errc::pending); // woken before its answer came (a dec_keys deadline)
    }
    if (k != c.recorded || k >= c.log.size()) {
        KEYRAIL_LOG(error, "node", "shard %zu: forwarded call %u out of order", _shard_index, k);
        return fail(errc::unavailable);
    }
    if (!c.call) {
        c.call = _pool->acquire();
        if (!c.call) {
            return fail(errc::unavailable); // calls_max requests away at once
        }
    }
    forward_call& call = _pool->at(*c.call);
    call.what = what;
    call.error.clear();
    return next_call{nullptr, &call};
}

result<void> local_key_service::post() noexcept {
    conn_calls& c = current();
    engine::shard_message m;
    m.kind = node_runtime::msg_forward;
    m.handle = *c.call;
    if (!_shard->post(node_runtime::key_shard, m)) {
        return fail(errc::unavailable); // the ring is full: the key shard is far behind
    }
    c.id = _conn;
    c.in_flight = true;
    _call_conn[*c.call] = _conn.slot;
    return fail(errc::pending);
}

void local_key_service::on_forward_done(engine::shard_context& shard,
                                        std::uint32_t index) noexcept {
    const std::uint32_t slot = index < _call_conn.size() ? _call_conn[index] : no_conn;
    if (slot == no_conn || slot >= _conns.size() || !_conns[slot].in_flight ||
        _conns[slot].call != index) {
        if (_pool->valid(index)) {
            _pool->release(index); // its connection closed meanwhile
        }
        return;
    }
    _call_conn[index] = no_conn;
    conn_calls& c = _conns[slot];
    const forward_call& call = _pool->at(index);
    c.in_flight = false;
    c.log[c.recorded++] = call_record{call.what, call.error, call.counts};
    (void)shard.wake(c.id); // handled again from the start; the record answers
}

local_source* local_key_service::source_of(std::uint32_t link) const noexcept {
    if (link == no_link) {
        return _source;
    }
    if (_runtime == nullptr || link >= _runtime->links().size()) {
        return nullptr;
    }
    return &_runtime->links()[link]->source();
}

void local_key_service::execute_forward(engine::shard_context& shard, std::size_t from,
                                        std::uint32_t index) noexcept {
    KEYRAIL_ASSERT(on_key_shard(), "forwarded call executed on shard %zu", _shard_index);
    if (from >= _runtime->shard_count() || !_runtime->pool(from).valid(index)) {
        KEYRAIL_LOG(error, "node", "forwarded call %u of shard %zu: no such call", index, from);
        return;
    }
    forward_pool& pool = _runtime->pool(from);
    forward_call& call = pool.at(index);
    const forward_limits& lim = pool.limits();
    result<void> r = fail(errc::unavailable);
    switch (call.what) {
    case forward_call::op::counts: {
        local_source* src = source_of(call.link);
        if (src != nullptr) {
            call.counts = src->counts(_clock.now_ns());
            r = {};
        }
        break;
    }
    case forward_call::op::enc: {
        const std::size_t key_bytes = std::size_t{call.key_bits / 8} * call.number;
        if (call.number > lim.keys_max || key_bytes > lim.key_bytes_max ||
            call.slave_count == 0 || call.slave_count > slaves_max) {
            break;
        }
        const reserve_args args{call.key_bits, call.number, call.master,
                                std::span<const sae_id>(call.slaves.data(), call.slave_count)};
        call.bytes_used = key_bytes;
        r = run_enc(&shard, call.link, args, std::span(call.ids.get(), call.number),
                    std::span(call.bytes.get(), key_bytes));
        break;
    }
    case forward_call::op::dec: {
        if (call.number == 0 || call.number > lim.keys_max || call.key_room > lim.key_bytes_max) {
            break;
        }
        r = run_dec(call.caller, call.master, call.may_wait,
                    std::span(call.ids.get(), call.number),
                    std::span(call.bytes.get(), call.key_room),
                    std::span(call.sizes.get(), call.number));
        call.bytes_used = 0;
        for (std::uint32_t i = 0; r && i < call.number; ++i) {
            call.bytes_used += call.sizes[i];
        }
        break;
    }
    }
    call.error = r ? std::error_code{} : r.error();
    if (!r) {
        secure_wipe(call.bytes.get(), call.bytes_used);
    }
    _executed.push_back({from, index});
}

void local_key_service::settle_forwards(bool committed) noexcept {
    for (const done_entry& d : _executed) {
        forward_call& call = _runtime->pool(d.from).at(d.index);
        if (!committed && !call.error && call.what != forward_call::op::counts) {
            secure_wipe(call.bytes.get(), call.bytes_used);
            call.error = make_error_code(errc::unavailable); // nothing of it is durable
        }
        _settled.push_back(d);
    }
    _executed.clear();
}

bool local_key_service::post_forwards(engine::shard_context& shard) noexcept {
    std::size_t sent = 0;
    for (; sent < _settled.size(); ++sent) {
        engine::shard_message m;
        m.kind = node_runtime::msg_forward_done;
        m.handle = _settled[sent].index;
        if (!shard.post(_settled[sent].from, m)) {
            break;
        }
    }
    _settled.erase(_settled.begin(), _settled.begin() + static_cast<std::ptrdiff_t>(sent));
    return _settled.empty();
}

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
        source_counts c;
        if (on_key_shard()) {
            c = r->source->counts(_clock.now_ns());
        } else {
            auto n = next(forward_call::op::counts);
            if (!n) {
                return fail(n.error());
            }
            if (n->call != nullptr) {
                n->call->link = r->link ? static_cast<std::uint32_t>(*r->link) : no_link;
                auto posted = post();
                return fail(posted.error());
            }
            if (n->record->error) {
                return fail(n->record->error);
            }
            c = n->record->counts;
        }
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
    const std::uint32_t link = r->link ? static_cast<std::uint32_t>(*r->link) : no_link;
    const reserve_args args{req.size_bits, req.number, *master, named};
    if (on_key_shard()) {
        return run_enc(_shard, link, args, ids_out, key_bytes_out);
    }
    auto n = next(forward_call::op::enc);
    if (!n) {
        return fail(n.error());
    }
    const std::size_t key_bytes = std::size_t{req.size_bits / 8} * req.number;
    if (n->call != nullptr) {
        forward_call& call = *n->call;
        if (req.number > _pool->limits().keys_max || key_bytes > _pool->limits().key_bytes_max ||
            ids_out.size() < req.number || key_bytes_out.size() < key_bytes) {
            return fail(errc::buffer_too_small); // the handler checked against the same limits
        }
        call.link = link;
        call.key_bits = req.size_bits;
        call.number = req.number;
        call.master = *master;
        std::copy(named.begin(), named.end(), call.slaves.begin());
        call.slave_count = static_cast<std::uint32_t>(named.size());
        return post();
    }
    if (n->record->error) {
        return fail(n->record->error);
    }
    const forward_call& call = _pool->at(*current().call);
    std::copy_n(call.ids.get(), req.number, ids_out.begin());
    std::memcpy(key_bytes_out.data(), call.bytes.get(), key_bytes);
    return {};
}

result<void> local_key_service::run_enc(engine::shard_context* shard, std::uint32_t link,
                                        const reserve_args& args,
                                        std::span<etsi014::key_id> ids,
                                        std::span<std::byte> bytes) noexcept {
    local_source* src = source_of(link);
    if (src == nullptr) {
        return fail(errc::unavailable);
    }
    auto done = src->reserve(_clock.now_ns(), args, ids, bytes);
    if (done && link != no_link && shard != nullptr && _runtime != nullptr) {
        _runtime->request_flush(*shard, link);
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
    if (on_key_shard()) {
        return run_dec(*caller, *master, _may_wait, req.ids, key_bytes_out, key_bytes_each_out);
    }
    auto n = next(forward_call::op::dec);
    if (!n) {
        return fail(n.error());
    }
    const std::size_t count = req.ids.size();
    if (n->call != nullptr) {
        forward_call& call = *n->call;
        if (count > _pool->limits().keys_max || key_bytes_each_out.size() < count) {
            return fail(errc::buffer_too_small);
        }
        call.caller = *caller;
        call.master = *master;
        call.may_wait = _may_wait;
        call.number = static_cast<std::uint32_t>(count);
        std::copy(req.ids.begin(), req.ids.end(), call.ids.get());
        call.key_room = std::min(key_bytes_out.size(), _pool->limits().key_bytes_max);
        return post();
    }
    if (n->record->error) {
        return fail(n->record->error);
    }
    const forward_call& call = _pool->at(*current().call);
    std::size_t total = 0;
    for (std::size_t i = 0; i < count; ++i) {
        key_bytes_each_out[i] = call.sizes[i];
        total += call.sizes[i];
    }
    KEYRAIL_ASSERT(total <= key_bytes_out.size() && total <= call.bytes_used,
                   "forwarded dec_keys: %zu key bytes", total);
    std::memcpy(key_bytes_out.data(), call.bytes.get(), total);
    return {};
}

result<void> local_key_service::run_dec(sae_id caller, sae_id master, bool may_wait,
                                        std::span<const etsi014::key_id> ids,
                                        std::span<std::byte> bytes,
                                        std::span<std::uint32_t> sizes) noexcept {
    const sae_entry& m = _cfg.saes[master.value - 1];
    const std::uint64_t now_ns = _clock.now_ns();
    bool pending = false;
    // Each source either delivers every key or changes nothing; not_found moves on.
    auto attempt = [&](local_source* src) -> std::optional<result<void>> {
        if (src == nullptr) {
            return std::nullopt;
        }
        auto got = src->deliver(now_ns, master, caller, ids, bytes, sizes);
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
    if (may_wait && (pending || neighbour_master)) {
        return fail(errc::pending);
    }
    return fail(errc::not_found);
}

} // namespace keyrail::dataplane::node
