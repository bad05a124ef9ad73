#include "dataplane/crypto/hash.h"

#include <openssl/evp.h>

namespace keyrail::crypto::detail {
namespace {

// One per thread; the digests are fetched once so EVP_DigestInit_ex2 skips the provider
// lookup that EVP_sha3_256() would do on every call in OpenSSL 3.
class evp_state {
public:
    evp_state() noexcept {
        _ctx = EVP_MD_CTX_new();
        _md[0] = EVP_MD_fetch(nullptr, "SHA3-256", nullptr);
        _md[1] = EVP_MD_fetch(nullptr, "SHA3-512", nullptr);
        _md[2] = EVP_MD_fetch(nullptr, "SHAKE128", nullptr);
        _md[3] = EVP_MD_fetch(nullptr, "SHAKE256", nullptr);
    }
    ~evp_state() {
        for (EVP_MD* md : _md) {
            EVP_MD_free(md);
        }
        EVP_MD_CTX_free(_ctx);
    }
    evp_state(const evp_state&) = delete;
    evp_state& operator=(const evp_state&) = delete;

    [[nodiscard]] EVP_MD_CTX* ctx() const noexcept { return _ctx; }
    [[nodiscard]] const EVP_MD* md(hash_kind kind) const noexcept {
        return _md[static_cast<std::size_t>(kind)];
    }

private:
    EVP_MD_CTX* _ctx = nullptr;
    EVP_MD* _md[4] = {};
};

} // namespace

bool hash(hash_kind kind, std::initializer_list<std::span<const std::uint8_t>> parts,
          std::span<std::uint8_t> out) noexcept {
    thread_local evp_state state;
    EVP_MD_CTX* ctx = state.ctx();
    const EVP_MD* md = state.md(kind);
    if (ctx == nullptr || md == nullptr) {
        return false;
    }
    if (EVP_DigestInit_ex2(ctx, md, nullptr) != 1) {
        return false;
    }
    for (const auto& part : parts) {
        if (!part.empty() && EVP_DigestUpdate(ctx, part.data(), part.size()) != 1) {
            return false;
        }
    }
    if (kind == hash_kind::shake128 || kind == hash_kind::shake256) {
        return EVP_DigestFinalXOF(ctx, out.data(), out.size()) == 1;
    }
    if (out.size() != static_cast<std::size_t>(EVP_MD_get_size(md))) {
        return false;
    }
    unsigned int written = 0;
    return EVP_DigestFinal_ex(ctx, out.data(), &written) == 1 && written == out.size();
}

} // namespace keyrail::crypto::detail
