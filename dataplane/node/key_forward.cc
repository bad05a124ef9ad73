#include "dataplane/node/key_forward.h"

#include <algorithm>
#include <new>

#include "engine/secure.h"

namespace keyrail::dataplane::node {

forward_pool::forward_pool(const forward_limits& limits)
    : _limits(limits), _calls(std::make_unique<std::unique_ptr<forward_call>[]>(calls_max)) {
    _free.reserve(calls_max);
}

forward_pool::~forward_pool() {
    for (std::uint32_t i = 0; i < _made; ++i) {
        forward_call& c = *_calls[i];
        secure_wipe(c.bytes.get(), c.bytes_used);
    }
}

std::optional<std::uint32_t> forward_pool::acquire() noexcept {
    if (!_free.empty()) {
        const std::uint32_t i = _free.back();
        _free.pop_back();
        return i;
    }
    if (_made >= calls_max) {
        return std::nullopt;
    }
    try {
        auto c = std::make_unique<forward_call>();
        c->ids = std::make_unique<etsi014::key_id[]>(_limits.keys_max);
        c->bytes = std::make_unique<std::byte[]>(_limits.key_bytes_max);
        c->sizes = std::make_unique<std::uint32_t[]>(_limits.keys_max);
        _calls[_made] = std::move(c);
    } catch (const std::bad_alloc&) {
        return std::nullopt;
    }
    return _made++;
}

void forward_pool::release(std::uint32_t index) noexcept {
    forward_call& c = *_calls[index];
    secure_wipe(c.bytes.get(), c.bytes_used);
    // Key IDs are public once answered; wiped anyway, as far as the call used them.
    secure_wipe(c.ids.get(),
                sizeof(etsi014::key_id) * std::min<std::size_t>(c.number, _limits.keys_max));
    c.bytes_used = 0;
    c.error.clear();
    _free.push_back(index);
}

} // namespace keyrail::dataplane::node
