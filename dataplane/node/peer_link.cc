#include "dataplane/node/peer_link.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "engine/assert.h"
#include "engine/log.h"
#include "engine/secure.h"

namespace keyrail::dataplane::node {
namespace {

constexpr char confirm_label[] = "keyrail-link-confirm";
constexpr char marker_label[] = "keyrail-link-marker";

[[nodiscard]] std::array<std::byte, 32> hmac(std::span<const std::uint8_t> key,
                                             std::span<const std::uint8_t> msg) noexcept {
    std::array<std::byte, 32> out{};
    unsigned int len = 0;
    const unsigned char* done =
        HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), msg.data(), msg.size(),
             reinterpret_cast<unsigned char*>(out.data()), &len);
    KEYRAIL_ASSERT(done != nullptr && len == out.size(), "HMAC-SHA-256 failed");
    return out;
}

} // namespace

peer_link::peer_link(std::string link_id, std::string self_node, std::string peer_node,
                     std::uint64_t rate_bps, local_source& source,
                     std::span<const std::uint8_t> confirmation, std::filesystem::path marker)
    : _id(std::move(link_id)), _self(std::move(self_node)), _peer(std::move(peer_node)),
      _rate_bps(rate_bps), _source(source), _marker(std::move(marker)) {
    KEYRAIL_ASSERT(confirmation.size() <= _confirm_key.size() && !confirmation.empty(),
                   "confirmation of %zu bytes", confirmation.size());
    std::copy(confirmation.begin(), confirmation.end(), _confirm_key.begin());
    _confirm_key_bytes = confirmation.size();
    // The marker holds a value derived from the confirmation, so even the (public)
    // confirmation value is not on disk.
    const std::vector<std::uint8_t> msg(std::begin(marker_label), std::end(marker_label));
    const auto mark = hmac({_confirm_key.data(), _confirm_key_bytes}, msg);
    static constexpr char digits[] = "0123456789abcdef";
    for (const std::byte b : mark) {
        _marker_text += digits[static_cast<unsigned>(b) >> 4];
        _marker_text += digits[static_cast<unsigned>(b) & 15u];
    }
    std::ifstream in(_marker);
    std::string seen;
    if (in >> seen && seen == _marker_text) {
        _trust.store(link_trust::confirmed, std::memory_order_release);
    }
}

peer_link::~peer_link() {
    secure_wipe(_confirm_key.data(), _confirm_key.size());
}

std::array<std::byte, 32> peer_link::confirm_value(std::string_view sender_node,
                                                   std::span<const std::byte, 16> nonce,
                                                   std::span<const std::byte, 32> session) const noexcept {
    // Bounded: ids are at most 128 bytes (proto limits), so this never allocates much.
    std::vector<std::uint8_t> msg(std::begin(confirm_label), std::end(confirm_label));
    msg.insert(msg.end(), _id.begin(), _id.end());
    msg.push_back(0);
    msg.insert(msg.end(), sender_node.begin(), sender_node.end());
    msg.push_back(0);
    for (const std::byte b : nonce) {
        msg.push_back(static_cast<std::uint8_t>(b));
    }
    for (const std::byte b : session) {
        msg.push_back(static_cast<std::uint8_t>(b));
    }
    return hmac({_confirm_key.data(), _confirm_key_bytes}, msg);
}

void peer_link::confirmed() noexcept {
    const link_trust before = _trust.exchange(link_trust::confirmed, std::memory_order_acq_rel);
    if (before == link_trust::confirmed) {
        return;
    }
    // Written once per confirmation after an unconfirmed start: rare, off the request path.
    const std::string tmp = _marker.string() + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0;
    if (ok) {
        const std::string line = _marker_text + "\n";
        ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
             ::fsync(fd) == 0;
        ok = (::close(fd) == 0) && ok;
    }
    if (!ok || ::rename(tmp.c_str(), _marker.c_str()) != 0) {
        KEYRAIL_LOG(warn, "node",
                    "link '%s': confirmation marker '%s' not written (%s): after a restart the "
                    "link serves keys only once the peer is reached again",
                    _id.c_str(), _marker.c_str(), std::strerror(errno));
    }
}

void peer_link::mismatched() noexcept {
    _trust.store(link_trust::mismatch, std::memory_order_release);
    std::error_code ec;
    std::filesystem::remove(_marker, ec);
}

void peer_link::attach(std::size_t shard, engine::connection_id id) noexcept {
    const std::lock_guard guard(_endpoint_lock);
    _endpoint = {true, shard, id};
}

bool peer_link::detach(std::size_t shard, engine::connection_id id) noexcept {
    const std::lock_guard guard(_endpoint_lock);
    if (!_endpoint.attached || _endpoint.shard != shard || _endpoint.id.slot != id.slot ||
        _endpoint.id.generation != id.generation) {
        return false;
    }
    _endpoint = {};
    return true;
}

link_endpoint peer_link::endpoint() const noexcept {
    const std::lock_guard guard(_endpoint_lock);
    return _endpoint;
}

} // namespace keyrail::dataplane::node
