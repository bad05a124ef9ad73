#include "dataplane/node/peer_protocol.h"

#include <cstring>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "dataplane/node/local_key_service.h"
#include "engine/log.h"

namespace keyrail::dataplane::node {
namespace {

constexpr std::string_view node_uri_prefix = "urn:keyrail:node:";
constexpr std::uint64_t tick_ns = 10'000'000;  // flush retries
// How long a Reserve batch may wait for a commit that a request makes anyway before the ack
// timer makes its own: acks (and the peer's in-flight window) are that late at most, and a
// Reserve costs no commit of its own while slaves fetch keys.
constexpr std::uint64_t ack_delay_ns = 1'000'000;
// Batches applied and not acked yet, per connection: at 256 keys each, far more than any
// peer sends between two of our commits.
constexpr std::size_t acks_pending_max = 4096;
constexpr std::uint64_t timer_tick = 0;
constexpr std::uint64_t timer_ack = 1;
constexpr std::uint64_t ticks_per_watermark = 10; // every 100 ms: rebalancing reacts
constexpr std::uint64_t ticks_per_ping = 100;     // every second
constexpr std::size_t void_ids_per_frame = 1024;
constexpr std::string_view session_label = "EXPORTER-keyrail-link-confirm";

// The node id in a verified peer certificate (SAN URI urn:keyrail:node:<id>), or empty.
[[nodiscard]] std::string_view node_of(const engine::peer_identity& peer) noexcept {
    for (const std::string& uri : peer.san_uris) {
        if (uri.size() > node_uri_prefix.size() && uri.starts_with(node_uri_prefix)) {
            return std::string_view(uri).substr(node_uri_prefix.size());
        }
    }
    return {};
}

[[nodiscard]] const char* direction(const engine::connection_context& ctx) noexcept {
    return ctx.is_outbound() ? "to" : "from";
}

} // namespace

peer_protocol::peer_protocol(const settings& cfg, node_runtime& runtime, std::size_t shard_index,
                             std::vector<std::size_t> outbound_links, std::size_t frame_bytes_max)
    : _cfg(cfg), _runtime(runtime), _shard_index(shard_index),
      _outbound_links(std::move(outbound_links)), _frame_bytes_max(frame_bytes_max),
      _fbb(proto::builder_bytes) {
    _runtime.slot(shard_index).peer = this;
}

peer_protocol::~peer_protocol() {
    _runtime.slot(_shard_index).peer = nullptr;
}

peer_protocol::conn_state* peer_protocol::state_of(const engine::connection_context& ctx) noexcept {
    const std::uint32_t slot = ctx.id().slot;
    if (slot >= _conns.size() || !_conns[slot].used ||
        _conns[slot].id.generation != ctx.id().generation) {
        return nullptr;
    }
    return &_conns[slot];
}

bool peer_protocol::send_frame(engine::shard_context& shard, engine::connection_id id,
                               proto::frame_bytes frame) noexcept {
    const std::span<const char> bytes(reinterpret_cast<const char*>(frame.data()), frame.size());
    return shard.send(id, bytes).has_value();
}

void peer_protocol::arm_tick(engine::shard_context& shard) noexcept {
    if (_tick_armed) {
        return;
    }
    auto t = shard.add_timer(tick_ns, tick_ns, *this, timer_tick);
    if (!t) {
        KEYRAIL_LOG(error, "node", "shard %zu: peer timer not armed: %s", _shard_index,
                    t.error().message().c_str());
        return;
    }
    _tick_armed = true;
}

engine::admission peer_protocol::on_open(engine::connection_context& ctx) noexcept {
    const std::string_view who = node_of(ctx.peer());
    std::size_t link = 0;
    if (ctx.is_outbound()) {
        if (ctx.outbound_index() >= _outbound_links.size()) {
            return engine::admission::refuse;
        }
        link = _outbound_links[ctx.outbound_index()];
    } else {
        const auto found = _cfg.find_link_to(who);
        if (who.empty() || !found) {
            KEYRAIL_LOG(warn, "node", "shard %zu: %s: peer certificate names no neighbour node "
                        "('%.*s'): refused", _shard_index, ctx.remote(),
                        static_cast<int>(who.size()), who.data());
            return engine::admission::refuse;
        }
        link = *found;
    }
    peer_link& l = *_runtime.links()[link];
    if (who != l.peer_node()) {
        KEYRAIL_LOG(warn, "node", "link '%s': %s: certificate is node '%.*s', expected '%s': "
                    "refused", l.id().c_str(), ctx.remote(), static_cast<int>(who.size()),
                    who.data(), l.peer_node().c_str());
        return engine::admission::refuse;
    }
    const std::uint32_t slot = ctx.id().slot;
    if (slot >= _conns.size()) {
        _conns.resize(slot + 1); // once per slot index, at connection open
    }
    conn_state& st = _conns[slot];
    st = {};
    st.used = true;
    st.link = link;
    st.id = ctx.id();
    if (RAND_bytes(reinterpret_cast<unsigned char*>(st.nonce.data()),
                   static_cast<int>(st.nonce.size())) != 1) {
        KEYRAIL_LOG(error, "node", "link '%s': DRBG failed: connection refused", l.id().c_str());
        st.used = false;
        return engine::admission::refuse;
    }
    if (!ctx.export_keying_material(session_label, st.session)) {
        KEYRAIL_LOG(error, "node", "link '%s': TLS exporter failed: connection refused",
                    l.id().c_str());
        st.used = false;
        return engine::admission::refuse;
    }
    proto::link_confirm_in confirm;
    confirm.link_id = l.id();
    confirm.confirm = l.confirm_value(l.self_node(), st.nonce, st.session);
    proto::hello_in hello;
    hello.node_id = l.self_node();
    hello.nonce = st.nonce;
    hello.links = std::span<const proto::link_confirm_in>(&confirm, 1);
    auto frame = proto::encode(_fbb, hello);
    if (!frame || !send_frame(ctx.shard(), ctx.id(), *frame)) {
        KEYRAIL_LOG(error, "node", "link '%s': Hello not sent: connection refused",
                    l.id().c_str());
        st.used = false;
        return engine::admission::refuse;
    }
    arm_tick(ctx.shard());
    return engine::admission::accept;
}

bool peer_protocol::on_hello(engine::connection_context& ctx, conn_state& st,
                             const proto::fb::Hello& h) noexcept {
    peer_link& l = *_runtime.links()[st.link];
    if (h.node_id()->string_view() != l.peer_node()) {
        KEYRAIL_LOG(warn, "node", "link '%s' %s %s: Hello from node '%s': closing", l.id().c_str(),
                    direction(ctx), l.peer_node().c_str(), h.node_id()->c_str());
        return false;
    }
    st.version = proto::negotiate_version(h.protocol_version_min(), h.protocol_version_max());
    if (st.version == 0) {
        KEYRAIL_LOG(warn, "node", "link '%s' %s %s: no common protocol version (peer %u..%u): "
                    "closing", l.id().c_str(), direction(ctx), l.peer_node().c_str(),
                    h.protocol_version_min(), h.protocol_version_max());
        return false;
    }
    const proto::fb::LinkConfirm* mine = nullptr;
    for (const proto::fb::LinkConfirm* c : *h.links()) {
        if (c->link_id()->string_view() == l.id()) {
            mine = c;
        }
    }
    if (mine == nullptr) {
        KEYRAIL_LOG(warn, "node", "link '%s' %s %s: the peer's Hello does not name this link "
                    "(is it configured there?): closing", l.id().c_str(), direction(ctx),
                    l.peer_node().c_str());
        return false;
    }
    std::array<std::byte, 16> nonce{};
    std::memcpy(nonce.data(), h.nonce()->bytes()->data(), nonce.size());
    const auto expected = l.confirm_value(l.peer_node(), nonce, st.session);
    if (CRYPTO_memcmp(expected.data(), mine->confirm()->bytes()->data(), expected.size()) != 0) {
        KEYRAIL_LOG(error, "node",
                    "link '%s' %s %s: key confirmation mismatch: the two ends hold different "
                    "link secrets; no keys are served on this link until they agree: closing",
                    l.id().c_str(), direction(ctx), l.peer_node().c_str());
        l.mismatched();
        return false;
    }
    st.hello_received = true;
    l.confirmed();
    l.attach(_shard_index, ctx.id());
    // Whatever was in flight on an earlier connection is told again: the peer answers
    // duplicate for what it already has.
    l.source().requeue_all();
    KEYRAIL_LOG(debug, "node", "link '%s' %s %s: key confirmation passed", l.id().c_str(),
                direction(ctx), l.peer_node().c_str());
    send_watermark_and_ping(ctx.shard(), st, true);
    l.flush_queued.store(false, std::memory_order_release);
    flush_link(ctx.shard(), st.link);
    return true;
}

engine::handler_result peer_protocol::on_data(engine::connection_context& ctx,
                                              std::span<const char> in,
                                              engine::output& out) noexcept {
    conn_state* st = state_of(ctx);
    if (st == nullptr || st->persist_failed) {
        return {in.size(), engine::after_flush::close}; // persist_failed: logged by send_acks
    }
    peer_link& l = *_runtime.links()[st->link];
    const proto::decoded d = proto::decode(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(in.data()), in.size()));
    if (d.status == proto::decode_status::need_more) {
        return {};
    }
    const engine::handler_result close{in.size(), engine::after_flush::close};
    if (d.status == proto::decode_status::error) {
        KEYRAIL_LOG(warn, "node", "link '%s' %s %s: bad frame (%s: %.*s): closing",
                    l.id().c_str(), direction(ctx), l.peer_node().c_str(),
                    d.error.message().c_str(), static_cast<int>(d.reason.size()),
                    d.reason.data());
        return close;
    }
    const engine::handler_result next{d.consumed_bytes, engine::after_flush::keep_open};
    if (!st->hello_received) {
        const auto* h = proto::body_as<proto::fb::Hello>(d);
        if (h == nullptr) {
            KEYRAIL_LOG(warn, "node", "link '%s' %s %s: %s before Hello: closing", l.id().c_str(),
                        direction(ctx), l.peer_node().c_str(),
                        proto::fb::EnumNameMessage(d.type));
            return close;
        }
        return on_hello(ctx, *st, *h) ? next : close;
    }
    local_source& src = l.source();
    switch (d.type) {
    case proto::fb::Message::Reserve: {
        const auto* r = proto::body_as<proto::fb::Reserve>(d);
        if (r->link_id()->string_view() != l.id()) {
            KEYRAIL_LOG(warn, "node", "link '%s': Reserve for link '%s': closing", l.id().c_str(),
                        r->link_id()->c_str());
            return close;
        }
        if (st->acks.size() >= acks_pending_max) {
            // The peer sends far ahead of our commits: something is stuck. It resends what
            // was not acked on the next connection.
            KEYRAIL_LOG(error, "node", "link '%s': %zu Reserve batches wait for a commit: closing",
                        l.id().c_str(), st->acks.size());
            return close;
        }
        const auto applied = src.apply_reserve(ctx.shard().now_ns(), *r, _exceptions);
        st->acks.push_back({r->stream(), r->batch_id(), applied.ticket, _exceptions});
        if (!_ack_timer_armed) {
            if (ctx.shard().add_timer(ack_delay_ns, 0, *this, timer_ack)) {
                _ack_timer_armed = true;
            } // else the periodic tick sends the acks
        }
        if (applied.applied > 0) {
            _runtime.wake_dec_waiters(ctx.shard());
        }
        return next;
    }
    case proto::fb::Message::ReserveAck: {
        const auto* a = proto::body_as<proto::fb::ReserveAck>(d);
        if (a->link_id()->string_view() != l.id()) {
            KEYRAIL_LOG(warn, "node", "link '%s': ReserveAck for link '%s': closing",
                        l.id().c_str(), a->link_id()->c_str());
            return close;
        }
        _exceptions.clear();
        if (a->keys() != nullptr) {
            for (const proto::fb::KeyAck* k : *a->keys()) {
                proto::key_ack_in e;
                std::memcpy(e.key_id.data(), k->key_id().bytes()->data(), e.key_id.size());
                e.status = k->status();
                _exceptions.push_back(e);
            }
        }
        src.on_ack(a->batch_first(), a->batch_last(), _exceptions);
        return next;
    }
    case proto::fb::Message::Void: {
        const auto* v = proto::body_as<proto::fb::Void>(d);
        if (v->link_id()->string_view() != l.id()) {
            KEYRAIL_LOG(warn, "node", "link '%s': Void for link '%s': closing", l.id().c_str(),
                        v->link_id()->c_str());
            return close;
        }
        src.apply_void(*v);
        return next;
    }
    case proto::fb::Message::Ping: {
        const auto* p = proto::body_as<proto::fb::Ping>(d);
        proto::pong_in pong{p->nonce(), p->sent_ns(), ctx.shard().now_ns()};
        auto frame = proto::encode(_fbb, pong, st->version);
        if (frame) {
            (void)out.append(std::span<const char>(reinterpret_cast<const char*>(frame->data()),
                                                   frame->size()));
        }
        return next;
    }
    case proto::fb::Message::Pong: {
        const auto* p = proto::body_as<proto::fb::Pong>(d);
        KEYRAIL_LOG(debug, "node", "link '%s': round trip %llu us", l.id().c_str(),
                    static_cast<unsigned long long>((ctx.shard().now_ns() - p->ping_sent_ns()) /
                                                    1000));
        return next;
    }
    case proto::fb::Message::StreamWatermark: {
        const auto* w = proto::body_as<proto::fb::StreamWatermark>(d);
        if (w->link_id()->string_view() != l.id()) {
            KEYRAIL_LOG(warn, "node", "link '%s': StreamWatermark for link '%s': closing",
                        l.id().c_str(), w->link_id()->c_str());
            return close;
        }
        src.check_fresh(w->ingested_end());
        if (!st->watermark_received) {
            // Up once both Hellos passed and the peer's position is known (a new stream checks
            // it before it serves): from here on the link serves at once.
            st->watermark_received = true;
            KEYRAIL_LOG(info, "node", "link '%s' %s %s up (protocol v%u)", l.id().c_str(),
                        direction(ctx), l.peer_node().c_str(), st->version);
        }
        // Rebalancing: a peer whose share runs low gets part of ours, if we have plenty.
        if (auto g = src.maybe_grant(ctx.shard().now_ns(), w->serving_blocks(),
                                     src.grant_low_water())) {
            proto::share_grant_in grant;
            grant.link_id = l.id();
            grant.first = g->first;
            grant.end = g->end;
            grant.stride = g->stride;
            auto frame = proto::encode(_fbb, grant, st->version);
            if (!frame || !out.append(std::span<const char>(
                              reinterpret_cast<const char*>(frame->data()), frame->size()))) {
                KEYRAIL_LOG(warn, "node", "link '%s': ShareGrant not sent: those blocks are lost",
                            l.id().c_str());
            }
        }
        return next;
    }
    case proto::fb::Message::ShareGrant: {
        const auto* g = proto::body_as<proto::fb::ShareGrant>(d);
        if (g->link_id()->string_view() != l.id()) {
            KEYRAIL_LOG(warn, "node", "link '%s': ShareGrant for link '%s': closing",
                        l.id().c_str(), g->link_id()->c_str());
            return close;
        }
        src.add_grant(g->first(), g->end(), g->stride());
        return next;
    }
    case proto::fb::Message::Hello:
        KEYRAIL_LOG(warn, "node", "link '%s': a second Hello: closing", l.id().c_str());
        return close;
    default:
        KEYRAIL_LOG(warn, "node", "link '%s': unexpected %s: closing", l.id().c_str(),
                    proto::fb::EnumNameMessage(d.type));
        return close;
    }
}

