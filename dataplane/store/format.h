#pragma once
// On-disk layout of a stream (see README.md, "File format"). Little-endian, fixed-width.
// Every struct is copied with memcpy to and from page buffers; never cast a mapping to them.
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace keyrail::dataplane {

inline constexpr std::size_t page_bytes = 4096;
inline constexpr std::size_t chunk_header_bytes = 64;
inline constexpr std::size_t chunk_payload_bytes = page_bytes - chunk_header_bytes;
inline constexpr std::uint32_t format_version = 1; // segments and chunks
// The meta's version. 2: the journal may hold batch and window records (types 4-7,
// README.md "File format") and has a generation (journal_gen: file journal for 0,
// journal-<gen, 16 hex> after compactions). A version 1 store (96-byte record, no generation)
// is read as before and written as version 2 from its next meta on, so a binary that knows
// only single records refuses it instead of skipping records.
inline constexpr std::uint32_t meta_version = 2;
inline constexpr std::uint32_t meta_version_min = 1;
inline constexpr std::uint64_t meta_magic = 0x31415445'4d52524bull;    // "KRRMETA1"
inline constexpr std::uint64_t segment_magic = 0x31544d47'4553524bull; // "KRSEGMT1"
inline constexpr std::uint32_t chunk_magic = 0x4b43524bu;              // "KRCK"

// meta: two 4 KiB slots; txn t lives in slot t % 2; the newest verifying slot wins.
struct meta_record {
    std::uint64_t magic;
    std::uint32_t version;
    std::uint32_t block_bytes;
    std::uint32_t stream;
    std::uint32_t stride;
    std::uint32_t offset;
    std::uint32_t segment_chunks;
    std::uint64_t txn;
    std::uint64_t journal_bytes; // committed journal length
    std::uint64_t lease_high;    // no owned seq >= this was ever handed out
    std::uint64_t nonce_high;    // no nonce counter >= this was ever used
    std::uint64_t base;          // first live seq (segment aligned)
    std::uint64_t ingested;      // blocks whose chunks were written before this meta
    std::uint64_t capacity;      // live window in blocks
    std::uint64_t journal_gen;   // version 2: the journal file's generation
    std::uint64_t checksum;      // checksum64 of everything above
};
static_assert(sizeof(meta_record) == 104 && std::is_trivially_copyable_v<meta_record>);
// Version 1 had no journal_gen: its checksum followed capacity.
inline constexpr std::size_t meta_v1_checked_bytes = 88;
inline constexpr std::size_t meta_v1_bytes = 96;

// seg-<number, 16 hex>: page 0 is this header, page 1 + i is chunk number*segment_chunks + i.
struct segment_header {
    std::uint64_t magic;
    std::uint32_t version;
    std::uint32_t stream;
    std::uint64_t number;
    std::uint32_t block_bytes;
    std::uint32_t segment_chunks;
    std::uint64_t checksum;
};
static_assert(sizeof(segment_header) == 40 && std::is_trivially_copyable_v<segment_header>);

// A chunk page: this header, then AES-256-GCM ciphertext of blocks_per_chunk blocks.
// AAD = bytes [0, 24); nonce = stream id (4) || per-stream counter (8); all-zero = never written.
struct chunk_header {
    std::uint32_t magic;
    std::uint16_t version;
    std::uint16_t flags;
    std::uint32_t stream;
    std::uint32_t block_count; // blocks holding data (the tail chunk fills up over time)
    std::uint64_t chunk_index;
    unsigned char nonce[12];
    unsigned char tag[16];
    unsigned char pad[12];
};
static_assert(sizeof(chunk_header) == chunk_header_bytes);
inline constexpr std::size_t chunk_aad_bytes = 24;
inline constexpr std::size_t chunk_nonce_offset = 24;
inline constexpr std::size_t chunk_tag_offset = 36;

} // namespace keyrail::dataplane
