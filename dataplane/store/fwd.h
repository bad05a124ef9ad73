#pragma once
// Forward declarations of the key store's types.
namespace keyrail::dataplane {

struct stream_id;
struct sae_id;
struct key_id;
struct lease;
struct store_config;
class stream;
class key_store;
class lease_authority;
class lease_server;
class lease_client;
struct lease_channel;

} // namespace keyrail::dataplane
