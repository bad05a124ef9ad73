#pragma once
// SHA3-256, SHA3-512, SHAKE128 and SHAKE256 through OpenSSL EVP, for ML-KEM.
// Lives on: the calling thread. Each thread keeps one EVP_MD_CTX and the fetched digests in a
// thread_local, created at its first hash, so the hot path neither allocates nor fetches.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

namespace keyrail::crypto::detail {

enum class hash_kind : std::uint8_t { sha3_256, sha3_512, shake128, shake256 };

// Hashes the concatenation of parts into out (the XOFs squeeze out.size() bytes). Returns
// false only when OpenSSL cannot provide the digest or fails; callers turn that into
// errc::hash_failure.
[[nodiscard]] bool hash(hash_kind kind, std::initializer_list<std::span<const std::uint8_t>> parts,
                        std::span<std::uint8_t> out) noexcept;

} // namespace keyrail::crypto::detail
