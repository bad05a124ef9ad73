#include "drivers/sim/sim_link.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "engine/assert.h"
#include "engine/log.h"

namespace keyrail::drivers::sim {
namespace {

__extension__ using u128 = unsigned __int128;

constexpr std::uint64_t ns_per_s = 1'000'000'000;
// Larger blocks than any store uses; bounds the int casts into OpenSSL.
constexpr std::size_t block_bytes_max = 1 << 20;
constexpr std::string_view hkdf_info_prefix = "keyrail sim link";
constexpr std::string_view confirm_label = "keyrail sim confirm";

[[nodiscard]] std::uint64_t saturate(u128 v) noexcept {
    return v > std::numeric_limits<std::uint64_t>::max() ? std::numeric_limits<std::uint64_t>::max()
                                                         : static_cast<std::uint64_t>(v);
}

// splitmix64: a well-mixed, stateless hash, so burst k's jitter needs no stored state.
[[nodiscard]] std::uint64_t mix(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void put_be64(std::uint8_t *out, std::uint64_t v) noexcept {
    for (int i = 7; i >= 0; --i) {
        out[i] = static_cast<std::uint8_t>(v & 0xff);
        v >>= 8;
    }
}

void log_openssl(const char *what) noexcept {
    for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
        std::array<char, 256> text{};
        ERR_error_string_n(e, text.data(), text.size());
        KEYRAIL_LOG(error, "sim", "%s: %s", what, text.data());
    }
}

[[nodiscard]] std::error_code crypto_failure() noexcept {
    return std::make_error_code(std::errc::not_supported);
}

// okm = HKDF-SHA256(secret, info = "keyrail sim link" || link_id), 64 bytes.
[[nodiscard]] bool derive(std::span<const std::uint8_t> secret, const std::string &link_id,
                          std::span<std::uint8_t, 64> okm) noexcept {
    EVP_KDF *kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
    if (kdf == nullptr) {
        log_openssl("EVP_KDF_fetch(HKDF)");
        return false;
    }
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);
    if (ctx == nullptr) {
        log_openssl("EVP_KDF_CTX_new");
        return false;
    }
    std::array<char, 128> info{};
    KEYRAIL_ASSERT(hkdf_info_prefix.size() + link_id.size() <= info.size(), "link id too long: %zu",
                   link_id.size());
    std::memcpy(info.data(), hkdf_info_prefix.data(), hkdf_info_prefix.size());
    std::memcpy(info.data() + hkdf_info_prefix.size(), link_id.data(), link_id.size());
    char digest[] = "SHA256";
    // OSSL_PARAM takes non-const pointers; OpenSSL only reads these.
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                          const_cast<std::uint8_t *>(secret.data()), secret.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info.data(),
                                          hkdf_info_prefix.size() + link_id.size()),
        OSSL_PARAM_construct_end(),
    };
    const bool ok = EVP_KDF_derive(ctx, okm.data(), okm.size(), params) == 1;
    if (!ok) {
        log_openssl("EVP_KDF_derive(HKDF)");
    }
    EVP_KDF_CTX_free(ctx);
    return ok;
}

} // namespace

