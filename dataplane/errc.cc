#include "dataplane/errc.h"

#include <string>

namespace keyrail::dataplane {
namespace {

class category final : public std::error_category {
public:
    const char* name() const noexcept override { return "keyrail.dataplane"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::store_full:
            return "key store full";
        case errc::unknown_stream:
            return "unknown key stream";
        case errc::segment_bad_magic:
            return "segment has a bad magic number";
        case errc::segment_bad_tag:
            return "segment chunk failed authentication";
        case errc::segment_truncated:
            return "segment file truncated";
        case errc::master_key_missing:
            return "master key not found";
        case errc::master_key_invalid:
            return "master key malformed (need 32 raw bytes or 64 hex digits)";
        case errc::wrong_master_key:
            return "wrong master key (data key does not unwrap)";
        case errc::keyring_missing:
            return "keyring missing while streams exist";
        case errc::keyring_corrupt:
            return "keyring file corrupt";
        case errc::meta_corrupt:
            return "no valid meta slot";
        case errc::journal_corrupt:
            return "journal record corrupt";
        case errc::config_mismatch:
            return "configuration does not match the store on disk";
        case errc::key_size_invalid:
            return "key size must be a multiple of 8 bits from 8 to 65536";
        case errc::unknown_key:
            return "unknown key ID";
        case errc::not_slave:
            return "caller is not a slave SAE of this key";
        case errc::already_delivered:
            return "key already delivered to this SAE";
        case errc::block_unavailable:
            return "block not available";
        case errc::not_peer_owned:
            return "block belongs to this node's own share";
        case errc::lease_exhausted:
            return "no blocks left to lease";
        case errc::ring_full:
            return "cross-shard ring full";
        case errc::reservations_full:
            return "reservation pool exhausted";
        case errc::key_too_fragmented:
            return "key blocks too fragmented";
        case errc::key_not_ready:
            return "key blocks not ingested yet";
        case errc::key_id_exists:
            return "key ID already reserved";
        case errc::too_many_slaves:
            return "too many slave SAEs";
        case errc::crypto_failure:
            return "cryptographic operation failed";
        case errc::stream_exists:
            return "stream already exists";
        case errc::invalid_argument:
            return "invalid argument";
        case errc::store_in_use:
            return "the store directory is in use by another process";
        }
        return "unknown dataplane error";
    }
};

} // namespace

const std::error_category& dataplane_category() noexcept {
    static const category instance;
    return instance;
}

} // namespace keyrail::dataplane
