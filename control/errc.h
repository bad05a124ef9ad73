#pragma once
// Error codes of keyrail::control (certificates, files). Config errors are exceptions
// (config_error in control/config.h) because they only happen at start-up and in tools.
#include <system_error>

namespace keyrail::control {

enum class errc : int {
    openssl_failure = 1, // an OpenSSL call failed; details are logged at debug level
    invalid_spec,        // a certificate spec is malformed (empty CN, bad SAN, bad validity)
    bad_pem,             // PEM text does not parse as a certificate or private key
    key_mismatch,        // a private key does not belong to its certificate
    file_too_large,      // a PEM file is larger than any sane credential
};

[[nodiscard]] const std::error_category &control_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), control_category()};
}

} // namespace keyrail::control

template <> struct std::is_error_code_enum<keyrail::control::errc> : std::true_type {};