void peer_protocol::on_close(engine::connection_context& ctx) noexcept {
    conn_state* st = state_of(ctx);
    if (st == nullptr) {
        return;
    }
    peer_link& l = *_runtime.links()[st->link];
    if (st->hello_received && l.detach(_shard_index, ctx.id())) {
        l.source().requeue_all();
        KEYRAIL_LOG(info, "node", "link '%s' %s %s down", l.id().c_str(), direction(ctx),
                    l.peer_node().c_str());
    }
    *st = {};
}

void peer_protocol::send_watermark_and_ping(engine::shard_context& shard, const conn_state& st,
                                            bool ping) noexcept {
    peer_link& l = *_runtime.links()[st.link];
    const stream_status s = l.source().stream_state();
    const ownership own = l.source().stream_owner();
    proto::watermark_in w;
    w.link_id = l.id();
    w.ingested_end = s.ingested;
    w.reserved_end = s.next_lease;
    w.share_stride = own.stride;
    w.share_offset = own.offset;
    w.serving_blocks = l.source().serving_blocks();
    if (auto frame = proto::encode(_fbb, w, st.version); frame) {
        (void)send_frame(shard, st.id, *frame);
    }
    if (!ping) {
        return;
    }
    proto::ping_in p{++_pings, shard.now_ns()};
    if (auto frame = proto::encode(_fbb, p, st.version); frame) {
        (void)send_frame(shard, st.id, *frame);
    }
}

