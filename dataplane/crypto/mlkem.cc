// ML-KEM (FIPS 203): K-PKE (Algorithms 13-15) and ML-KEM internal and public algorithms
// (16-21), with the input checks of section 7. Secrets on the stack are wiped before return.
#include "dataplane/crypto/mlkem.h"

#include <algorithm>

#include <openssl/rand.h>

#include "dataplane/crypto/ct.h"
#include "dataplane/crypto/errc.h"
#include "dataplane/crypto/hash.h"
#include "dataplane/crypto/mlkem_internal.h"
#include "dataplane/crypto/mlkem_openssl.h"
#include "engine/secure.h"

namespace keyrail::crypto {
namespace detail {
namespace {

using bytes = std::span<const std::uint8_t>;
using mut_bytes = std::span<std::uint8_t>;

template <std::size_t K>
using poly_vec = std::array<poly, K>;

// Wipes a trivially copyable object when the scope ends, whatever path returns.
template <class T>
class wipe_on_exit {
public:
    explicit wipe_on_exit(T& object) noexcept : _object(object) {}
    ~wipe_on_exit() { secure_wipe(&_object, sizeof(T)); }
    wipe_on_exit(const wipe_on_exit&) = delete;
    wipe_on_exit& operator=(const wipe_on_exit&) = delete;

private:
    T& _object;
};

// PRF_eta(s, b) (FIPS 203 (4.3)) followed by SamplePolyCBD_eta.
[[nodiscard]] bool sample_noise(poly& out, bytes seed, std::uint8_t nonce, unsigned eta) noexcept {
    std::array<std::uint8_t, 64 * 3> buf;
    const std::uint8_t b[1] = {nonce};
    const mut_bytes prf(buf.data(), 64 * eta);
    const bool ok = hash(hash_kind::shake256, {seed, b}, prf);
    sample_cbd(out, prf, eta);
    secure_wipe(buf.data(), buf.size());
    return ok;
}

// A_hat[i][j] = SampleNTT(rho || j || i) (Algorithm 13 line 6, Algorithm 14 line 6).
template <std::size_t K>
[[nodiscard]] result<void> expand_matrix(std::array<poly_vec<K>, K>& a,
                                         std::span<const std::uint8_t, 32> rho) noexcept {
    for (std::size_t i = 0; i < K; ++i) {
        for (std::size_t j = 0; j < K; ++j) {
            auto r = sample_ntt(a[i][j], rho, static_cast<std::uint8_t>(j),
                                static_cast<std::uint8_t>(i));
            if (!r) {
                return r;
            }
        }
    }
    return {};
}

template <std::size_t K>
void dot_ntt(poly& out, const poly_vec<K>& a, const poly_vec<K>& b) noexcept {
    std::array<std::uint32_t, n> acc{};
    for (std::size_t j = 0; j < K; ++j) {
        multiply_ntt_acc(acc, a[j], b[j]);
    }
    reduce_acc(out, acc);
}

void add_to(poly& f, const poly& g) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        f.c[i] = reduce_once(std::uint32_t{f.c[i]} + g.c[i]);
    }
}

// K-PKE.KeyGen (Algorithm 13), writing ek_pke and dk_pke.
template <std::size_t K>
[[nodiscard]] result<void> kpke_keygen(mut_bytes ek, mut_bytes dk_pke,
                                       std::span<const std::uint8_t, 32> d) noexcept {
    using set = mlkem_set<K>;
    std::array<std::uint8_t, 64> rho_sigma;
    wipe_on_exit wipe_rs(rho_sigma);
    const std::uint8_t k_byte[1] = {static_cast<std::uint8_t>(K)};
    if (!hash(hash_kind::sha3_512, {d, k_byte}, rho_sigma)) {
        return fail(errc::hash_failure);
    }
    // rho becomes part of the public encapsulation key.
    declassify(rho_sigma.data(), 32);
    const std::span<const std::uint8_t, 32> rho(rho_sigma.data(), 32);
    const bytes sigma(rho_sigma.data() + 32, 32);

    std::array<poly_vec<K>, K> a;
    if (auto r = expand_matrix<K>(a, rho); !r) {
        return r;
    }
    poly_vec<K> s;
    poly_vec<K> e;
    wipe_on_exit wipe_s(s);
    wipe_on_exit wipe_e(e);
    std::uint8_t nonce = 0;
    bool ok = true;
    for (auto& p : s) {
        ok &= sample_noise(p, sigma, nonce++, set::eta1);
    }
    for (auto& p : e) {
        ok &= sample_noise(p, sigma, nonce++, set::eta1);
    }
    if (!ok) {
        return fail(errc::hash_failure);
    }
    for (std::size_t i = 0; i < K; ++i) {
        ntt(s[i]);
        ntt(e[i]);
    }
    for (std::size_t i = 0; i < K; ++i) {
        poly t;
        dot_ntt<K>(t, a[i], s);
        add_to(t, e[i]);
        byte_encode(ek.subspan(384 * i, 384), t, 12);
        byte_encode(dk_pke.subspan(384 * i, 384), s[i], 12);
    }
    std::copy(rho.begin(), rho.end(), ek.begin() + 384 * K);
    return {};
}

// K-PKE.Encrypt (Algorithm 14). ek has passed the length check.
template <std::size_t K>
[[nodiscard]] result<void> kpke_encrypt(mut_bytes c, bytes ek, std::span<const std::uint8_t, 32> m,
                                        bytes r) noexcept {
    using set = mlkem_set<K>;
    poly_vec<K> t;
    for (std::size_t i = 0; i < K; ++i) {
        byte_decode(t[i], ek.subspan(384 * i, 384), 12);
    }
    const std::span<const std::uint8_t, 32> rho(ek.data() + 384 * K, 32);
    std::array<poly_vec<K>, K> a;
    if (auto res = expand_matrix<K>(a, rho); !res) {
        return res;
    }
    poly_vec<K> y;
    poly_vec<K> e1;
    poly e2;
    poly mu;
    wipe_on_exit wipe_y(y);
    wipe_on_exit wipe_e1(e1);
    wipe_on_exit wipe_e2(e2);
    wipe_on_exit wipe_mu(mu);
    std::uint8_t nonce = 0;
    bool ok = true;
    for (auto& p : y) {
        ok &= sample_noise(p, r, nonce++, set::eta1);
    }
    for (auto& p : e1) {
        ok &= sample_noise(p, r, nonce++, set::eta2);
    }
    ok &= sample_noise(e2, r, nonce, set::eta2);
    if (!ok) {
        return fail(errc::hash_failure);
    }
    for (auto& p : y) {
        ntt(p);
    }
    // u = NTT^-1(A_hat^T o y_hat) + e1, compressed into c1.
    for (std::size_t i = 0; i < K; ++i) {
        std::array<std::uint32_t, n> acc{};
        for (std::size_t j = 0; j < K; ++j) {
            multiply_ntt_acc(acc, a[j][i], y[j]);
        }
        poly u;
        reduce_acc(u, acc);
        ntt_inverse(u);
        add_to(u, e1[i]);
        for (auto& x : u.c) {
            x = compress(x, set::du);
        }
        byte_encode(c.subspan(32 * set::du * i, 32 * set::du), u, set::du);
    }
    // v = NTT^-1(t_hat^T o y_hat) + e2 + Decompress_1(m), compressed into c2.
    poly v;
    dot_ntt<K>(v, t, y);
    ntt_inverse(v);
    add_to(v, e2);
    byte_decode(mu, m, 1);
    for (auto& x : mu.c) {
        x = decompress(x, 1);
    }
    add_to(v, mu);
    for (auto& x : v.c) {
        x = compress(x, set::dv);
    }
    byte_encode(c.subspan(32 * set::du * K, 32 * set::dv), v, set::dv);
    secure_wipe(&v, sizeof v);
    return {};
}

// K-PKE.Decrypt (Algorithm 15).
template <std::size_t K>
void kpke_decrypt(std::span<std::uint8_t, 32> m, bytes dk_pke, bytes c) noexcept {
    using set = mlkem_set<K>;
    poly_vec<K> u;
    poly_vec<K> s;
    poly w;
    wipe_on_exit wipe_s(s);
    wipe_on_exit wipe_w(w);
    for (std::size_t i = 0; i < K; ++i) {
        byte_decode(u[i], c.subspan(32 * set::du * i, 32 * set::du), set::du);
        for (auto& x : u[i].c) {
            x = decompress(x, set::du);
        }
        ntt(u[i]);
        byte_decode(s[i], dk_pke.subspan(384 * i, 384), 12);
    }
    dot_ntt<K>(w, s, u);
    ntt_inverse(w);
    poly v;
    byte_decode(v, c.subspan(32 * set::du * K, 32 * set::dv), set::dv);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t vi = decompress(v.c[i], set::dv);
        w.c[i] = compress(reduce_once(vi + q - w.c[i]), 1);
    }
    byte_encode(m, w, 1);
}

