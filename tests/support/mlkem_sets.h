#pragma once
// Runs a template lambda with the ML-KEM parameter set named like "ML-KEM-768", and checks a
// byte vector against an API result, for the ML-KEM vector tests.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/crypto/mlkem.h"

namespace keyrail::test {

template <class F>
decltype(auto) with_mlkem_set(const std::string& name, F&& f) {
    if (name == "ML-KEM-512") {
        return f.template operator()<crypto::detail::mlkem_set<2>>();
    }
    if (name == "ML-KEM-768") {
        return f.template operator()<crypto::detail::mlkem_set<3>>();
    }
    if (name == "ML-KEM-1024") {
        return f.template operator()<crypto::detail::mlkem_set<4>>();
    }
    throw std::runtime_error("unknown parameter set " + name);
}

template <class Bytes>
bool same_bytes(const Bytes& got, const std::vector<std::uint8_t>& want) {
    return got.size() == want.size() &&
           std::equal(want.begin(), want.end(), reinterpret_cast<const std::uint8_t*>(got.data()));
}

} // namespace keyrail::test