void peer_protocol::flush_link(engine::shard_context& shard, std::size_t link) noexcept {
    peer_link& l = *_runtime.links()[link];
    l.flush_queued.store(false, std::memory_order_release);
    const link_endpoint at = l.endpoint();
    if (!at.attached || at.shard != _shard_index || at.id.slot >= _conns.size()) {
        return;
    }
    const conn_state& st = _conns[at.id.slot];
    if (!st.used || !st.hello_received || st.id.generation != at.id.generation) {
        return;
    }
    local_source& src = l.source();
    for (;;) {
        const std::size_t n = src.take_notices(_notice_keys_max, _batch);
        if (n == 0) {
            break;
        }
        proto::reserve_in r;
        r.link_id = l.id();
        r.batch_id = _batch.batch_id;
        r.keys = _batch.keys;
        auto frame = proto::encode(_fbb, r, st.version);
        if (frame && frame->size() > _frame_bytes_max && _notice_keys_max > 1) {
            src.requeue(_batch.batch_id);
            _notice_keys_max /= 2; // the peer's input buffer holds whole frames only
            continue;
        }
        if (!frame) {
            KEYRAIL_LOG(error, "node", "link '%s': Reserve not encoded (%s)", l.id().c_str(),
                        frame.error().message().c_str());
            src.requeue(_batch.batch_id);
            return;
        }
        if (!send_frame(shard, st.id, *frame)) {
            src.requeue(_batch.batch_id); // output full: the tick retries
            return;
        }
    }
    for (;;) {
        const std::size_t n = src.take_voids(void_ids_per_frame, _void_ids);
        if (n == 0) {
            break;
        }
        proto::void_in v;
        v.link_id = l.id();
        v.reason = proto::fb::VoidReason::expired;
        v.key_ids = _void_ids;
        auto frame = proto::encode(_fbb, v, st.version);
        if (!frame || !send_frame(shard, st.id, *frame)) {
            return; // dropped: the peer expires them on its own clock as well
        }
    }
}

