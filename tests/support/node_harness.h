#pragma once
// Test harness for keyraild: a temp dir with a CA, node and SAE certificates (control/pki.h),
// a generated node.yaml, a keyraild child process with its stderr in a file, and curl and
// openssl runs against it. Loopback only; every wait is bounded.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "control/pki.h"

#ifndef KEYRAIL_KEYRAILD_PATH
#error "KEYRAIL_KEYRAILD_PATH must name the keyraild binary"
#endif

namespace keyrail::test::node {

namespace fs = std::filesystem;
namespace pki = keyrail::control::pki;

struct http_answer {
    int code = 0;
    std::string body;
};

inline std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') {
            out += "'\\''";
        } else {
            out += c;
        }
    }
    return out + "'";
}

// Runs a shell command; returns its stdout (stderr goes to /dev/null unless redirected).
inline std::string run_capture(const std::string& command, int* exit_code = nullptr) {
    FILE* pipe = ::popen(command.c_str(), "r");
    if (pipe == nullptr) {
        return {};
    }
    std::string out;
    std::array<char, 4096> buf{};
    std::size_t n = 0;
    while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) {
        out.append(buf.data(), n);
    }
    const int status = ::pclose(pipe);
    if (exit_code != nullptr) {
        *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    return out;
}

inline std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Every key the tests saw, to search the node's log for afterwards.
inline std::vector<std::string>& seen_keys_base64() {
    static std::vector<std::string> keys;
    return keys;
}

inline std::string base64_to_hex(const std::string& b64) {
    static const std::string alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string bytes;
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : b64) {
        const auto pos = alphabet.find(c);
        if (pos == std::string::npos) {
            break;
        }
        acc = (acc << 6) | static_cast<std::uint32_t>(pos);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            bytes += static_cast<char>((acc >> bits) & 0xffu);
        }
    }
    std::string hex;
    char two[3];
    for (const char c : bytes) {
        std::snprintf(two, sizeof two, "%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
        hex += two;
    }
    return hex;
}

struct keys_answer {
    std::vector<std::string> ids;
    std::vector<std::string> keys; // base64
};

// Extracts key_ID / key pairs from a Key container (the exact field names are asserted).
inline keys_answer parse_keys(const std::string& body) {
    keys_answer out;
    static const std::regex entry(R"re(\{"key_ID":"([^"]*)","key":"([^"]*)"\})re");
    for (auto it = std::sregex_iterator(body.begin(), body.end(), entry);
         it != std::sregex_iterator(); ++it) {
        out.ids.push_back((*it)[1]);
        out.keys.push_back((*it)[2]);
        seen_keys_base64().push_back((*it)[2]);
    }
    return out;
}

