#pragma once
// Value types of the key store: ids, ownership of a stream's sequence numbers, leases and
// configuration. All trivially copyable except store_config (startup only).
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace keyrail::dataplane {

using seq_t = std::uint64_t;

struct stream_id {
    std::uint32_t value = 0;
    friend bool operator==(stream_id, stream_id) = default;
};

// An SAE as the control plane's registry numbers it (control maps certificate identities to
// these); the store only compares them.
struct sae_id {
    std::uint64_t value = 0;
    friend bool operator==(sae_id, sae_id) = default;
};

// A random UUIDv4 (RFC 9562), 16 bytes, from the OpenSSL DRBG; never derived from key bytes.
struct key_id {
    std::array<std::byte, 16> bytes{};
    // Constant-time, although key IDs are not secret: they gate access to key bytes.
    [[nodiscard]] bool equals(const key_id& other) const noexcept;
    // 36 characters plus NUL, lower-case canonical form.
    void format(char (&out)[37]) const noexcept;
};

// Which sequence numbers of a stream this node owns: seq % stride == offset. One node alone:
// stride 1, offset 0. Two nodes: stride 2, the lower node id offset 0, the higher offset 1.
struct ownership {
    std::uint32_t stride = 1;
    std::uint32_t offset = 0;
    [[nodiscard]] bool owns(seq_t seq) const noexcept { return seq % stride == offset; }
    // The first owned sequence number >= seq.
    [[nodiscard]] seq_t first_owned_from(seq_t seq) const noexcept {
        const seq_t r = seq % stride;
        return r <= offset ? seq - r + offset : seq - r + stride + offset;
    }
};

// A range of sequence numbers handed to a shard: the owned seqs in [first, end).
struct lease {
    stream_id stream{};
    std::uint32_t stride = 1;
    seq_t first = 0; // owned
    seq_t end = 0;   // exclusive
    [[nodiscard]] std::uint64_t block_count() const noexcept {
        return end > first ? (end - first + stride - 1) / stride : 0;
    }
};

enum class durability : std::uint8_t {
    process, // survives kill -9: ordered writes, no fdatasync
    power,   // survives power loss: fdatasync before a commit is acknowledged
};

struct master_key_source {
    enum class kind : std::uint8_t { file, env };
    kind from = kind::env;
    std::string name; // a path, or an environment variable name
};

enum class open_mode : std::uint8_t { create_if_missing, must_exist };

struct store_config {
    std::string dir;
    master_key_source master_key;
    durability mode = durability::power;
    open_mode create = open_mode::create_if_missing;
    std::uint32_t block_bytes = 32;            // 256-bit blocks; multiple of 8, 8..1024
    std::uint32_t segment_chunks = 4096;       // chunks (4 KiB pages) per segment file
    std::uint64_t capacity_blocks = 1u << 22;  // live blocks per stream, rounded up to segments
    std::uint32_t reservations_max = 1u << 14; // reservation slots per stream
    std::uint32_t lease_headroom = 4096;       // blocks leased ahead of need per meta commit
    std::uint32_t chunk_cache = 32;            // decrypted chunk slots per stream
    // A stream's journal is compacted into a snapshot once it passes this many bytes (and
    // four times the snapshot's size); 0: never.
    std::uint64_t journal_compact_bytes = std::uint64_t{64} << 20;
    // The snapshot is written this many bytes per commit (with the records committed meanwhile
    // appended), so no commit waits for all of it; at least 64.
    std::uint64_t journal_compact_step_bytes = std::uint64_t{256} << 10;
};

inline constexpr std::uint32_t key_bits_min = 8;
inline constexpr std::uint32_t key_bits_max = 65536;
inline constexpr std::size_t slaves_max = 8;   // slave SAEs per key (master's peer + extras)
inline constexpr std::size_t key_runs_max = 4; // runs of strided seqs per key

} // namespace keyrail::dataplane
