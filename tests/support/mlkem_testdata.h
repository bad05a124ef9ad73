#pragma once
// Access to /work/shared/testdata/mlkem (KEYRAIL_TESTDATA): whole files, gzip files through
// `gzip -dc`, hex, and the `name = value` record files of flat/ and cctv/.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace keyrail::test {

using byte_vec = std::vector<std::uint8_t>;

inline std::string mlkem_testdata_dir() {
    const char* root = std::getenv("KEYRAIL_TESTDATA");
    if (root == nullptr || *root == '\0') {
        throw std::runtime_error("KEYRAIL_TESTDATA is not set");
    }
    return std::string(root) + "/mlkem";
}

inline std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw std::runtime_error("cannot open " + path);
    }
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline std::string read_gzip(const std::string& path) {
    std::ifstream probe(path);
    if (!probe) {
        throw std::runtime_error("cannot open " + path);
    }
    const std::string cmd = "gzip -dc '" + path + "'";
    FILE* pipe = popen(cmd.c_str(), "r");
    if (pipe == nullptr) {
        throw std::runtime_error("cannot run " + cmd);
    }
    std::string out;
    char buf[65536];
    std::size_t got = 0;
    while ((got = std::fread(buf, 1, sizeof buf, pipe)) > 0) {
        out.append(buf, got);
    }
    if (pclose(pipe) != 0) {
        throw std::runtime_error("gzip failed on " + path);
    }
    return out;
}

inline byte_vec hex(const std::string& s) {
    if (s.size() % 2 != 0) {
        throw std::runtime_error("odd hex length");
    }
    byte_vec out(s.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
        out[i] = static_cast<std::uint8_t>(std::stoul(s.substr(2 * i, 2), nullptr, 16));
    }
    return out;
}

inline std::string to_hex(const std::uint8_t* p, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < n; ++i) {
        out += digits[p[i] >> 4];
        out += digits[p[i] & 15];
    }
    return out;
}

using record = std::map<std::string, std::string>;

// Records of `name = value` lines separated by blank lines; `#` lines are comments. A name
// that repeats inside one record (cctv intermediate files) keeps its first value.
inline std::vector<record> read_records(const std::string& text) {
    std::vector<record> out;
    record cur;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') {
            line.pop_back();
        }
        if (line.empty()) {
            if (!cur.empty()) {
                out.push_back(std::move(cur));
                cur.clear();
            }
            continue;
        }
        if (line[0] == '#') {
            continue;
        }
        const auto eq = line.find(" = ");
        if (eq == std::string::npos) {
            continue;
        }
        cur.emplace(line.substr(0, eq), line.substr(eq + 3));
    }
    if (!cur.empty()) {
        out.push_back(std::move(cur));
    }
    return out;
}

} // namespace keyrail::test
