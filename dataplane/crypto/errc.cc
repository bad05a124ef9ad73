#include "dataplane/crypto/errc.h"

#include <string>

namespace keyrail::crypto {
namespace {

class category final : public std::error_category {
public:
    const char* name() const noexcept override { return "keyrail.crypto"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::invalid_encapsulation_key:
            return "invalid ML-KEM encapsulation key";
        case errc::invalid_decapsulation_key:
            return "invalid ML-KEM decapsulation key";
        case errc::invalid_ciphertext:
            return "invalid ML-KEM ciphertext length";
        case errc::invalid_seed:
            return "ML-KEM seed is not 32 bytes";
        case errc::hash_failure:
            return "SHA3/SHAKE unavailable from OpenSSL";
        case errc::random_failure:
            return "random generator failure";
        case errc::sampling_exhausted:
            return "SampleNTT exceeded its XOF output bound";
        case errc::backend_unavailable:
            return "ML-KEM backend not available in this build";
        case errc::backend_failure:
            return "OpenSSL ML-KEM backend failure";
        }
        return "unknown crypto error";
    }
};

} // namespace

const std::error_category& crypto_category() noexcept {
    static const category instance;
    return instance;
}

} // namespace keyrail::crypto
