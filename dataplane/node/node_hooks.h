#pragma once
// Shard hooks of a node. Shard 0 owns the key sources' timers: a pump that appends each
// device's blocks every pump_period (bounded batch), and an expiry sweep every expiry_period
// (bounded count) that voids reservations no slave fetched in time. When a bounded step leaves
// work behind, a one-shot timer continues it on the next loop turn, so the timers keep up with
// any load while no single turn does unbounded work. Every shard answers the node's shard
// messages (node_runtime): flush a link's notices, wake parked dec_keys, and the forwarded key
// calls (key_forward.h): the key shard executes them and answers after its commit. On drain,
// shard 0 cancels its timers and makes the store durable (every connection of every shard is
// closed by then, so nothing races the final commit).
// Lives on: one instance per shard; only shard 0's (the key shard's) has sources and arms
// timers.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "dataplane/node/etsi_protocol.h"
#include "dataplane/node/local_key_service.h"
#include "dataplane/node/local_source.h"
#include "dataplane/node/node_runtime.h"
#include "dataplane/node/peer_protocol.h"
#include "engine/log.h"
#include "engine/protocol.h"

namespace keyrail::dataplane::node {

struct timer_settings {
    std::uint64_t pump_period_ns = 2'000'000;     // 2 ms: ingest lag the status hides
    std::size_t pump_blocks_max = 16384;          // per turn: ~0.5 ms of sealing at worst
    std::uint64_t expiry_period_ns = 100'000'000; // 100 ms: expiry is this late at most
    std::size_t expiry_keys_max = 4096;           // per turn
};

class node_hooks final : public engine::shard_hooks, public engine::timer_handler {
public:
    // sources: the local stream's (if any) and every link's; runtime may be null (no links).
    explicit node_hooks(std::vector<local_source*> sources, node_runtime* runtime = nullptr,
                        const timer_settings& timers = {}) noexcept
        : _sources(std::move(sources)), _runtime(runtime), _timers(timers) {
        std::erase(_sources, nullptr);
    }

    void on_message(engine::shard_context& shard,
                    const engine::shard_message& message) noexcept override {
        if (_runtime == nullptr) {
            return;
        }
        shard_slot& slot = _runtime->slot(shard.shard_index());
        if (message.kind == node_runtime::msg_flush_link && slot.peer != nullptr &&
            message.handle < _runtime->links().size()) {
            slot.peer->flush_link(shard, static_cast<std::size_t>(message.handle));
        } else if (message.kind == node_runtime::msg_wake_dec && slot.etsi != nullptr) {
            slot.etsi->wake_waiters(shard);
        } else if (message.kind == node_runtime::msg_forward && slot.service != nullptr &&
                   shard.shard_index() == node_runtime::key_shard) {
            slot.service->execute_forward(shard, message.from_shard,
                                          static_cast<std::uint32_t>(message.handle));
        } else if (message.kind == node_runtime::msg_forward_done && slot.service != nullptr) {
            slot.service->on_forward_done(shard, static_cast<std::uint32_t>(message.handle));
        }
    }

    void on_start(engine::shard_context& shard) noexcept override {
        if (shard.shard_index() != 0 || _sources.empty()) {
            return;
        }
        _pump = arm(shard, _timers.pump_period_ns, _timers.pump_period_ns, arg_pump);
        _expiry = arm(shard, _timers.expiry_period_ns, _timers.expiry_period_ns, arg_expiry);
    }

    void on_timer(engine::shard_context& shard, engine::timer_id id,
                  std::uint64_t arg) noexcept override {
        (void)id;
        if (arg == arg_forward_retry) {
            _forward_retry_armed = false;
            post_forwards(shard);
            return;
        }
        if (_draining) {
            return;
        }
        const std::uint64_t now_ns = _clock.now_ns();
        if (arg == arg_pump || arg == arg_pump_more) {
            if (arg == arg_pump_more) {
                _pump_more_armed = false;
            }
            bool more = false;
            for (local_source* s : _sources) {
                if (may_ingest(s)) {
                    more = s->pump(now_ns, _timers.pump_blocks_max) || more;
                }
            }
            if (more && !_pump_more_armed) {
                _pump_more_armed = arm(shard, 0, 0, arg_pump_more).has_value();
            }
            if (_runtime != nullptr) {
                // A dec_keys may be waiting for blocks this end's driver had not delivered.
                _runtime->wake_dec_waiters(shard);
            }
            return;
        }
        if (arg == arg_expiry_more) {
            _expiry_more_armed = false;
        }
        bool more = false;
        for (local_source* s : _sources) {
            more = s->expire_due(now_ns, _timers.expiry_keys_max) || more;
        }
        if (_runtime != nullptr) {
            for (std::size_t i = 0; i < _runtime->links().size(); ++i) {
                if (_runtime->links()[i]->source().has_outbound()) {
                    _runtime->request_flush(shard, i); // Voids for what expired
                }
            }
        }
        if (more && !_expiry_more_armed) {
            _expiry_more_armed = arm(shard, 0, 0, arg_expiry_more).has_value();
        }
    }