inline bool is_uuid_v4(const std::string& s) {
    static const std::regex re("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
    return std::regex_match(s, re);
}

inline bool is_base64(const std::string& s) {
    static const std::regex re("^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$");
    return !s.empty() && std::regex_match(s, re);
}

struct node_options {
    std::string identity_mode = "san_uri";
    std::uint64_t rate_bps = 200'000;
    std::uint64_t max_key_count = 100'000;
    std::uint32_t max_key_per_request = 128;
    std::string durability = "process";
    std::uint32_t shards = 2;
    std::uint32_t key_expiry_s = 0;     // 0: the default (not written)
    std::uint32_t reservations_max = 0; // 0: the default (not written)
};

// One keyraild node in a temp dir. SAEs: alice, bob, carol (homed here), dave (homed on the
// link peer kme-b); certificates for each plus mallory (not configured) and cn-only ones.
class node_fixture {
public:
    node_fixture() {
        char tmpl[] = "/tmp/keyrail_node_test_XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) {
            throw std::runtime_error("mkdtemp");
        }
        dir = tmpl;
        auto ca = pki::make_ca("node test CA");
        if (!ca) {
            throw std::runtime_error("make_ca");
        }
        write(*ca, "ca");
        pki::cert_spec node_spec;
        node_spec.common_name = "kme-a";
        node_spec.san_dns = {"localhost"};
        node_spec.san_ips = {"127.0.0.1"};
        write(issue_or_throw(*ca, node_spec), "kme-a");
        for (const char* sae : {"alice", "bob", "carol", "dave", "mallory"}) {
            pki::cert_spec s;
            s.common_name = sae;
            s.san_uris = {std::string("urn:keyrail:sae:") + sae};
            s.role = pki::cert_role::client;
            write(issue_or_throw(*ca, s), sae);
        }
        for (const char* sae : {"alice", "bob"}) {
            pki::cert_spec s; // CN only: no SAN URI
            s.common_name = sae;
            s.role = pki::cert_role::client;
            write(issue_or_throw(*ca, s), std::string("cn-") + sae);
        }
        std::ofstream(dir / "master.key") << std::string(64, 'a') << "\n";
        std::ofstream(dir / "link.hex") << "00112233445566778899aabbccddeeff"
                                        << "00112233445566778899aabbccddeeff\n";
    }

    ~node_fixture() {
        stop(SIGKILL);
        if (std::getenv("KEYRAIL_KEEP_TEST_DIR") == nullptr) {
            std::error_code ec;
            fs::remove_all(dir, ec);
        }
    }

    void write_config(const node_options& o) {
        std::ofstream y(dir / "node.yaml");
        y << "node:\n  id: kme-a\n  sae_api: {address: 127.0.0.1, port: 0}\n"
          << "  peer_api: {address: 127.0.0.1, port: 0}\n"
          << "  admin_api: {address: 127.0.0.1, port: 0}\n"
          << "tls:\n  cert: kme-a.crt\n  key: kme-a.key\n  sae_ca: ca.crt\n  peer_ca: ca.crt\n"
          << "sae_identity:\n  mode: " << o.identity_mode << "\n"
          << "saes:\n  - {id: alice, home_node: kme-a}\n  - {id: bob, home_node: kme-a}\n"
          << "  - {id: carol, home_node: kme-a}\n  - {id: dave, home_node: kme-b}\n"
          << "store:\n  dir: store\n  master_key_file: master.key\n  durability: "
          << o.durability << "\n";
        if (o.reservations_max != 0) {
            y << "  reservations_max: " << o.reservations_max << "\n";
        }
        y << "links:\n  - id: a-b\n    peer: kme-b\n"
          << "    peer_address: {address: 127.0.0.1, port: 9543}\n"
          << "    driver:\n      sim:\n        secret_file: link.hex\n        rate_bps: "
          << o.rate_bps << "\n"
          << "limits:\n  max_key_count: " << o.max_key_count << "\n"
          << "  max_key_per_request: " << o.max_key_per_request << "\n";
        if (o.key_expiry_s != 0) {
            y << "  key_expiry_s: " << o.key_expiry_s << "\n";
        }
        y << "shards: " << o.shards << "\n";
    }

    // Starts keyraild and waits for its ready line; appends its stderr to log.
    void start() {
        log = dir / "keyraild.log";
        pid = ::fork();
        if (pid == 0) {
            std::FILE* f = std::fopen(log.c_str(), "a");
            if (f == nullptr) {
                ::_exit(127);
            }
            ::dup2(::fileno(f), 2);
            ::execl(KEYRAIL_KEYRAILD_PATH, "keyraild", "--config", (dir / "node.yaml").c_str(),
                    static_cast<char*>(nullptr));
            ::_exit(127);
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        static const std::regex ready("ready: node kme-a, SAE API on 127\\.0\\.0\\.1 port ([0-9]+)");
        while (std::chrono::steady_clock::now() < deadline) {
            const std::string text = read_text(log);
            std::smatch m;
            // The last ready line: the log spans restarts.
            std::string::const_iterator from = text.begin();
            int found = 0;
            while (std::regex_search(from, text.end(), m, ready)) {
                found = std::stoi(m[1]);
                from = m[0].second;
            }
            if (found != 0 && found != last_port) {
                port = found;
                last_port = found;
                // Shards start after the ready line; the listening sockets already queue.
                return;
            }
            int status = 0;
            if (::waitpid(pid, &status, WNOHANG) == pid) {
                pid = -1;
                throw std::runtime_error("keyraild exited at start-up:\n" + text);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        throw std::runtime_error("keyraild not ready in 30 s:\n" + read_text(log));
    }

    // Sends sig (0: none, the node is already stopping) and waits (bounded) for the exit;
    // returns the exit code, -1 on a signal death.
    int stop(int sig = SIGTERM) {
        if (pid <= 0) {
            return -2;
        }
        if (sig != 0) {
            ::kill(pid, sig);
        }
        int status = 0;
        for (int i = 0; i < 300; ++i) {
            if (::waitpid(pid, &status, WNOHANG) == pid) {
                pid = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        pid = -1;
        return -3;
    }

    [[nodiscard]] std::string url(const std::string& path) const {
        return "https://127.0.0.1:" + std::to_string(port) + path;
    }

    // curl as SAE `who` (certificate files who.crt/who.key). extra: more curl arguments.
    http_answer curl(const std::string& who, const std::string& path,
                     const std::string& extra = "") const {
        const std::string cmd = "curl -s --max-time 10 --cacert " + shell_quote((dir / "ca.crt").string()) +
                                " --cert " + shell_quote((dir / (who + ".crt")).string()) +
                                " --key " + shell_quote((dir / (who + ".key")).string()) + " " +
                                extra + " -w '\\n%{http_code}' " + shell_quote(url(path));
        std::string out = run_capture(cmd);
        http_answer a;
        const auto nl = out.rfind('\n');
        if (nl == std::string::npos) {
            return a;
        }
        a.code = std::atoi(out.c_str() + nl + 1);
        a.body = out.substr(0, nl);
        return a;
    }

    http_answer post(const std::string& who, const std::string& path, const std::string& json) const {
        return curl(who, path, "-H 'Content-Type: application/json' --data-binary " + shell_quote(json));
    }

    // Every key seen so far, in base64 and hex, must be absent from the log.
    void expect_log_clean() const {
        const std::string text = read_text(log);
        for (const std::string& k : seen_keys_base64()) {
            EXPECT_EQ(text.find(k), std::string::npos) << "key (base64) in the log";
            const std::string hex = base64_to_hex(k);
            EXPECT_EQ(text.find(hex), std::string::npos) << "key (hex) in the log";
            std::string upper = hex;
            for (char& c : upper) {
                c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            }
            EXPECT_EQ(text.find(upper), std::string::npos) << "key (HEX) in the log";
        }
    }

    fs::path dir;
    fs::path log;
    pid_t pid = -1;
    int port = 0;
    int last_port = 0;

private:
    static pki::credential issue_or_throw(const pki::credential& ca, const pki::cert_spec& s) {
        auto c = pki::issue(ca, s);
        if (!c) {
            throw std::runtime_error("issue " + s.common_name);
        }
        return *c;
    }
    void write(const pki::credential& c, const std::string& name) {
        if (!pki::write_files(c, dir / (name + ".crt"), dir / (name + ".key"))) {
            throw std::runtime_error("write " + name);
        }
    }
};

} // namespace keyrail::test::node