result<sim_link> sim_link::create(const sim_link_config &config) noexcept {
    KEYRAIL_ASSERT(config.secret.size() >= secret_bytes_min, "secret of %zu bytes",
                   config.secret.size());
    KEYRAIL_ASSERT(config.block_bytes > 0, "block_bytes %zu", config.block_bytes);
    KEYRAIL_ASSERT(config.block_bytes <= block_bytes_max, "block_bytes %zu", config.block_bytes);
    KEYRAIL_ASSERT(config.rate_bps > 0, "rate_bps %llu",
                   static_cast<unsigned long long>(config.rate_bps));
    KEYRAIL_ASSERT(config.burst_blocks > 0, "burst_blocks %u", config.burst_blocks);
    KEYRAIL_ASSERT(config.jitter_percent <= 100, "jitter_percent %u", config.jitter_percent);

    sim_link link;
    link._block_bytes = config.block_bytes;
    link._rate_bps = config.rate_bps;
    link._burst_blocks = config.burst_blocks;
    link._seed = config.seed;
    link._start_ns = config.start_ns;
    link._next_sequence = config.first_sequence;
    // Half the jitter window is at most half an interval, so bursts never overtake each other.
    link._jitter_half_ns = link.burst_interval_ns() * config.jitter_percent / 200;

    std::array<std::uint8_t, 64> okm{};
    if (!derive(config.secret, config.link_id, okm)) {
        return fail(crypto_failure());
    }
    std::memcpy(link._enc_key.data(), okm.data(), 32);
    std::memcpy(link._mac_key.data(), okm.data() + 32, 32);
    OPENSSL_cleanse(okm.data(), okm.size());

    std::array<std::uint8_t, confirm_label.size() + 8> message{};
    std::memcpy(message.data(), confirm_label.data(), confirm_label.size());
    put_be64(message.data() + confirm_label.size(), config.block_bytes);
    std::array<std::uint8_t, 32> mac{};
    std::size_t mac_bytes = 0;
    if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, link._mac_key.data(),
                  link._mac_key.size(), message.data(), message.size(), mac.data(), mac.size(),
                  &mac_bytes) == nullptr) {
        log_openssl("EVP_Q_mac(HMAC-SHA256)");
        return fail(crypto_failure());
    }
    KEYRAIL_ASSERT(mac_bytes == mac.size(), "HMAC of %zu bytes", mac_bytes);
    std::copy_n(mac.begin(), confirmation_bytes, link._confirmation.begin());

    // AES-CTR with counter block (sequence, lane), computed as AES-ECB over the counter
    // blocks so that one cipher call serves many blocks.
    link._cipher = EVP_CIPHER_CTX_new();
    EVP_CIPHER *aes = EVP_CIPHER_fetch(nullptr, "AES-256-ECB", nullptr);
    const bool keyed =
        link._cipher != nullptr && aes != nullptr &&
        EVP_EncryptInit_ex2(link._cipher, aes, link._enc_key.data(), nullptr, nullptr) == 1 &&
        EVP_CIPHER_CTX_set_padding(link._cipher, 0) == 1;
    EVP_CIPHER_free(aes); // the context holds its own reference
    if (!keyed) {
        log_openssl("AES-256-ECB");
        return fail(crypto_failure());
    }
    return link;
}

sim_link::sim_link(sim_link &&other) noexcept
    : _enc_key(other._enc_key), _mac_key(other._mac_key), _confirmation(other._confirmation),
      _cipher(std::exchange(other._cipher, nullptr)), _block_bytes(other._block_bytes),
      _rate_bps(other._rate_bps), _burst_blocks(other._burst_blocks),
      _jitter_half_ns(other._jitter_half_ns), _seed(other._seed), _start_ns(other._start_ns),
      _bursts_arrived(other._bursts_arrived), _pending_blocks(other._pending_blocks),
      _next_sequence(other._next_sequence) {
    other.wipe();
}

sim_link &sim_link::operator=(sim_link &&other) noexcept {
    if (this != &other) {
        wipe();
        _enc_key = other._enc_key;
        _mac_key = other._mac_key;
        _confirmation = other._confirmation;
        _cipher = std::exchange(other._cipher, nullptr);
        _block_bytes = other._block_bytes;
        _rate_bps = other._rate_bps;
        _burst_blocks = other._burst_blocks;
        _jitter_half_ns = other._jitter_half_ns;
        _seed = other._seed;
        _start_ns = other._start_ns;
        _bursts_arrived = other._bursts_arrived;
        _pending_blocks = other._pending_blocks;
        _next_sequence = other._next_sequence;
        other.wipe();
    }
    return *this;
}

sim_link::~sim_link() {
    wipe();
}

void sim_link::wipe() noexcept {
    OPENSSL_cleanse(_enc_key.data(), _enc_key.size());
    OPENSSL_cleanse(_mac_key.data(), _mac_key.size());
    OPENSSL_cleanse(_confirmation.data(), _confirmation.size());
    // EVP_CIPHER_CTX_free cleanses the expanded AES key schedule before freeing it.
    EVP_CIPHER_CTX_free(_cipher);
    _cipher = nullptr;
}

std::uint64_t sim_link::burst_interval_ns() const noexcept {
    const u128 burst_bits = u128{_burst_blocks} * _block_bytes * 8;
    return saturate(burst_bits * ns_per_s / _rate_bps);
}

std::uint64_t sim_link::nominal_bursts_by(std::uint64_t t) const noexcept {
    if (t < _start_ns) {
        return 0;
    }
    const u128 burst_bits = u128{_burst_blocks} * _block_bytes * 8;
    return saturate(u128{t - _start_ns} * _rate_bps / (burst_bits * ns_per_s));
}

