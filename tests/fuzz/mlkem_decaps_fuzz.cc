// ML-KEM on arbitrary input: random ciphertexts against real keys, random decapsulation keys
// and random encapsulation keys never crash, decapsulation of a right-length ciphertext always
// yields 32 bytes, and wrong lengths are errors, never reads out of bounds.
// Input: byte 0 picks the parameter set (mod 3) and the check (/ 3 mod 3), bytes 1..64
// seed the key pair, the rest is the ciphertext or key material (repeated or cut to length).
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "dataplane/crypto/mlkem.h"

namespace {

using namespace keyrail::crypto;

std::vector<std::uint8_t> stretch(const std::uint8_t* data, std::size_t size, std::size_t len) {
    std::vector<std::uint8_t> out(len);
    for (std::size_t i = 0; i < len; ++i) {
        out[i] = size == 0 ? 0 : data[i % size];
    }
    return out;
}

template <class S>
void run(unsigned mode, const std::uint8_t* data, std::size_t size) {
    std::uint8_t seeds[64] = {};
    const std::size_t seed_len = size < 64 ? size : 64;
    for (std::size_t i = 0; i < seed_len; ++i) {
        seeds[i] = data[i];
    }
    const std::uint8_t* rest = data + seed_len;
    const std::size_t rest_len = size - seed_len;

    // One of three checks per input keeps each run to about one key generation.
    if (mode == 1) {
        // An arbitrary decapsulation key fails the 7.3 check, but the internal form must
        // still return 32 bytes without faulting.
        const auto dk = stretch(rest, rest_len, S::decapsulation_key_bytes);
        const auto c = stretch(data, size, S::ciphertext_bytes);
        auto k_any = S::decaps_internal(dk, c, mlkem_default_backend());
        if (!k_any || k_any->size() != 32) {
            std::abort();
        }
        (void)S::check_decapsulation_key(dk);
        return;
    }
    if (mode == 2) {
        // An arbitrary encapsulation key: Encaps succeeds exactly when the 7.2 check passes.
        const auto ek = stretch(rest, rest_len, S::encapsulation_key_bytes);
        auto enc = S::encaps(ek, mlkem_default_backend());
        if (static_cast<bool>(enc) != S::check_encapsulation_key(ek)) {
            std::abort();
        }
        return;
    }
    auto kp = S::keygen_internal(std::span<const std::uint8_t, 32>(seeds, 32),
                                 std::span<const std::uint8_t, 32>(seeds + 32, 32),
                                 mlkem_default_backend());
    if (!kp) {
        std::abort();
    }
    // A ciphertext of the right length always decapsulates (implicit rejection if wrong).
    const auto c = stretch(rest, rest_len, S::ciphertext_bytes);
    auto k = S::decaps(kp->dk.bytes(), c, mlkem_default_backend());
    if (!k || k->size() != 32) {
        std::abort();
    }
    // The raw input as a ciphertext: an error exactly when the length is wrong.
    auto raw = S::decaps(kp->dk.bytes(), std::span(rest, rest_len), mlkem_default_backend());
    if (static_cast<bool>(raw) != (rest_len == S::ciphertext_bytes)) {
        std::abort();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    const unsigned mode = (data[0] / 3u) % 3u;
    switch (data[0] % 3) {
    case 0:
        run<detail::mlkem_set<2>>(mode, data + 1, size - 1);
        break;
    case 1:
        run<detail::mlkem_set<3>>(mode, data + 1, size - 1);
        break;
    default:
        run<detail::mlkem_set<4>>(mode, data + 1, size - 1);
        break;
    }
    return 0;
}
