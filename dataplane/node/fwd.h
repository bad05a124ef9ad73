#pragma once
// Forward declarations of keyrail::dataplane::node.
namespace keyrail::dataplane::node {
struct settings;
struct sae_entry;
class block_source;
class local_source;
class local_key_service;
class etsi_protocol;
class node_hooks;
} // namespace keyrail::dataplane::node