std::uint64_t sim_link::burst_time_ns(std::uint64_t k) const noexcept {
    // Rounded up, so burst k is nominally due exactly when nominal_bursts_by() counts it.
    const u128 burst_bits = u128{_burst_blocks} * _block_bytes * 8;
    const u128 num = (u128{k} + 1) * burst_bits * ns_per_s;
    const std::uint64_t nominal = saturate(u128{_start_ns} + (num + _rate_bps - 1) / _rate_bps);
    if (_jitter_half_ns == 0) {
        return nominal;
    }
    const std::uint64_t window = 2 * _jitter_half_ns + 1;
    const std::uint64_t offset = mix(_seed ^ mix(k)) % window; // 0 .. 2 * half
    const std::uint64_t shifted = saturate(u128{nominal} + offset);
    return shifted - _jitter_half_ns; // nominal - half .. nominal + half, never below start
}

std::size_t sim_link::produce(std::uint64_t now_ns, std::span<std::uint8_t> out,
                              std::size_t max_blocks) noexcept {
    KEYRAIL_ASSERT(_cipher != nullptr, "produce on a moved-from sim_link");
    KEYRAIL_ASSERT(out.size() / _block_bytes >= max_blocks, "buffer of %zu bytes for %zu blocks",
                   out.size(), max_blocks);
    // Bursts before lo have arrived whatever their jitter; bursts from hi on cannot have.
    // Arrival times never decrease with k, so the arrived bursts are a prefix.
    const std::uint64_t lo =
        nominal_bursts_by(now_ns >= _jitter_half_ns ? now_ns - _jitter_half_ns : 0);
    const std::uint64_t hi = nominal_bursts_by(saturate(u128{now_ns} + _jitter_half_ns));
    std::uint64_t k = std::max(_bursts_arrived, lo);
    while (k < hi && burst_time_ns(k) <= now_ns) {
        ++k;
    }
    if (k > _bursts_arrived) {
        _pending_blocks += (k - _bursts_arrived) * _burst_blocks;
        _bursts_arrived = k;
    }
    const std::size_t count =
        static_cast<std::size_t>(std::min<std::uint64_t>(_pending_blocks, max_blocks));
    fill_blocks(_next_sequence, count, out);
    _next_sequence += count;
    _pending_blocks -= count;
    return count;
}

void sim_link::fill_blocks(std::uint64_t first, std::size_t count,
                           std::span<std::uint8_t> out) noexcept {
    // Block seq is the AES-CTR keystream from counter block be64(seq) || be64(0): lane j of it
    // is AES(be64(seq) || be64(j)). The counter blocks of many blocks go through one call.
    constexpr std::size_t lane_bytes = 16;
    constexpr std::size_t batch_lanes = 256;
    const std::size_t lanes = (_block_bytes + lane_bytes - 1) / lane_bytes;
    KEYRAIL_ASSERT(lanes >= 1 && lanes <= batch_lanes, "%zu-byte blocks", _block_bytes);
    std::array<std::uint8_t, batch_lanes * lane_bytes> stream; // every used byte is written
    const std::size_t per_call = batch_lanes / lanes;
    std::size_t used = 0;
    for (std::size_t done = 0; done < count;) {
        const std::size_t n = std::min(count - done, per_call);
        for (std::size_t i = 0; i < n; ++i) {
            for (std::size_t j = 0; j < lanes; ++j) {
                std::uint8_t *c = stream.data() + (i * lanes + j) * lane_bytes;
                put_be64(c, first + done + i);
                put_be64(c + 8, j);
            }
        }
        const int bytes = static_cast<int>(n * lanes * lane_bytes);
        used = std::max(used, n * lanes * lane_bytes);
        int written = 0;
        const int ok = EVP_EncryptUpdate(_cipher, stream.data(), &written, stream.data(), bytes);
        KEYRAIL_ASSERT(ok == 1 && written == bytes, "AES-ECB wrote %d of %d", written, bytes);
        for (std::size_t i = 0; i < n; ++i) {
            std::memcpy(out.data() + (done + i) * _block_bytes,
                        stream.data() + i * lanes * lane_bytes, _block_bytes);
        }
        done += n;
    }
    OPENSSL_cleanse(stream.data(), used); // keystream is key material
}

} // namespace keyrail::drivers::sim
