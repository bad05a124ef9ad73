#pragma once
// The pre-flight check: a blocking TCP connect, TLS handshake and one ETSI 014 status request
// per KME, so that an unreachable URL, a refused certificate or a server that does not speak
// ETSI 014 is reported in one line before any load starts. Runs on the main thread.
#include <string>

#include <openssl/ssl.h>

#include "tools/keyrail-bench/load.h"
#include "tools/keyrail-bench/options.h"

namespace keyrail::bench_client {

// Throws setup_error naming the URL and the reason. sae_id_in_path: the peer SAE ID that
// goes in /api/v1/keys/{id}/status; expected_slave_sae_id: the status's slave_SAE_ID, or
// empty to accept any.
void probe_endpoint(SSL_CTX* ctx, const base_url& url, const resolved_address& address,
                    const std::string& sae_id_in_path, const std::string& expected_slave_sae_id,
                    double timeout_s);

} // namespace keyrail::bench_client
