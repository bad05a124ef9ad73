#pragma once
// Forward declarations of dataplane/etsi014 types.

namespace keyrail::dataplane::etsi014 {

struct key_id;
struct status_info;
struct enc_request;
struct dec_request;
class key_service;
struct workspace_limits;
class workspace;
struct handle_result;
enum class errc : int;

} // namespace keyrail::dataplane::etsi014
