#pragma once
// Errors of keyrail::dataplane: the key store, streams and leases. Each is an expected
// failure (disk contents, configuration, client requests, empty pools); bugs assert instead.
// Other dataplane modules append their codes at the end; never renumber.
#include <system_error>

namespace keyrail::dataplane {

enum class errc : int {
    store_full = 1,          // no room for more blocks in the stream (backpressure)
    unknown_stream = 2,      // no stream with that id in this store
    segment_bad_magic = 3,   // a segment header is not a keyrail segment
    segment_bad_tag = 4,     // a chunk failed AES-GCM authentication (corrupt or tampered)
    segment_truncated = 5,   // a segment file is shorter than its format says
    master_key_missing = 6,  // the configured master key file or variable is absent
    master_key_invalid = 7,  // the master key is not 32 bytes (raw) or 64 hex digits
    wrong_master_key = 8,    // the master key does not unwrap the data key
    keyring_missing = 9,     // streams exist but the wrapped data key does not
    keyring_corrupt = 10,    // the keyring file is malformed
    meta_corrupt = 11,       // neither meta slot of a stream verifies
    journal_corrupt = 12,    // a committed journal record fails its checksum
    config_mismatch = 13,    // configuration disagrees with what is on disk
    key_size_invalid = 14,   // key size not a multiple of 8 bits or outside 8..65536
    unknown_key = 15,        // no reservation with that key ID
    not_slave = 16,          // the caller is not a named slave SAE of the key
    already_delivered = 17,  // the key was already delivered to this caller
    block_unavailable = 18,  // a requested block is not available (reserved, gone)
    not_peer_owned = 19,     // reserve_specific named a block of this node's own share
    lease_exhausted = 20,    // no ingested, unleased blocks left in this node's share
    ring_full = 21,          // a cross-shard ring is full (backpressure)
    reservations_full = 22,  // the reservation pool is exhausted (backpressure)
    key_too_fragmented = 23, // the blocks of a key form more runs than a slot holds
    key_not_ready = 24,      // a reserved block has not been ingested yet
    key_id_exists = 25,      // a reservation with that key ID already exists
    too_many_slaves = 26,    // more slave SAEs than a reservation holds
    crypto_failure = 27,     // OpenSSL EVP or the DRBG failed
    stream_exists = 28,      // create_stream for an id that is already there
    invalid_argument = 29,   // a malformed request (empty, misaligned length)
    store_in_use = 30,       // another process holds the store directory's lock
};

[[nodiscard]] const std::error_category& dataplane_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), dataplane_category()};
}

} // namespace keyrail::dataplane

template <> struct std::is_error_code_enum<keyrail::dataplane::errc> : std::true_type {};
