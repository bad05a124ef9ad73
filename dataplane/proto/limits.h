#pragma once
// Limits of the peer protocol. The decoder enforces every one of them before a frame is used;
// the encoders refuse to build a frame the decoder would reject. Relations are asserted here.
#include <cstddef>
#include <cstdint>

namespace keyrail::proto::limits {

// Framing: a u32 little-endian length, then that many bytes of FlatBuffer.
inline constexpr std::size_t frame_header_bytes = 4;
// Whole frames (header included) are multiples of this, so every frame in a receive buffer
// that starts 8-aligned is 8-aligned too, and the 64-bit fields inside are read aligned.
inline constexpr std::size_t frame_align_bytes = 8;
// The largest frame, header included. A peer that announces more is closed at once.
inline constexpr std::size_t frame_bytes_max = std::size_t{1} << 20;
// The smallest frame that can hold a root offset and the file identifier.
inline constexpr std::size_t frame_bytes_min = 16;

// FlatBuffers Verifier: the schema nests tables at most 3 deep (Frame, Reserve,
// KeyReservation); the depth limit is there for later, recursive messages.
inline constexpr std::uint32_t verifier_depth_max = 8;

// Node, link and SAE ids: 1..128 printable ASCII bytes (0x21..0x7e).
inline constexpr std::size_t id_bytes_max = 128;

// Hello: link confirmations, one per link between the two nodes.
inline constexpr std::size_t hello_links_max = 16;

// Reserve: keys per batch, slave SAEs and sequence runs per key, blocks per key.
inline constexpr std::size_t reserve_keys_max = 1024;
inline constexpr std::size_t slaves_max = 8;
inline constexpr std::size_t runs_max = 16;
inline constexpr std::uint32_t key_bits_min = 8;
inline constexpr std::uint32_t key_bits_max = 65536;
// A block holds at least one byte, so a key never needs more blocks than it has bytes.
inline constexpr std::uint64_t key_blocks_max = key_bits_max / 8;
// The largest stride of a run or a share (nodes sharing one stream).
inline constexpr std::uint32_t stride_max = 256;

// ShareGrant: the widest range of sequence numbers one grant spans.
inline constexpr std::uint64_t grant_span_max = std::uint64_t{1} << 32;

// ReserveAck: per-key statuses in one ack (it may cover several batches).
inline constexpr std::size_t ack_keys_max = 4 * reserve_keys_max;
// Void: key IDs per message.
inline constexpr std::size_t void_keys_max = 4 * reserve_keys_max;

// Tables a frame may hold: Frame, its body, and per-item tables (KeyReservation or
// LinkConfirm), with slack. A buffer that aliases one table many times is refused here.
inline constexpr std::uint32_t verifier_tables_max =
    static_cast<std::uint32_t>(2 + reserve_keys_max + 8);

static_assert(frame_bytes_max % frame_align_bytes == 0);
static_assert(frame_bytes_min % frame_align_bytes == 0);
static_assert(frame_bytes_min >= frame_header_bytes + 4 + 4, "root offset and identifier");
static_assert(hello_links_max <= reserve_keys_max, "table budget covers Hello");
static_assert(key_bits_min % 8 == 0 && key_bits_max % 8 == 0);
// Largest fixed-size bodies must fit in a frame (each KeyAck is 17 bytes, each KeyId 16).
static_assert(ack_keys_max * 17 + 1024 < frame_bytes_max);
static_assert(void_keys_max * 16 + 1024 < frame_bytes_max);

} // namespace keyrail::proto::limits
