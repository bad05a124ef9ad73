// ML-KEM through OpenSSL's EVP_PKEY ML-KEM (OpenSSL >= 3.5), behind the same API as the native
// code. Untested on Debian 12 (OpenSSL 3.0), where this whole file compiles to nothing.
#include "dataplane/crypto/mlkem_openssl.h"

#if KEYRAIL_MLKEM_HAVE_OPENSSL

#include <algorithm>
#include <memory>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

namespace keyrail::crypto::detail {
namespace {

constexpr const char* algorithm_name(std::size_t k) noexcept {
    return k == 2 ? "ML-KEM-512" : k == 3 ? "ML-KEM-768" : "ML-KEM-1024";
}

struct pkey_ctx_deleter {
    void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
};
struct pkey_deleter {
    void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};

} // namespace

template <std::size_t K>
result<typename mlkem_set<K>::key_pair>
openssl_keygen(std::span<const std::uint8_t, 32> d, std::span<const std::uint8_t, 32> z) noexcept {
    using set = mlkem_set<K>;
    secret_bytes<64> seed;
    std::copy(d.begin(), d.end(), seed.data());
    std::copy(z.begin(), z.end(), seed.data() + 32);
    std::unique_ptr<EVP_PKEY_CTX, pkey_ctx_deleter> ctx(
        EVP_PKEY_CTX_new_from_name(nullptr, algorithm_name(K), nullptr));
    if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1) {
        return fail(errc::backend_failure);
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_ML_KEM_SEED, seed.data(), 64),
        OSSL_PARAM_construct_end()};
    EVP_PKEY* raw = nullptr;
    if (EVP_PKEY_CTX_set_params(ctx.get(), params) != 1 ||
        EVP_PKEY_generate(ctx.get(), &raw) != 1) {
        return fail(errc::backend_failure);
    }
    std::unique_ptr<EVP_PKEY, pkey_deleter> key(raw);
    typename set::key_pair kp;
    std::size_t ek_len = kp.ek.size();
    std::size_t dk_len = kp.dk.size();
    if (EVP_PKEY_get_raw_public_key(key.get(), kp.ek.data(), &ek_len) != 1 ||
        EVP_PKEY_get_raw_private_key(key.get(), kp.dk.data(), &dk_len) != 1 ||
        ek_len != kp.ek.size() || dk_len != kp.dk.size()) {
        return fail(errc::backend_failure);
    }
    return kp;
}

template <std::size_t K>
result<typename mlkem_set<K>::encapsulation>
openssl_encaps(std::span<const std::uint8_t> ek, std::span<const std::uint8_t, 32> m) noexcept {
    using set = mlkem_set<K>;
    std::unique_ptr<EVP_PKEY, pkey_deleter> key(EVP_PKEY_new_raw_public_key_ex(
        nullptr, algorithm_name(K), nullptr, ek.data(), ek.size()));
    if (!key) {
        return fail(errc::invalid_encapsulation_key);
    }
    std::unique_ptr<EVP_PKEY_CTX, pkey_ctx_deleter> ctx(
        EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
    secret_bytes<32> ikme;
    std::copy(m.begin(), m.end(), ikme.data());
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KEM_PARAM_IKME, ikme.data(), 32),
        OSSL_PARAM_construct_end()};
    typename set::encapsulation out;
    std::size_t c_len = out.c.size();
    std::size_t k_len = out.k.size();
    if (!ctx || EVP_PKEY_encapsulate_init(ctx.get(), params) != 1 ||
        EVP_PKEY_encapsulate(ctx.get(), out.c.data(), &c_len, out.k.data(), &k_len) != 1 ||
        c_len != out.c.size() || k_len != out.k.size()) {
        return fail(errc::backend_failure);
    }
    return out;
}

template <std::size_t K>
result<typename mlkem_set<K>::shared_secret>
openssl_decaps(std::span<const std::uint8_t> dk, std::span<const std::uint8_t> c) noexcept {
    using set = mlkem_set<K>;
    std::unique_ptr<EVP_PKEY, pkey_deleter> key(EVP_PKEY_new_raw_private_key_ex(
        nullptr, algorithm_name(K), nullptr, dk.data(), dk.size()));
    if (!key) {
        return fail(errc::invalid_decapsulation_key);
    }
    std::unique_ptr<EVP_PKEY_CTX, pkey_ctx_deleter> ctx(
        EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
    typename set::shared_secret out;
    std::size_t k_len = out.size();
    if (!ctx || EVP_PKEY_decapsulate_init(ctx.get(), nullptr) != 1 ||
        EVP_PKEY_decapsulate(ctx.get(), out.data(), &k_len, c.data(), c.size()) != 1 ||
        k_len != out.size()) {
        return fail(errc::backend_failure);
    }
    return out;
}

#define KEYRAIL_INSTANTIATE(K)                                                                 \
    template result<mlkem_set<K>::key_pair> openssl_keygen<K>(                                 \
        std::span<const std::uint8_t, 32>, std::span<const std::uint8_t, 32>) noexcept;        \
    template result<mlkem_set<K>::encapsulation> openssl_encaps<K>(                            \
        std::span<const std::uint8_t>, std::span<const std::uint8_t, 32>) noexcept;            \
    template result<mlkem_set<K>::shared_secret> openssl_decaps<K>(                            \
        std::span<const std::uint8_t>, std::span<const std::uint8_t>) noexcept;
KEYRAIL_INSTANTIATE(2)
KEYRAIL_INSTANTIATE(3)
KEYRAIL_INSTANTIATE(4)
#undef KEYRAIL_INSTANTIATE

} // namespace keyrail::crypto::detail

#endif
