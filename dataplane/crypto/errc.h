#pragma once
// Errors of keyrail::crypto. Every one is an expected failure of input that came from a peer
// or a client (wrong lengths, keys that fail the FIPS 203 section 7 checks) or of the
// OpenSSL primitives underneath (allocation, missing algorithm, RNG).
#include <system_error>

namespace keyrail::crypto {

enum class errc : int {
    invalid_encapsulation_key = 1, // wrong length or a coefficient >= q (FIPS 203 7.2)
    invalid_decapsulation_key = 2, // wrong length or H(ek) does not match (FIPS 203 7.3)
    invalid_ciphertext = 3,        // wrong ciphertext length (FIPS 203 7.3)
    invalid_seed = 4,              // d, z or m not 32 bytes
    hash_failure = 5,              // OpenSSL could not provide SHA3/SHAKE
    random_failure = 6,            // the OpenSSL DRBG failed
    sampling_exhausted = 7,        // SampleNTT needed more XOF output than the bound allows
    backend_unavailable = 8,       // the requested backend is not in this build
    backend_failure = 9,           // the OpenSSL ML-KEM backend reported an error
};

[[nodiscard]] const std::error_category& crypto_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), crypto_category()};
}

} // namespace keyrail::crypto

template <>
struct std::is_error_code_enum<keyrail::crypto::errc> : std::true_type {};
