#pragma once
// Forward declarations of keyrail::proto types.
#include <cstdint>

namespace keyrail::proto {

enum class errc : int;
enum class capability : std::uint64_t;
enum class decode_status : std::uint8_t;
struct decoded;

struct link_confirm_in;
struct hello_in;
struct watermark_in;
struct seq_run;
struct key_reservation_in;
struct reserve_in;
struct key_ack_in;
struct reserve_ack_in;
struct void_in;
struct ping_in;
struct pong_in;

} // namespace keyrail::proto
