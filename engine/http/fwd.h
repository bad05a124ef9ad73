#pragma once
// Forward declarations of engine/http types.

namespace keyrail::engine::http {

struct limits;
struct header;
struct request;
struct parse_result;
struct response_head;
enum class errc : int;

} // namespace keyrail::engine::http
