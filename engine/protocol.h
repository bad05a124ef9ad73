#pragma once
// What a protocol (HTTP/1.1, the peer protocol, a test echo) implements on top of the engine's
// TLS byte streams, and what the engine hands it. No parsing here.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include <openssl/x509.h>

#include "engine/errc.h"
#include "engine/result.h"
#include "engine/ring_matrix.h"
#include "engine/tls.h"

namespace keyrail::engine {

// A connection slot and the generation that tells its successive occupants apart.
struct connection_id {
    std::uint32_t slot = 0;
    std::uint32_t generation = 0;
};

// A per-shard timer: a slot in the shard's preallocated timer table and the generation that
// tells its successive occupants apart, so cancelling a timer that already fired (and whose
// slot was reused) is a no-op.
struct timer_id {
    std::uint32_t slot = 0;
    std::uint32_t generation = 0;
};

class shard_context;

// What a timer calls when it fires. The engine holds only a reference: the handler (a protocol,
// shard hooks, or any object of the layer above) must outlive its timers or cancel them.
// Lives on: the shard that armed the timer; on_timer runs on that shard's thread.
class timer_handler {
public:
    // arg: the word given to add_timer. For a periodic timer, cancel_timer(id) from here stops
    // it; a one-shot timer's id is already stale when this runs.
    virtual void on_timer(shard_context& shard, timer_id id, std::uint64_t arg) noexcept = 0;

protected:
    ~timer_handler() = default;
};

// What protocols and shard hooks may ask of the shard they run on.
// Lives on: its shard; only that shard's thread calls it.
class shard_context {
public:
    [[nodiscard]] virtual std::size_t shard_index() const noexcept = 0;
    [[nodiscard]] virtual std::size_t shard_count() const noexcept = 0;
    // Monotonic time of the current loop iteration.
    [[nodiscard]] virtual std::uint64_t now_ns() const noexcept = 0;
    // Sends message to shard `to` (may be this shard); from_shard is filled in. Fails with
    // errc::ring_full (backpressure: keep it and retry) or errc::bad_shard.
    [[nodiscard]] virtual result<void> post(std::size_t to, shard_message message) noexcept = 0;

    // Timers (io_uring timeout SQEs, a bounded table per shard: server_config::timers_per_shard_max).
    // Fires handler.on_timer(*this, id, arg) on this shard first_ns from now, then every
    // period_ns (0: once). first_ns 0 fires on the next loop turn. Fails with
    // errc::timer_table_full (backpressure: every slot is armed).
    [[nodiscard]] virtual result<timer_id> add_timer(std::uint64_t first_ns,
                                                     std::uint64_t period_ns,
                                                     timer_handler& handler,
                                                     std::uint64_t arg = 0) noexcept {
        (void)first_ns;
        (void)period_ns;
        (void)handler;
        (void)arg;
        return fail(errc::bad_config);
    }
    // Stops a timer; false (a no-op) when it already fired (one-shot) or was cancelled.
    virtual bool cancel_timer(timer_id id) noexcept {
        (void)id;
        return false;
    }

    // Deferred replies. A connection whose on_data returned after_flush::park gets no on_data
    // until it is woken: wake() calls protocol::on_wake(ctx, arg, out) at once, on this thread;
    // the engine then flushes that output and, unless on_wake parks again, goes on with any
    // pipelined input. False (a no-op) when the connection is gone (stale generation) or not
    // parked.
    virtual bool wake(connection_id id, std::uint64_t arg = 0) noexcept {
        (void)id;
        (void)arg;
        return false;
    }
    // Appends bytes to an open connection's output (parked or not) and flushes it from this
    // loop turn. errc::no_such_connection when the handle is stale or the connection is
    // closing; errc::output_full when the output buffer has no room for all of it (nothing is
    // appended: retry after the peer read some).
    [[nodiscard]] virtual result<void> send(connection_id id, std::span<const char> bytes) noexcept {
        (void)id;
        (void)bytes;
        return fail(errc::no_such_connection);
    }

    // Outbound connections (server_config::outbound) homed on this shard: the current
    // connection of outbound `index` once its handshake and identity check passed, else
    // errc::not_connected. `index` is the position in server_config::outbound.
    [[nodiscard]] virtual result<connection_id> outbound_connection(std::size_t index) const noexcept {
        (void)index;
        return fail(errc::not_connected);
    }

protected:
    ~shard_context() = default;
};

// The plaintext output of one on_data call. Bounded: an append that does not fit marks the
// output overflowed and the engine closes the connection with a log line.
// Lives on: the connection's shard, for the duration of one call.
class output {
public:
    output(std::span<char> space, std::size_t& used) noexcept : _space(space), _used(used) {}

    [[nodiscard]] bool append(std::span<const char> bytes) noexcept {
        if (bytes.size() > available()) {
            _overflowed = true;
            return false;
        }
        std::memcpy(_space.data() + _used, bytes.data(), bytes.size());
        _used += bytes.size();
        return true;
    }
    // For writers that format in place: write into free_space(), then commit(n).
    [[nodiscard]] std::span<char> free_space() noexcept { return _space.subspan(_used); }
    void commit(std::size_t bytes) noexcept {
        if (bytes > available()) {
            _overflowed = true;
            return;
        }
        _used += bytes;
    }
    // A writer that found free_space() too small says so.
    void mark_overflowed() noexcept { _overflowed = true; }

