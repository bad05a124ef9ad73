#pragma once
// One end of a simulated QKD link. Both ends of a link, configured with the same link secret
// and link id, produce byte-identical key blocks for every sequence number, so two keyrail
// processes on one machine behave like a real QKD pair. Blocks arrive at a configured mean
// rate in bursts with seeded jitter, as real devices deliver irregularly.
//
// Pure and clock-injected: no threads, no I/O, no clock reads; the caller passes the time.
// Store-agnostic: blocks are written into a caller's buffer.
//
// Lives on: the link's home shard (one instance per link end).
//
// Derivation (both ends must agree; see drivers/sim/README.md):
//   okm          = HKDF-SHA256(ikm = secret, salt = none, info = "keyrail sim link" || link_id,
//                              64 bytes)
//   enc_key      = okm[0..32), mac_key = okm[32..64)
//   block n      = AES-256-CTR(enc_key, iv = be64(n) || be64(0)) over block_bytes zero bytes
//   confirmation = HMAC-SHA256(mac_key, "keyrail sim confirm" || be64(block_bytes))[0..16)
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "engine/result.h"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace keyrail::drivers::sim {

struct sim_link_config {
    std::string link_id;                  // both ends use the same id
    std::span<const std::uint8_t> secret; // read at create() only, never retained
    std::size_t block_bytes = 32;         // the store's block size
    std::uint64_t rate_bps = 100'000;     // mean key rate, bits per second
    std::uint32_t burst_blocks = 1;       // blocks delivered together
    std::uint32_t jitter_percent = 0;     // 0..100 of the burst interval, spread +-half
    std::uint64_t seed = 0;               // jitter seed; the two ends may differ
    std::uint64_t start_ns = 0;           // the clock value at which the device starts
    std::uint64_t first_sequence = 0;     // resume point after a restart
};

// HKDF needs at least this much secret to give the full 256-bit strength.
inline constexpr std::size_t secret_bytes_min = 32;
inline constexpr std::size_t confirmation_bytes = 16;
using confirmation = std::array<std::uint8_t, confirmation_bytes>;

class sim_link {
public:
    // Derives the link keys. Fails only if OpenSSL does (allocation, missing provider).
    // Asserts a well-formed config: the config loader has validated it.
    [[nodiscard]] static result<sim_link> create(const sim_link_config &config) noexcept;

    sim_link(sim_link &&other) noexcept;
    sim_link &operator=(sim_link &&other) noexcept;
    sim_link(const sim_link &) = delete;
    sim_link &operator=(const sim_link &) = delete;
    ~sim_link(); // wipes the derived keys and the cipher state

    // Writes the blocks that became ready by now_ns and were not yet produced, at most
    // max_blocks of them, into out (block i at out[i * block_bytes()]). Their sequence
    // numbers are next_sequence() (as read before the call) and up, ascending. Blocks beyond
    // max_blocks stay pending for the next call. out must hold max_blocks blocks.
    [[nodiscard]] std::size_t produce(std::uint64_t now_ns, std::span<std::uint8_t> out,
                                      std::size_t max_blocks) noexcept;

    // A value both ends compare (in constant time) at Hello: equal if and only if the
    // secrets, link ids and block sizes agree. Reveals nothing about the secret.
    [[nodiscard]] const confirmation &key_confirmation() const noexcept { return _confirmation; }

    [[nodiscard]] std::uint64_t next_sequence() const noexcept { return _next_sequence; }
    // Makes every block below sequence_end ready now, ahead of the schedule (the other end of
    // the link, started earlier, has them: real devices at both ends deliver together). Later
    // bursts still arrive on schedule.
    void deliver_through(std::uint64_t sequence_end) noexcept {
        const std::uint64_t ready_end = _next_sequence + _pending_blocks;
        if (sequence_end > ready_end) {
            _pending_blocks += sequence_end - ready_end;
        }
    }
    [[nodiscard]] std::uint64_t pending_blocks() const noexcept { return _pending_blocks; }
    [[nodiscard]] std::size_t block_bytes() const noexcept { return _block_bytes; }
    // The mean interval between bursts, in ns (rounded down), for tests and metrics.
    [[nodiscard]] std::uint64_t burst_interval_ns() const noexcept;

private:
    sim_link() = default;
    void wipe() noexcept;
    void fill_blocks(std::uint64_t first, std::size_t count, std::span<std::uint8_t> out) noexcept;
    // Time at which burst k (0-based) arrives: start + (k + 1) * interval + jitter(k).
    [[nodiscard]] std::uint64_t burst_time_ns(std::uint64_t k) const noexcept;
    // How many bursts have a jitter-free time <= t.
    [[nodiscard]] std::uint64_t nominal_bursts_by(std::uint64_t t) const noexcept;

    std::array<std::uint8_t, 32> _enc_key{};
    std::array<std::uint8_t, 32> _mac_key{};
    confirmation _confirmation{};
    EVP_CIPHER_CTX *_cipher = nullptr; // AES-256-ECB keyed with _enc_key; freed by wipe()
    std::size_t _block_bytes = 0;
    std::uint64_t _rate_bps = 0;
    std::uint64_t _burst_blocks = 0;
    std::uint64_t _jitter_half_ns = 0; // jitter is uniform in [-half, +half]
    std::uint64_t _seed = 0;
    std::uint64_t _start_ns = 0;
    std::uint64_t _bursts_arrived = 0;
    std::uint64_t _pending_blocks = 0;
    std::uint64_t _next_sequence = 0;
};

} // namespace keyrail::drivers::sim