[[nodiscard]] bool random_seed(std::span<std::uint8_t, 32> out) noexcept {
    return RAND_priv_bytes(out.data(), static_cast<int>(out.size())) == 1;
}

} // namespace

template <std::size_t K>
bool mlkem_set<K>::check_encapsulation_key(std::span<const std::uint8_t> ek) noexcept {
    if (ek.size() != encapsulation_key_bytes) {
        return false;
    }
    return coefficients_reduced(ek.first(384 * K));
}

template <std::size_t K>
bool mlkem_set<K>::check_decapsulation_key(std::span<const std::uint8_t> dk) noexcept {
    if (dk.size() != decapsulation_key_bytes) {
        return false;
    }
    std::array<std::uint8_t, 32> h;
    if (!hash(hash_kind::sha3_256, {dk.subspan(384 * K, 384 * K + 32)}, h)) {
        return false;
    }
    // Both sides are public halves of dk (H(ek) and the stored hash), so the verdict is too.
    std::uint8_t differ = ct_differ_mask(h.data(), dk.data() + 768 * K + 32, 32);
    declassify(&differ, sizeof differ);
    return differ == 0;
}

template <std::size_t K>
auto mlkem_set<K>::keygen_internal(seed d, seed z, mlkem_backend b) noexcept -> result<key_pair> {
    if (b == mlkem_backend::openssl) {
        return openssl_keygen<K>(d, z);
    }
    if (b != mlkem_backend::native) {
        return fail(errc::backend_unavailable);
    }
    key_pair kp;
    const mut_bytes dk(kp.dk.data(), decapsulation_key_bytes);
    if (auto r = kpke_keygen<K>(kp.ek, dk.first(384 * K), d); !r) {
        return fail(r.error());
    }
    // dk = dk_pke || ek || H(ek) || z (Algorithm 16).
    std::copy(kp.ek.begin(), kp.ek.end(), dk.begin() + 384 * K);
    if (!hash(hash_kind::sha3_256, {bytes(kp.ek)}, dk.subspan(768 * K + 32, 32))) {
        return fail(errc::hash_failure);
    }
    std::copy(z.begin(), z.end(), dk.begin() + 768 * K + 64);
    return kp;
}

