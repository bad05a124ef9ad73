#pragma once
// The engine tests' certificates (tests/support/make_test_certs.sh: a CA, server and client
// certificates, refusal cases) made once per test suite in a fresh directory under /tmp.
// Needs KEYRAIL_SOURCE_DIR (the tests' CMake sets it).
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

namespace keyrail::test {

// The directory holding the certificates, or an empty path when they could not be made.
inline std::filesystem::path make_test_certs(std::string_view name) {
    std::string dir = "/tmp/" + std::string(name) + "-XXXXXX";
    if (::mkdtemp(dir.data()) == nullptr) {
        return {};
    }
    const std::string cmd =
        std::string("sh ") + KEYRAIL_SOURCE_DIR + "/tests/support/make_test_certs.sh " + dir;
    if (std::system(cmd.c_str()) != 0) {
        std::filesystem::remove_all(dir);
        return {};
    }
    return dir;
}

} // namespace keyrail::test
