#include "dataplane/node/etsi_protocol.h"

#include "dataplane/node/identity.h"
#include "engine/assert.h"
#include "engine/http/response.h"
#include "engine/log.h"
#include "engine/secure.h"

namespace keyrail::dataplane::node {

namespace http = engine::http;

etsi_protocol::etsi_protocol(const settings& cfg, std::unique_ptr<local_key_service> service,
                             const protocol_limits& limits, node_runtime* runtime,
                             std::size_t shard_index)
    : _cfg(cfg), _service(std::move(service)), _runtime(runtime), _shard_index(shard_index),
      _limits(limits), _workspace(limits.workspace),
      _scratch_bytes(_workspace.response_bytes_max()),
      _scratch(std::make_unique<char[]>(_scratch_bytes)) {
    if (_runtime != nullptr) {
        _runtime->slot(_shard_index).etsi = this;
    }
}

etsi_protocol::~etsi_protocol() {
    if (_runtime != nullptr) {
        _runtime->slot(_shard_index).etsi = nullptr;
    }
    secure_wipe(_scratch.get(), _scratch_bytes);
}

void etsi_protocol::end_wait(engine::shard_context& shard, wait_state& w) noexcept {
    if (!w.waiting) {
        return;
    }
    if (w.timer) {
        (void)shard.cancel_timer(*w.timer);
    }
    w.waiting = false;
    w.expired = false;
    w.timer.reset();
    if (_runtime != nullptr) {
        _runtime->slot(_shard_index).dec_waiters.fetch_sub(1, std::memory_order_acq_rel);
    }
}

void etsi_protocol::on_close(engine::connection_context& ctx) noexcept {
    const std::uint32_t slot = ctx.id().slot;
    _service->on_close(slot);
    if (slot < _waits.size()) {
        end_wait(ctx.shard(), _waits[slot]);
        const std::uint32_t token = _waits[slot].token; // a late timer must not match a new wait
        _waits[slot] = {};
        _waits[slot].token = token;
    }
}

void etsi_protocol::on_timer(engine::shard_context& shard, engine::timer_id id,
                             std::uint64_t arg) noexcept {
    (void)id;
    const auto slot = static_cast<std::uint32_t>(arg >> 32);
    const auto token = static_cast<std::uint32_t>(arg);
    if (slot >= _waits.size()) {
        return;
    }
    wait_state& w = _waits[slot];
    if (!w.waiting || w.token != token) {
        return; // answered (or closed) since
    }
    w.timer.reset();
    w.expired = true;
    (void)shard.wake(w.id);
}

void etsi_protocol::wake_waiters(engine::shard_context& shard) noexcept {
    for (const wait_state& w : _waits) {
        if (w.waiting) {
            (void)shard.wake(w.id); // handled again from the ready list, not from here
        }
    }
}

engine::admission etsi_protocol::on_open(engine::connection_context& ctx) noexcept {
    const identity_outcome who = derive_sae(_cfg, ctx.peer());
    if (!who.ok) {
        // Logged once here; every request of this connection is then answered 401.
        KEYRAIL_LOG(warn, "node", "shard %zu: %s: no valid SAE ID: %s ('%s'); answering 401",
                    ctx.shard().shard_index(), ctx.remote(), who.reason, who.detail.data());
        ctx.user_data = 0;
        return engine::admission::accept;
    }
    ctx.user_data = static_cast<std::uint64_t>(who.sae_index) + 1;
    KEYRAIL_LOG(debug, "node", "shard %zu: %s: SAE '%s'", ctx.shard().shard_index(), ctx.remote(),
                who.detail.data());
    return engine::admission::accept;
}

engine::handler_result etsi_protocol::on_data(engine::connection_context& ctx,
                                              std::span<const char> in,
                                              engine::output& out) noexcept {
    const http::parse_result parsed = http::parse(in, _request, _limits.http);
    if (parsed.status == http::parse_status::need_more) {
        if (parsed.send_continue && (ctx.user_data & continue_sent) == 0) {
            auto n = http::write_continue(out.free_space());
            if (!n) {
                out.mark_overflowed();
                return {};
            }
            out.commit(*n);
            ctx.user_data |= continue_sent;
        }
        return {};
    }
    ctx.user_data &= ~continue_sent;
    if (parsed.status == http::parse_status::error) {
        KEYRAIL_LOG(info, "node", "shard %zu: %s: bad request (%d %.*s), closing",
                    ctx.shard().shard_index(), ctx.remote(), parsed.http_status,
                    static_cast<int>(parsed.reason.size()), parsed.reason.data());
        auto n = http::write_parse_error(out.free_space(), parsed);
        if (!n) {
            out.mark_overflowed();
        } else {
            out.commit(*n);
        }
        return {in.size(), engine::after_flush::close};
    }

    const engine::after_flush then = _request.conn == http::connection::close
                                         ? engine::after_flush::close
                                         : engine::after_flush::keep_open;
    const std::uint64_t sae = ctx.user_data & sae_mask;
    if (sae == 0) {
        const http::response_head head{401, {}, 0, _request.conn, {}};
        auto n = http::write_response(out.free_space(), head, {});
        if (!n) {
            out.mark_overflowed();
        } else {
            out.commit(*n);
        }
        return {parsed.consumed_bytes, then};
    }
    const std::string_view caller = _cfg.saes[static_cast<std::size_t>(sae - 1)].id;
    // Straight into the engine's output when the largest answer fits there (the engine wipes
    // it once TLS took it); else into the scratch buffer, copied and wiped below.
    const bool in_place = out.available() >= _scratch_bytes;
    const std::span<char> scratch = in_place ? out.free_space().first(_scratch_bytes)
                                             : std::span<char>(_scratch.get(), _scratch_bytes);
    const std::uint32_t slot = ctx.id().slot;
    if (slot >= _waits.size()) {
        _waits.resize(slot + 1); // once per slot index
    }
    wait_state& w = _waits[slot];
    const bool may_wait = _runtime != nullptr && _cfg.dec_keys_wait_ms > 0 && !w.expired;
    _service->begin_request(ctx.shard(), ctx.id(), may_wait);
    etsi014::handle_result r = etsi014::handle(_request, caller, *_service, _workspace, scratch);
    if (r.retry && _service->forward_in_flight()) {
        // A key call went to the key shard: its answer wakes the connection, and the request
        // is handled again (a dec_keys wait, if any, keeps its deadline meanwhile).
        return {0, engine::after_flush::park};
    }
    if (r.retry) {
        if (!w.waiting) {
            w.waiting = true;
            w.expired = false;
            w.id = ctx.id();
            ++w.token;
            const std::uint64_t arg = (std::uint64_t{slot} << 32) | w.token;
            auto t = ctx.shard().add_timer(std::uint64_t{_cfg.dec_keys_wait_ms} * 1'000'000u, 0,
                                           *this, arg);
            _runtime->slot(_shard_index).dec_waiters.fetch_add(1, std::memory_order_acq_rel);
            if (t) {
                w.timer = *t;
            } else {
                w.expired = true; // no timer to end the wait: answer now
            }
        }
        if (!w.expired) {
            return {0, engine::after_flush::park}; // offered again on the wake
        }
        _service->begin_request(ctx.shard(), ctx.id(), false);
        r = etsi014::handle(_request, caller, *_service, _workspace, scratch);
        if (r.retry) {
            // Only a forwarded call answers pending once the wait is over: it is away.
            KEYRAIL_ASSERT(_service->forward_in_flight(), "dec_keys pending after its wait");
            return {0, engine::after_flush::park};
        }
    }
    end_wait(ctx.shard(), w);
    _service->end_request();
    if (in_place) {
        out.commit(r.response_bytes);
    } else {
        const bool copied = out.append(scratch.first(r.response_bytes));
        secure_wipe(scratch.data(), r.response_bytes);
        if (!copied) {
            return {parsed.consumed_bytes, engine::after_flush::close};
        }
    }
    if (r.http_status >= 500) {
        // Under overload every request may get a 5xx: one line per second per shard, with the
        // count of the others, instead of a line (and a write to stderr) per request.
        const std::uint64_t now_ns = ctx.shard().now_ns();
        if (now_ns >= _server_error_log_ns) {
            KEYRAIL_LOG(info, "node",
                        "shard %zu: %s: SAE '%.*s' answered %d (%llu more 5xx answers not "
                        "logged in the last second)",
                        ctx.shard().shard_index(), ctx.remote(), static_cast<int>(caller.size()),
                        caller.data(), r.http_status,
                        static_cast<unsigned long long>(_server_errors_unlogged));
            _server_errors_unlogged = 0;
            _server_error_log_ns = now_ns + server_error_log_interval_ns;
        } else {
            ++_server_errors_unlogged;
        }
    }
    return {parsed.consumed_bytes, then};
}

} // namespace keyrail::dataplane::node