template <std::size_t K>
auto mlkem_set<K>::encaps_internal(std::span<const std::uint8_t> ek, seed m,
                                   mlkem_backend b) noexcept -> result<encapsulation> {
    if (ek.size() != encapsulation_key_bytes) {
        return fail(errc::invalid_encapsulation_key);
    }
    if (b == mlkem_backend::openssl) {
        return openssl_encaps<K>(ek, m);
    }
    if (b != mlkem_backend::native) {
        return fail(errc::backend_unavailable);
    }
    // (K, r) = G(m || H(ek)) (Algorithm 17).
    std::array<std::uint8_t, 32> h;
    std::array<std::uint8_t, 64> k_r;
    wipe_on_exit wipe_kr(k_r);
    if (!hash(hash_kind::sha3_256, {ek}, h) || !hash(hash_kind::sha3_512, {m, h}, k_r)) {
        return fail(errc::hash_failure);
    }
    encapsulation out;
    if (auto r = kpke_encrypt<K>(out.c, ek, m, bytes(k_r.data() + 32, 32)); !r) {
        return fail(r.error());
    }
    std::copy(k_r.begin(), k_r.begin() + 32, out.k.data());
    return out;
}

template <std::size_t K>
auto mlkem_set<K>::decaps_internal(std::span<const std::uint8_t> dk,
                                   std::span<const std::uint8_t> c, mlkem_backend b) noexcept
    -> result<shared_secret> {
    if (dk.size() != decapsulation_key_bytes) {
        return fail(errc::invalid_decapsulation_key);
    }
    if (c.size() != ciphertext_bytes) {
        return fail(errc::invalid_ciphertext);
    }
    if (b == mlkem_backend::openssl) {
        return openssl_decaps<K>(dk, c);
    }
    if (b != mlkem_backend::native) {
        return fail(errc::backend_unavailable);
    }
    const bytes dk_pke = dk.first(384 * K);
    const bytes ek_pke = dk.subspan(384 * K, 384 * K + 32);
    const bytes h = dk.subspan(768 * K + 32, 32);
    const bytes z = dk.subspan(768 * K + 64, 32);
    // The embedded ek is public: FIPS 203 publishes it as the encapsulation key.
    declassify(ek_pke.data(), ek_pke.size());

    std::array<std::uint8_t, 32> m;
    std::array<std::uint8_t, 64> k_r;
    std::array<std::uint8_t, 32> k_bar;
    ciphertext c_prime;
    wipe_on_exit wipe_m(m);
    wipe_on_exit wipe_kr(k_r);
    wipe_on_exit wipe_kbar(k_bar);
    wipe_on_exit wipe_cp(c_prime);
    kpke_decrypt<K>(m, dk_pke, c);
    // (K', r') = G(m' || h); K_bar = J(z || c) (Algorithm 18).
    if (!hash(hash_kind::sha3_512, {bytes(m), h}, k_r) ||
        !hash(hash_kind::shake256, {z, c}, k_bar)) {
        return fail(errc::hash_failure);
    }
    if (auto r = kpke_encrypt<K>(c_prime, ek_pke, m, bytes(k_r.data() + 32, 32)); !r) {
        return fail(r.error());
    }
    // Implicit rejection: K' unless c != c', compared and selected without a branch.
    const std::uint8_t reject = ct_differ_mask(c.data(), c_prime.data(), ciphertext_bytes);
    shared_secret out;
    ct_select(out.data(), k_r.data(), k_bar.data(), 32, reject);
    return out;
}

