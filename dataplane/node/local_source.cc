#include "dataplane/node/local_source.h"

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
        default:
            break;
        }
    }
    return etsi014::errc::unavailable;
}

} // namespace

local_source::local_source(stream& s, std::unique_ptr<block_source> source,
                           std::uint64_t ingest_cap_blocks) noexcept
    : _stream(s), _source(std::move(source)), _ingest_cap_blocks(ingest_cap_blocks),
      _batch(pump_batch_blocks * s.block_bytes()) {
    KEYRAIL_ASSERT(_source != nullptr, "local_source without a block source");
}

local_source::~local_source() {
    secure_wipe(_batch.data(), _batch.size());
}

void local_source::pump_locked(std::uint64_t now_ns) noexcept {
    const std::size_t block_bytes = _stream.block_bytes();
    for (;;) {
        const stream_status st = _stream.status();
        if (st.available_blocks >= _ingest_cap_blocks) {
            return; // the device holds the rest until keys are consumed
        }
        const std::uint64_t room = _ingest_cap_blocks - st.available_blocks;
        const std::size_t want =
            room < pump_batch_blocks ? static_cast<std::size_t>(room) : pump_batch_blocks;
        const std::uint64_t first = _source->next_sequence();
        const std::size_t got = _source->produce(now_ns, _batch, want);
        if (got == 0) {
            return;
        }
        const std::size_t bytes = got * block_bytes;
        auto appended = _stream.append(
            std::span<const std::byte>(reinterpret_cast<const std::byte*>(_batch.data()), bytes));
        secure_wipe(_batch.data(), bytes);
        if (!appended) {
            if (!_full_logged) {
                KEYRAIL_LOG(warn, "node", "local source: %zu blocks from seq %llu dropped: %s",
                            got, static_cast<unsigned long long>(first),
                            appended.error().message().c_str());
                _full_logged = true;
            }
            return;
        }
        if (*appended != first) {
            // Only this node reads a local stream, so a gap costs nothing but is worth a line.
            KEYRAIL_LOG(warn, "node", "local source: device seq %llu stored at %llu",
                        static_cast<unsigned long long>(first),
                        static_cast<unsigned long long>(*appended));
        }
        if (got < want) {
            return;
        }
    }
}

result<void> local_source::commit_locked() noexcept {
    if (!_stream.has_pending()) {
        return {};
    }
    auto done = _stream.commit();
    if (!done) {
        KEYRAIL_LOG(error, "node", "store commit failed: %s", done.error().message().c_str());
        return fail(done.error());
    }
    return {};
}

source_counts local_source::counts(std::uint64_t now_ns) noexcept {
    const std::lock_guard guard(_lock);
    pump_locked(now_ns);
    return {_stream.status().owned_available_blocks, _stream.block_bytes()};
}

result<void> local_source::reserve(std::uint64_t now_ns, const reserve_args& args,
                                   std::span<etsi014::key_id> ids_out,
                                   std::span<std::byte> bytes_out) noexcept {
    const std::lock_guard guard(_lock);
    pump_locked(now_ns);
    auto per_key = blocks_for_key(args.key_bits, _stream.block_bytes());
    if (!per_key) {
        return fail(etsi014::errc::size_unsupported);
    }
    const std::size_t each_bytes = args.key_bits / 8;
    KEYRAIL_ASSERT(ids_out.size() >= args.number, "%zu ids for %u keys", ids_out.size(),
                   args.number);
    KEYRAIL_ASSERT(bytes_out.size() >= args.number * each_bytes, "%zu bytes for %u x %zu",
                   bytes_out.size(), args.number, each_bytes);
    const std::uint64_t needed = std::uint64_t{args.number} * *per_key;
    if (needed > _stream.status().owned_available_blocks) {
        return fail(etsi014::errc::exhausted);
    }
    const reserve_request req{args.key_bits, args.master, args.slaves};
    std::error_code failure;
    std::uint32_t done = 0;
    for (; done < args.number; ++done) {
        auto r = _stream.reserve(req, bytes_out.subspan(done * each_bytes, each_bytes));
        if (!r) {
            failure = r.error();
            break;
        }
        ids_out[done] = to_etsi(r->id);
    }
    if (!failure) {
        if (auto c = commit_locked(); !c) {
            failure = c.error();
        } else {
            return {};
        }
    }
    // Undo: nothing reserved here may outlive a failed request.
    secure_wipe(bytes_out.first(args.number * each_bytes));
    for (std::uint32_t i = 0; i < done; ++i) {
        (void)_stream.expire_key(to_store(ids_out[i]));
    }
    (void)commit_locked();
    KEYRAIL_LOG(warn, "node", "enc_keys of %u keys failed after %u: %s", args.number, done,
                failure.message().c_str());
    return fail(to_etsi_error(failure));
}

result<void> local_source::deliver(std::uint64_t now_ns, sae_id master, sae_id caller,
                                   std::span<const etsi014::key_id> ids,
                                   std::span<std::byte> bytes_out,
                                   std::span<std::uint32_t> sizes_out) noexcept {
    const std::lock_guard guard(_lock);
    pump_locked(now_ns);
    KEYRAIL_ASSERT(sizes_out.size() >= ids.size(), "%zu sizes for %zu ids", sizes_out.size(),
                   ids.size());
    // Check every key before delivering any, so a request either gets all its keys or
    // changes nothing.
    std::size_t total_bytes = 0;
    for (const etsi014::key_id& id : ids) {
        auto view = _stream.find_key(to_store(id));
        if (!view || !(view->master == master)) {
            return fail(etsi014::errc::not_found);
        }
        bool named = false;
        for (std::uint32_t s = 0; s < view->slave_count; ++s) {
            named = named || view->slaves[s] == caller;
        }
        if (!named) {
            return fail(etsi014::errc::unauthorized);
        }
        total_bytes += view->key_bits / 8;
    }
    if (total_bytes > bytes_out.size()) {
        return fail(etsi014::errc::buffer_too_small);
    }
    std::size_t offset = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        auto d = _stream.deliver(to_store(ids[i]), caller, bytes_out.subspan(offset));
        if (!d) {
            // A multicast key this slave already fetched: the only way past the checks above.
            secure_wipe(bytes_out.first(offset));
            (void)commit_locked();
            return fail(to_etsi_error(d.error()));
        }
        sizes_out[i] = d->key_bytes;
        offset += d->key_bytes;
    }
    if (auto c = commit_locked(); !c) {
        secure_wipe(bytes_out.first(offset));
        return fail(etsi014::errc::unavailable);
    }
    return {};
}

result<void> local_source::commit() noexcept {
    const std::lock_guard guard(_lock);
    return commit_locked();
}

} // namespace keyrail::dataplane::node