    [[nodiscard]] std::size_t available() const noexcept { return _space.size() - _used; }
    [[nodiscard]] std::size_t size() const noexcept { return _used; }
    [[nodiscard]] bool overflowed() const noexcept { return _overflowed; }

private:
    std::span<char> _space;
    std::size_t& _used;
    bool _overflowed = false;
};

// park: the handler consumed a request whose answer comes later, or (consumed_bytes 0) wants
// the same request offered again once woken: a retry. The engine flushes what was output,
// calls no on_data until shard_context::wake(id), and holds the request and idle timeouts
// meanwhile (server_config::park_timeout bounds the wait; the protocol's own deadline should
// be shorter). After the wake, on_data sees every unconsumed byte again, the retried request
// first. A parked connection counts as a request in flight for the drain.
enum class after_flush : std::uint8_t { keep_open, close, park };

// consumed_bytes: how much of `in` the handler used (0 = it needs more bytes). A handler that
// consumed something is called again at once with the rest (pipelining).
struct handler_result {
    std::size_t consumed_bytes = 0;
    after_flush then = after_flush::keep_open;
};

enum class admission : std::uint8_t { accept, refuse };

// One established connection as a protocol sees it. The identity is the verified client
// certificate's; it is the same on a resumed session.
// Lives on: the connection's shard; valid from on_open to the end of on_close.
class connection_context {
public:
    [[nodiscard]] shard_context& shard() const noexcept { return *_shard; }
    [[nodiscard]] connection_id id() const noexcept { return _id; }
    // The listener that accepted it; for an outbound connection, the listener whose protocol
    // it shares (outbound_config::protocol_listener), else no_index.
    [[nodiscard]] std::size_t listener_index() const noexcept { return _listener_index; }
    static constexpr std::size_t no_index = static_cast<std::size_t>(-1);
    // The position in server_config::outbound for a connection this shard opened, else no_index.
    [[nodiscard]] std::size_t outbound_index() const noexcept { return _outbound_index; }
    [[nodiscard]] bool is_outbound() const noexcept { return _outbound_index != no_index; }
    [[nodiscard]] const peer_identity& peer() const noexcept { return *_peer; }
    // The verified client certificate, owned by the TLS session.
    [[nodiscard]] X509* peer_certificate() const noexcept { return _tls->peer_certificate(); }
    [[nodiscard]] bool resumed() const noexcept { return _tls->resumed(); }
    // The TLS exporter of this connection's session (tls_session::export_keying_material).
    [[nodiscard]] bool export_keying_material(std::string_view label,
                                              std::span<std::byte> out) const noexcept {
        return _tls->export_keying_material(label, out);
    }
    // "address:port" of the client (of the server, for an outbound connection).
    [[nodiscard]] const char* remote() const noexcept { return _remote; }

    // The protocol's own per-connection word (a slot index in its own pool, for example).
    std::uint64_t user_data = 0;

private:
    friend class shard;
    shard_context* _shard = nullptr;
    const peer_identity* _peer = nullptr;
    const tls_session* _tls = nullptr;
    const char* _remote = "";
    connection_id _id{};
    std::size_t _listener_index = 0;
    std::size_t _outbound_index = no_index;
};

// Implemented by the layer above, one instance per shard per listener.
// Lives on: its shard.
class protocol {
public:
    virtual ~protocol() = default;
    // After the handshake. refuse closes the connection (with close_notify).
    virtual admission on_open(connection_context& ctx) noexcept {
        (void)ctx;
        return admission::accept;
    }
    // `in` holds every decrypted byte not yet consumed; it never exceeds the input limit.
    virtual handler_result on_data(connection_context& ctx, std::span<const char> in,
                                   output& out) noexcept = 0;
    virtual void on_close(connection_context& ctx) noexcept { (void)ctx; }
    // A parked connection was woken (shard_context::wake): append the deferred answer to out.
    // keep_open resumes on_data with any pipelined input, park keeps waiting, close closes
    // after the flush. Bounded like on_data: an overflowing out closes the connection.
    virtual after_flush on_wake(connection_context& ctx, std::uint64_t arg, output& out) noexcept {
        (void)ctx;
        (void)arg;
        (void)out;
        return after_flush::keep_open;
    }
};

// Per-shard hooks outside any connection: cross-shard messages and the drain.
// Lives on: its shard.
class shard_hooks {
public:
    virtual ~shard_hooks() = default;
    // On the shard thread, before the shard accepts connections.
    virtual void on_start(shard_context& shard) noexcept { (void)shard; }
    virtual void on_message(shard_context& shard, const shard_message& message) noexcept {
        (void)shard;
        (void)message;
    }
    // After every shard has closed its connections, before the server's drain hook: make
    // shard-owned state durable here. Messages still flow until every shard returned.
    virtual void on_drain(shard_context& shard) noexcept { (void)shard; }
    // The output barrier: before the shard hands queued operations to the kernel (once per
    // loop turn, and whenever its submission queue fills), so before any output produced
    // since the last call can leave. Make durable here what that output reports (one group
    // commit for every request of the turn). false: it could not be made durable; every
    // connection with a send queued since the last call is shut down before the submission,
    // so none of that output leaves (the layer above logs why).
    [[nodiscard]] virtual bool before_output(shard_context& shard) noexcept {
        (void)shard;
        return true;
    }
};

} // namespace keyrail::engine
