#include "dataplane/store/lease.h"

#include "dataplane/errc.h"
#include "dataplane/store/stream.h"
#include "engine/assert.h"

namespace keyrail::dataplane {

stream* home_lease_authority::find(stream_id id) const noexcept {
    for (stream* s : _streams) {
        if (s->id() == id) {
            return s;
        }
    }
    return nullptr;
}

result<lease> home_lease_authority::grant(stream_id id, std::uint64_t block_count) noexcept {
    stream* s = find(id);
    if (s == nullptr) {
        return fail(errc::unknown_stream);
    }
    return s->grant(block_count);
}

void home_lease_authority::release(const lease& l, seq_t from) noexcept {
    if (stream* s = find(l.stream)) {
        s->release(l, from);
    }
}

lease_server::lease_server(lease_authority& authority, std::span<lease_channel> channels) noexcept
    : _authority(authority), _channels(channels) {
    KEYRAIL_ASSERT(channels.size() <= channels_max, "%zu lease channels", channels.size());
}

std::size_t lease_server::poll() noexcept {
    std::size_t handled = 0;
    for (std::size_t i = 0; i < _channels.size(); ++i) {
        lease_channel& ch = _channels[i];
        if (_holding[i]) {
            if (!ch.grants.try_push(_held[i])) {
                continue; // the client has not drained its grants yet
            }
            _holding[i] = false;
        }
        lease_request req;
        while (!_holding[i] && ch.requests.try_pop(req)) {
            ++handled;
            if (req.block_count == 0) {
                _authority.release(req.returned, req.returned_from);
                continue;
            }
            lease_grant g;
            auto granted = _authority.grant(req.stream, req.block_count);
            if (granted) {
                g.granted = *granted;
            } else {
                g.granted.stream = req.stream;
                g.error = granted.error().value();
            }
            if (!ch.grants.try_push(g)) {
                _held[i] = g;
                _holding[i] = true;
            }
        }
    }
    return handled;
}

lease_client::lease_client(lease_channel& channel, stream_id id, std::uint32_t lease_blocks,
                           std::uint32_t low_water) noexcept
    : _channel(channel), _stream(id), _lease_blocks(lease_blocks), _low_water(low_water) {
    KEYRAIL_ASSERT(lease_blocks > 0, "lease_blocks 0");
}

std::uint64_t lease_client::remaining() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t k = 0; k < _count; ++k) {
        const std::size_t i = (_head + k) % leases_max;
        const lease& l = _leases[i];
        n += _cursor[i] < l.end ? (l.end - _cursor[i] + l.stride - 1) / l.stride : 0;
    }
    return n;
}

void lease_client::maybe_request() noexcept {
    if (_in_flight || _count == leases_max || remaining() >= _low_water) {
        return;
    }
    lease_request req;
    req.stream = _stream;
    req.block_count = _lease_blocks;
    if (_channel.requests.try_push(req)) {
        _in_flight = true;
    }
}

int lease_client::poll() noexcept {
    int last_error = 0;
    lease_grant g;
    while (_channel.grants.try_pop(g)) {
        _in_flight = false;
        if (g.error != 0) {
            last_error = g.error;
            continue;
        }
        KEYRAIL_ASSERT(_count < leases_max, "lease queue overflow");
        const std::size_t i = (_head + _count) % leases_max;
        _leases[i] = g.granted;
        _cursor[i] = g.granted.first;
        ++_count;
    }
    if (last_error == 0) {
        maybe_request();
    }
    return last_error;
}

bool lease_client::next(seq_t& out) noexcept {
    while (_count > 0) {
        const lease& l = _leases[_head];
        seq_t& c = _cursor[_head];
        if (c < l.end) {
            out = c;
            c += l.stride;
            maybe_request();
            return true;
        }
        _head = (_head + 1) % leases_max;
        --_count;
    }
    maybe_request();
    return false;
}

result<void> lease_client::give_back() noexcept {
    while (_count > 0) {
        const lease& l = _leases[_head];
        if (_cursor[_head] < l.end) {
            lease_request req;
            req.stream = _stream;
            req.block_count = 0;
            req.returned = l;
            req.returned_from = _cursor[_head];
            if (!_channel.requests.try_push(req)) {
                return fail(errc::ring_full);
            }
        }
        _head = (_head + 1) % leases_max;
        --_count;
    }
    return {};
}

} // namespace keyrail::dataplane
