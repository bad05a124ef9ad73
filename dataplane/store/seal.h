#pragma once
// Cryptography of the store at rest: the master key, the wrapped data key (keyring), AES-256-GCM
// sealing of chunk pages, key IDs, and a non-cryptographic checksum for meta and journal.
// Lives on: chunk_cipher on the stream's home shard (one EVP context each); the rest is pure.
#include "dataplane/store/types.h"
#include "engine/result.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace keyrail::dataplane {

inline constexpr std::size_t data_key_bytes = 32;
inline constexpr std::size_t gcm_nonce_bytes = 12;
inline constexpr std::size_t gcm_tag_bytes = 16;

// 32 secret bytes, wiped on destruction. Move-only.
class secret_key {
public:
    secret_key() noexcept = default;
    ~secret_key();
    secret_key(const secret_key&) = delete;
    secret_key& operator=(const secret_key&) = delete;
    secret_key(secret_key&& other) noexcept;
    secret_key& operator=(secret_key&& other) noexcept;
    [[nodiscard]] std::span<std::byte, data_key_bytes> bytes() noexcept { return _bytes; }
    [[nodiscard]] std::span<const std::byte, data_key_bytes> bytes() const noexcept {
        return _bytes;
    }

private:
    std::array<std::byte, data_key_bytes> _bytes{};
};

// A 64-bit checksum against torn and rotted writes (not against an adversary: chunk pages
// carry GCM tags for that).
[[nodiscard]] std::uint64_t checksum64(const void* data, std::size_t size) noexcept;

// Loads the master key: a file holding 32 raw bytes or 64 hex digits (a trailing newline is
// allowed), or an environment variable holding 64 hex digits.
[[nodiscard]] result<secret_key> load_master_key(const master_key_source& source) noexcept;

// The keyring file: the data key sealed under the master key with AES-256-GCM.
inline constexpr std::size_t keyring_file_bytes = 96;
[[nodiscard]] result<void> wrap_data_key(const secret_key& master, const secret_key& data,
                                         std::span<std::byte, keyring_file_bytes> out) noexcept;
[[nodiscard]] result<secret_key> unwrap_data_key(const secret_key& master,
                                                 std::span<const std::byte> file_bytes) noexcept;

[[nodiscard]] result<secret_key> random_secret_key() noexcept;
[[nodiscard]] result<key_id> random_key_id() noexcept;

// Key IDs drawn from the OpenSSL DRBG 256 at a time: one RAND_bytes call (and its fork check)
// per 4 KiB instead of per key. An issued ID stays in the pool until the next refill overwrites
// it (an ID is public once issued, and the unissued ones are there anyway): no wipe per key.
// Everything is wiped on destruction.
// Lives on: one shard (each shard that mints key IDs has its own).
class key_id_pool {
public:
    key_id_pool() noexcept = default;
    ~key_id_pool();
    key_id_pool(const key_id_pool&) = delete;
    key_id_pool& operator=(const key_id_pool&) = delete;
    [[nodiscard]] result<key_id> next() noexcept;
    // The ID that the ahead-th next() from now returns, if it is in the pool already
    // (ahead 0: the next one). Consumes nothing; for prefetching index slots.
    [[nodiscard]] bool peek(std::size_t ahead, key_id& out) const noexcept;

private:
    static constexpr std::size_t ids_per_refill = 256;
    std::array<std::byte, 16 * ids_per_refill> _bytes{};
    std::size_t _used = ids_per_refill;
};

// AES-256-GCM under the data key, contexts set up once; per call only the nonce changes.
class chunk_cipher {
public:
    chunk_cipher() noexcept = default;
    ~chunk_cipher();
    chunk_cipher(const chunk_cipher&) = delete;
    chunk_cipher& operator=(const chunk_cipher&) = delete;

    [[nodiscard]] result<void> init(const secret_key& data_key) noexcept;
    // Encrypts plaintext into out (same size) and writes the tag. aad is authenticated only.
    [[nodiscard]] result<void> seal(std::span<const std::byte, gcm_nonce_bytes> nonce,
                                    std::span<const std::byte> aad,
                                    std::span<const std::byte> plaintext, std::byte* out,
                                    std::span<std::byte, gcm_tag_bytes> tag) noexcept;
    // Decrypts and verifies; errc::segment_bad_tag when authentication fails.
    [[nodiscard]] result<void> open(std::span<const std::byte, gcm_nonce_bytes> nonce,
                                    std::span<const std::byte> aad,
                                    std::span<const std::byte> ciphertext, std::byte* out,
                                    std::span<const std::byte, gcm_tag_bytes> tag) noexcept;

private:
    EVP_CIPHER_CTX* _enc = nullptr;
    EVP_CIPHER_CTX* _dec = nullptr;
};

} // namespace keyrail::dataplane