void peer_protocol::send_acks(engine::shard_context& shard, conn_state& st) noexcept {
    if (st.acks.empty()) {
        return;
    }
    peer_link& l = *_runtime.links()[st.link];
    local_source& src = l.source();
    std::uint64_t durable = src.durable_through();
    if (durable < st.acks.back().ticket) {
        if (auto c = src.commit(); !c) {
            // Not durable: no ack; the peer sends these batches again on the next connection.
            KEYRAIL_LOG(error, "node", "link '%s': %zu Reserve batches not persisted (%s): "
                        "closing", l.id().c_str(), st.acks.size(), c.error().message().c_str());
            st.acks.clear();
            st.persist_failed = true;
            return;
        }
        durable = src.durable_through();
    }
    std::size_t sent = 0;
    while (sent < st.acks.size() && st.acks[sent].ticket <= durable) {
        // Consecutive batches without exceptions go out as one range.
        std::size_t last = sent;
        if (st.acks[sent].exceptions.empty()) {
            while (last + 1 < st.acks.size() && st.acks[last + 1].ticket <= durable &&
                   st.acks[last + 1].exceptions.empty() &&
                   st.acks[last + 1].batch_id == st.acks[last].batch_id + 1) {
                ++last;
            }
        }
        proto::reserve_ack_in ack;
        ack.link_id = l.id();
        ack.stream = st.acks[sent].stream;
        ack.batch_first = st.acks[sent].batch_id;
        ack.batch_last = st.acks[last].batch_id;
        ack.keys = st.acks[sent].exceptions;
        auto frame = proto::encode(_fbb, ack, st.version);
        if (!frame || !send_frame(shard, st.id, *frame)) {
            break; // output full: the next timer or tick retries
        }
        sent = last + 1;
    }
    st.acks.erase(st.acks.begin(), st.acks.begin() + static_cast<std::ptrdiff_t>(sent));
}

