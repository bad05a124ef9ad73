#pragma once
// Forward declarations of control types.

namespace keyrail::control {

struct config;
struct node_config;
struct tls_config;
struct store_config;
struct link_config;
struct limits_config;
struct sim_driver_config;
class config_error;
class secret_bytes;
enum class errc : int;

namespace pki {
struct cert_spec;
struct credential;
} // namespace pki

} // namespace keyrail::control
