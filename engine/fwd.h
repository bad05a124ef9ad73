#pragma once
// Forward declarations of engine types.
#include <cstddef>

namespace keyrail::engine {

template <class T, std::size_t capacity, template <class> class Atomic>
class spsc_ring;
template <class T, std::size_t capacity>
class ring_matrix;
class doorbell;
struct shard_message;

struct tls_config;
struct client_tls_config;
class tls_context;
class tls_client_context;
class tls_session;
struct peer_identity;
enum class tls_refusal : unsigned char;

struct connection_id;
struct timer_id;
class timer_handler;
class shard_context;
class connection_context;
class output;
struct handler_result;
class protocol;
class shard_hooks;

struct listener_config;
struct outbound_config;
struct server_config;
struct server_stats;
class server;
class shard;

} // namespace keyrail::engine