    // The group commit of everything this turn's answers report (local_source
    // commit_at_barrier): every answer of the turn leaves after it, or not at all.
    // Only the key shard has sources; it answers the calls other shards forwarded after the
    // same commit, so theirs leave after it too.
    bool before_output(engine::shard_context& shard) noexcept override {
        bool ok = true;
        for (local_source* s : _sources) {
            if (auto done = s->commit_due(); !done) {
                ok = false; // logged by the source; the engine closes those connections
            }
        }
        if (_runtime != nullptr && shard.shard_index() == node_runtime::key_shard) {
            if (local_key_service* service = _runtime->slot(shard.shard_index()).service) {
                service->settle_forwards(ok);
                post_forwards(shard);
            }
        }
        return ok;
    }

    void on_drain(engine::shard_context& shard) noexcept override {
        if (shard.shard_index() != 0 || _sources.empty()) {
            return;
        }
        _draining = true;
        if (_pump) {
            (void)shard.cancel_timer(*_pump);
        }
        if (_expiry) {
            (void)shard.cancel_timer(*_expiry);
        }
        for (local_source* s : _sources) {
            if (auto done = s->commit(); !done) {
                KEYRAIL_LOG(error, "node", "drain: store commit failed: %s",
                            done.error().message().c_str());
            }
        }
    }

private:
    // A link's stream takes blocks only while its secret is confirmed with the peer: blocks
    // derived from a wrong secret would be served as keys that differ at the two ends.
    [[nodiscard]] bool may_ingest(const local_source* s) const noexcept {
        if (_runtime != nullptr) {
            for (const peer_link* l : _runtime->links()) {
                if (&l->source() == s) {
                    return l->serving();
                }
            }
        }
        return true;
    }

    // Posts the answers of forwarded calls; a full ring is retried in a millisecond (the
    // calling shard drains it meanwhile).
    void post_forwards(engine::shard_context& shard) noexcept {
        local_key_service* service = _runtime->slot(shard.shard_index()).service;
        if (service != nullptr && !service->post_forwards(shard) && !_forward_retry_armed) {
            _forward_retry_armed = arm(shard, 1'000'000, 0, arg_forward_retry).has_value();
        }
    }

    static constexpr std::uint64_t arg_pump = 1;
    static constexpr std::uint64_t arg_pump_more = 2;
    static constexpr std::uint64_t arg_expiry = 3;
    static constexpr std::uint64_t arg_expiry_more = 4;
    static constexpr std::uint64_t arg_forward_retry = 5;

    std::optional<engine::timer_id> arm(engine::shard_context& shard, std::uint64_t first_ns, std::uint64_t period_ns,
                    std::uint64_t arg) noexcept {
        auto t = shard.add_timer(first_ns, period_ns, *this, arg);
        if (!t) {
            // The table is sized at start; running out is a configuration bug, but the
            // request path still pumps when short and the periodic timers retry.
            KEYRAIL_LOG(error, "node", "local source: timer %llu not armed: %s",
                        static_cast<unsigned long long>(arg), t.error().message().c_str());
            return std::nullopt;
        }
        return *t;
    }

    std::vector<local_source*> _sources;
    node_runtime* _runtime;
    timer_settings _timers;
    monotonic_clock _clock; // the clock reserve() stamps deadlines with
    std::optional<engine::timer_id> _pump;
    std::optional<engine::timer_id> _expiry;
    bool _pump_more_armed = false;
    bool _expiry_more_armed = false;
    bool _forward_retry_armed = false;
    bool _draining = false;
};

} // namespace keyrail::dataplane::node
