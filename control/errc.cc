#include "control/errc.h"

#include <string>

namespace keyrail::control {
namespace {

class category final : public std::error_category {
public:
    [[nodiscard]] const char *name() const noexcept override { return "keyrail.control"; }
    [[nodiscard]] std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::openssl_failure:
            return "OpenSSL call failed";
        case errc::invalid_spec:
            return "invalid certificate spec";
        case errc::bad_pem:
            return "malformed PEM certificate or key";
        case errc::key_mismatch:
            return "private key does not match certificate";
        case errc::file_too_large:
            return "credential file too large";
        }
        return "unknown keyrail.control error " + std::to_string(value);
    }
};

} // namespace

const std::error_category &control_category() noexcept {
    static const category instance;
    return instance;
}

} // namespace keyrail::control