template <std::size_t K>
auto mlkem_set<K>::keygen(mlkem_backend b) noexcept -> result<key_pair> {
    secret_bytes<64> d_z;
    if (!random_seed(std::span<std::uint8_t, 32>(d_z.data(), 32)) ||
        !random_seed(std::span<std::uint8_t, 32>(d_z.data() + 32, 32))) {
        return fail(errc::random_failure);
    }
    return keygen_internal(seed(d_z.data(), 32), seed(d_z.data() + 32, 32), b);
}

template <std::size_t K>
auto mlkem_set<K>::encaps(std::span<const std::uint8_t> ek, mlkem_backend b) noexcept
    -> result<encapsulation> {
    if (!check_encapsulation_key(ek)) {
        return fail(errc::invalid_encapsulation_key);
    }
    secret_bytes<32> m;
    if (!random_seed(m.bytes())) {
        return fail(errc::random_failure);
    }
    return encaps_internal(ek, m.bytes(), b);
}

template <std::size_t K>
auto mlkem_set<K>::decaps(std::span<const std::uint8_t> dk, std::span<const std::uint8_t> c,
                          mlkem_backend b) noexcept -> result<shared_secret> {
    if (c.size() != ciphertext_bytes) {
        return fail(errc::invalid_ciphertext);
    }
    if (!check_decapsulation_key(dk)) {
        return fail(errc::invalid_decapsulation_key);
    }
    return decaps_internal(dk, c, b);
}

template struct mlkem_set<2>;
template struct mlkem_set<3>;
template struct mlkem_set<4>;

} // namespace detail

std::span<const mlkem_backend> mlkem_backends() noexcept {
#if KEYRAIL_MLKEM_HAVE_OPENSSL
    static constexpr mlkem_backend list[] = {mlkem_backend::openssl, mlkem_backend::native};
#else
    static constexpr mlkem_backend list[] = {mlkem_backend::native};
#endif
    return list;
}

mlkem_backend mlkem_default_backend() noexcept { return mlkem_backends()[0]; }

} // namespace keyrail::crypto