void peer_protocol::on_timer(engine::shard_context& shard, engine::timer_id id,
                             std::uint64_t arg) noexcept {
    (void)id;
    // Acks go out on either timer; the ack timer runs again while some still wait.
    bool waiting = false;
    for (conn_state& st : _conns) {
        if (st.used && !st.acks.empty()) {
            send_acks(shard, st);
            waiting = waiting || !st.acks.empty();
        }
    }
    if (arg == timer_ack) {
        _ack_timer_armed = waiting && shard.add_timer(ack_delay_ns, 0, *this, timer_ack);
        return;
    }
    ++_ticks;
    const bool watermark = (_ticks % ticks_per_watermark) == 0;
    const bool ping = (_ticks % ticks_per_ping) == 0;
    for (std::size_t link = 0; link < _runtime.links().size(); ++link) {
        peer_link& l = *_runtime.links()[link];
        const link_endpoint at = l.endpoint();
        if (!at.attached || at.shard != _shard_index) {
            continue;
        }
        if (l.source().has_outbound()) {
            flush_link(shard, link);
        }
        if (watermark && at.id.slot < _conns.size() && _conns[at.id.slot].hello_received) {
            send_watermark_and_ping(shard, _conns[at.id.slot], ping);
        }
    }
}

} // namespace keyrail::dataplane::node
