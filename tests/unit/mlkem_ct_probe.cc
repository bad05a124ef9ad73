// The program mlkem_ct_test runs under valgrind memcheck to show that ML-KEM is constant time
// in its secrets. It marks d, z, m and the decapsulation key undefined
// (VALGRIND_MAKE_MEM_UNDEFINED); memcheck then reports every conditional jump and every
// memory address computed from them, and --error-exitcode turns a report into a failure.
//
// Public outputs (ek, c) are marked defined before they are used as inputs again, as a real
// peer would receive them. Inside the library only values FIPS 203 makes public pass through
// detail::declassify (see dataplane/crypto/ct.h). Results are marked defined only to compare
// them with each other at the very end.
//
// With --negative-control the program branches on a secret on purpose, so the test can show
// that memcheck would catch such a leak.
#include <cstdio>
#include <cstring>

#include <valgrind/memcheck.h>

#include "dataplane/crypto/mlkem.h"

namespace {

using namespace keyrail::crypto;

template <class S>
bool run(std::uint8_t tag) {
    std::uint8_t d[32];
    std::uint8_t z[32];
    std::uint8_t m[32];
    for (int i = 0; i < 32; ++i) {
        d[i] = static_cast<std::uint8_t>(tag + i);
        z[i] = static_cast<std::uint8_t>(tag * 3 + i);
        m[i] = static_cast<std::uint8_t>(tag * 7 + i);
    }
    (void)VALGRIND_MAKE_MEM_UNDEFINED(d, sizeof d);
    (void)VALGRIND_MAKE_MEM_UNDEFINED(z, sizeof z);
    (void)VALGRIND_MAKE_MEM_UNDEFINED(m, sizeof m);

    auto kp = S::keygen_internal(std::span<const std::uint8_t, 32>(d),
                                 std::span<const std::uint8_t, 32>(z), mlkem_backend::native);
    if (!kp) {
        return false;
    }
    // ek is published; dk stays secret, as a whole (also its public ek and H(ek) parts).
    (void)VALGRIND_MAKE_MEM_DEFINED(kp->ek.data(), kp->ek.size());
    (void)VALGRIND_MAKE_MEM_UNDEFINED(kp->dk.data(), kp->dk.size());

    // The public Encaps applies the 7.2 check, on public data only.
    auto enc = S::encaps(kp->ek, mlkem_backend::native);
    auto enc_m = S::encaps_internal(kp->ek, std::span<const std::uint8_t, 32>(m),
                                    mlkem_backend::native);
    if (!enc || !enc_m) {
        return false;
    }
    // The ciphertexts travel to the peer in clear.
    (void)VALGRIND_MAKE_MEM_DEFINED(enc->c.data(), enc->c.size());
    (void)VALGRIND_MAKE_MEM_DEFINED(enc_m->c.data(), enc_m->c.size());

    auto k = S::decaps(kp->dk.bytes(), enc->c, mlkem_backend::native);
    auto k_m = S::decaps_internal(kp->dk.bytes(), enc_m->c, mlkem_backend::native);
    // Implicit rejection: a modified ciphertext takes the same path.
    auto c_bad = enc_m->c;
    c_bad[5] ^= 0x10;
    auto k_bad = S::decaps(kp->dk.bytes(), c_bad, mlkem_backend::native);
    if (!k || !k_m || !k_bad) {
        return false;
    }
    // Only now, to check the results, are they declassified.
    for (auto* s : {&enc->k, &enc_m->k, &*k, &*k_m, &*k_bad}) {
        (void)VALGRIND_MAKE_MEM_DEFINED(s->data(), s->size());
    }
    return *k == enc->k && *k_m == enc_m->k && !(*k_bad == enc_m->k);
}

} // namespace

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "--negative-control") == 0) {
        std::uint8_t secret[32] = {};
        (void)VALGRIND_MAKE_MEM_UNDEFINED(secret, sizeof secret);
        volatile int sink = 0;
        if (secret[3] & 1) { // the leak memcheck must report
            sink = sink + 1;
        }
        return 0;
    }
    const bool ok = run<detail::mlkem_set<2>>(1) && run<detail::mlkem_set<3>>(2) &&
                    run<detail::mlkem_set<4>>(3);
    std::printf("mlkem_ct_probe: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 2;
}
