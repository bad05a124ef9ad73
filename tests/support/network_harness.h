#pragma once
// Test harness for a network of keyraild nodes on loopback: one temp dir, one CA (both the SAE
// CA and the peer CA), node certificates (CN <id>, SAN URI urn:keyrail:node:<id>, DNS localhost,
// IP 127.0.0.1), SAE certificates, one node.yaml per node with fixed free ports, one shared
// secret file per link (the same file at both ends), a store and master key per node; start,
// SIGTERM, SIGKILL and restart of each node; ETSI 014 calls through curl with client
// certificates. Every wait is bounded and a failed wait says what it waited for, with the tail
// of the node logs.
//
// Thread use: one test thread drives the nodes (start, stop, kill, write_config); any number of
// threads may call the HTTP helpers (enc_keys, dec_keys, ...) at the same time.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <cctype>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <unordered_set>

#include "tests/support/node_harness.h"

namespace keyrail::test::net {

namespace fs = std::filesystem;
namespace pki = keyrail::control::pki;
using node::base64_to_hex;
using node::is_base64;
using node::is_uuid_v4;
using node::read_text;
using node::run_capture;
using node::shell_quote;

// The mandated body of a dec_keys for an ID that is not (or no longer) there.
inline const std::string not_found_body =
    R"({"message":"one or more keys specified are not found on KME"})";

struct sae_home {
    std::string id;
    std::string home_node;
};

// A link between nodes a and b; both ends name it `id`.
struct link_ends {
    std::string id;
    std::string a;
    std::string b;
};

// Per-node settings written into node.yaml. Unset optionals are not written (the default).
struct node_options {
    std::uint64_t rate_bps = 20'000'000;
    std::string durability = "process";
    std::uint32_t shards = 2;
    std::uint32_t max_key_per_request = 128;
    std::uint64_t max_key_count = 100'000;
    std::uint32_t max_sae_id_count = 0;
    std::optional<std::uint32_t> dec_keys_wait_ms;
    std::optional<std::uint32_t> key_expiry_s;
    std::optional<std::uint32_t> reservations_max;
    std::uint32_t burst_blocks = 16;
    std::uint32_t jitter_percent = 10;
    // link id -> secret file for this end only (the wrong-secret test).
    std::map<std::string, fs::path> secret_override;
};

// One HTTP exchange through curl.
struct answer {
    int code = 0;       // 0: no HTTP answer (refused, reset, timed out)
    int curl_exit = 0;  // curl's exit status: 7 = could not connect, so nothing was sent
    std::string body;
    double server_s = 0; // time_starttransfer - time_pretransfer: the node's time on it
    double total_s = 0;
    std::vector<std::string> ids;  // key_IDs of a Key container, in order
    std::vector<std::string> keys; // their keys (base64), in order

    // True when the request cannot have reached the node: curl could not connect, or the TLS
    // handshake failed (the request is sent only after it).
    [[nodiscard]] bool surely_not_sent() const {
        return code == 0 && (curl_exit == 7 || curl_exit == 35);
    }
};

// Log sizes, to look only at lines written after a point.
using log_marks = std::map<std::string, std::uintmax_t>;

// Extracts the key_ID/key pairs of a Key container ({"key_ID":"...","key":"..."}, the exact
// field order the node writes). Hand-written: bodies reach 100 kB and std::regex recurses per
// character.
inline void parse_key_container(const std::string& body, std::vector<std::string>& ids,
                                std::vector<std::string>& keys) {
    static const std::string open_id = "{\"key_ID\":\"";
    static const std::string mid = "\",\"key\":\"";
    std::size_t at = 0;
    while ((at = body.find(open_id, at)) != std::string::npos) {
        const std::size_t id_begin = at + open_id.size();
        const std::size_t id_end = body.find('"', id_begin);
        if (id_end == std::string::npos || body.compare(id_end, mid.size(), mid) != 0) {
            break;
        }
        const std::size_t key_begin = id_end + mid.size();
        const std::size_t key_end = body.find('"', key_begin);
        if (key_end == std::string::npos || body.compare(key_end, 2, "\"}") != 0) {
            break;
        }
        ids.push_back(body.substr(id_begin, id_end - id_begin));
        keys.push_back(body.substr(key_begin, key_end - key_begin));
        at = key_end + 2;
    }
}

inline std::string random_hex(std::size_t bytes) {
    std::random_device rd;
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < bytes; ++i) {
        const unsigned b = rd() & 0xffu;
        s += digits[b >> 4];
        s += digits[b & 15u];
    }
    return s;
}

inline std::string random_uuid_v4() {
    std::string h = random_hex(16);
    h[12] = '4';
    h[16] = "89ab"[std::stoi(h.substr(16, 1), nullptr, 16) & 3];
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" +
           h.substr(16, 4) + "-" + h.substr(20, 12);
}

inline std::uintmax_t file_size_or_zero(const fs::path& p) {
    std::error_code ec;
    const auto n = fs::file_size(p, ec);
    return ec ? 0 : n;
}

inline std::string read_from(const fs::path& p, std::uintmax_t offset) {
    std::ifstream in(p, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(offset));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline std::string tail_of(const std::string& text, std::size_t chars) {
    return text.size() <= chars ? text : "..." + text.substr(text.size() - chars);
}

// Finds a "link '<link>' (to|from) <peer> up" line: "up" then end of line or a non-word
// character, so "upgrade" does not count.
inline bool has_link_up_line(const std::string& text, const std::string& link,
                             const std::string& peer) {
    for (const char* dir : {" to ", " from "}) {
        const std::string needle = "link '" + link + "'" + dir + peer + " up";
        std::size_t at = 0;
        while ((at = text.find(needle, at)) != std::string::npos) {
            const std::size_t after = at + needle.size();
            if (after == text.size()) {
                return true;
            }
            const auto c = static_cast<unsigned char>(text[after]);
            if (std::isalnum(c) == 0 && c != '_') {
                return true;
            }
            at = after;
        }
    }
    return false;
}

// A free loopback port: bind 127.0.0.1:0 and read it back. The socket stays open (held) until
// the caller closes it, so ports picked together are distinct.
inline int bind_free_port(std::uint16_t& port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw std::runtime_error("socket");
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        ::close(fd);
        throw std::runtime_error("bind 127.0.0.1:0");
    }
    port = ntohs(a.sin_port);
    return fd;
}

inline bool port_accepts(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    if (ok) {
        // Our ports come from the ephemeral range, so with nothing listening the kernel may
        // pick the same port as our source and connect the socket to itself (TCP
        // simultaneous open): that is not a listener.
        sockaddr_in self{};
        socklen_t len = sizeof self;
        ok = ::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &len) == 0 &&
             self.sin_port != a.sin_port;
    }
    ::close(fd);
    return ok;
}

enum class start_wait {
    ready_line, // the "ready: node <id>, SAE API on 127.0.0.1 port <N>" line of this run
    sae_port,   // only until the SAE port accepts TCP connections
};

struct node_state {
    std::string id;
    fs::path dir; // <root>/<id>: node.yaml, keyraild.log, master.key, store/
    fs::path config;
    fs::path log;
    std::uint16_t sae_port = 0;
    std::uint16_t peer_port = 0;
    node_options options;
    pid_t pid = -1;
    std::uintmax_t run_log_offset = 0; // where the current (or last) run's log starts
    int starts = 0;
};

class network {
public:
    network(const std::vector<std::string>& node_ids, std::vector<sae_home> saes,
            std::vector<link_ends> links)
        : _saes(std::move(saes)), _links(std::move(links)) {
        char tmpl[] = "/tmp/keyrail_net_test_XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) {
            throw std::runtime_error("mkdtemp");
        }
        dir = tmpl;
        auto ca = pki::make_ca("network test CA");
        if (!ca) {
            throw std::runtime_error("make_ca");
        }
        write_credential(*ca, dir / "ca");

        std::vector<int> held;
        for (const std::string& id : node_ids) {
            node_state n;
            n.id = id;
            n.dir = dir / id;
            fs::create_directories(n.dir);
            n.config = n.dir / "node.yaml";
            n.log = n.dir / "keyraild.log";
            held.push_back(bind_free_port(n.sae_port));
            held.push_back(bind_free_port(n.peer_port));
            pki::cert_spec spec;
            spec.common_name = id;
            spec.san_uris = {"urn:keyrail:node:" + id};
            spec.san_dns = {"localhost"};
            spec.san_ips = {"127.0.0.1"};
            spec.role = pki::cert_role::server_and_client; // TLS server (SAE, peer API) and client
            write_credential(issue_or_throw(*ca, spec), dir / id);
            std::ofstream(n.dir / "master.key") << random_hex(32) << "\n";
            ::chmod((n.dir / "master.key").c_str(), 0600);
            _nodes.emplace(id, std::move(n));
        }
        for (int fd : held) {
            ::close(fd);
        }
        std::vector<std::string> sae_certs;
        for (const sae_home& s : _saes) {
            if (_nodes.count(s.home_node) == 0) {
                throw std::runtime_error("SAE " + s.id + " homed on unknown node " + s.home_node);
            }
            sae_certs.push_back(s.id);
        }
        sae_certs.push_back("mallory"); // a valid certificate for an SAE no node configures
        for (const std::string& id : sae_certs) {
            pki::cert_spec s;
            s.common_name = id;
            s.san_uris = {"urn:keyrail:sae:" + id};
            s.role = pki::cert_role::client;
            write_credential(issue_or_throw(*ca, s), dir / id);
        }
        fs::create_directories(dir / "links");
        for (const link_ends& l : _links) {
            if (_nodes.count(l.a) == 0 || _nodes.count(l.b) == 0 || l.a == l.b) {
                throw std::runtime_error("link " + l.id + " needs two known nodes");
            }
            write_secret(l.id);
        }
    }

    ~network() {
        for (auto& [id, n] : _nodes) {
            if (n.pid > 0) {
                ::kill(n.pid, SIGKILL);
                int status = 0;
                ::waitpid(n.pid, &status, 0);
                n.pid = -1;
            }
        }
        if (std::getenv("KEYRAIL_KEEP_TEST_DIR") == nullptr) {
            std::error_code ec;
            fs::remove_all(dir, ec);
        } else {
            std::printf("network test dir kept: %s\n", dir.c_str());
        }
    }

    network(const network&) = delete;
    network& operator=(const network&) = delete;

    node_state& at(const std::string& id) {
        auto it = _nodes.find(id);
        if (it == _nodes.end()) {
            throw std::runtime_error("no node " + id);
        }
        return it->second;
    }
    const node_state& at(const std::string& id) const {
        auto it = _nodes.find(id);
        if (it == _nodes.end()) {
            throw std::runtime_error("no node " + id);
        }
        return it->second;
    }
    node_options& options(const std::string& id) { return at(id).options; }
    void set_options_all(const node_options& o) {
        for (auto& [id, n] : _nodes) {
            n.options = o;
        }
    }
    std::vector<std::string> node_ids() const {
        std::vector<std::string> out;
        for (const auto& [id, n] : _nodes) {
            out.push_back(id);
        }
        return out;
    }

    // A fresh random link secret (64 bytes as hex) in links/<name>.hex; returns its path.
    fs::path write_secret(const std::string& name) {
        const fs::path p = dir / "links" / (name + ".hex");
        std::ofstream(p) << random_hex(64) << "\n";
        ::chmod(p.c_str(), 0600);
        return p;
    }

    void write_config(const std::string& id) {
        const node_state& n = at(id);
        const node_options& o = n.options;
        std::ofstream y(n.config);
        y << "# written by tests/support/network_harness.h\n"
          << "node:\n  id: " << id << "\n"
          << "  sae_api: {address: 127.0.0.1, port: " << n.sae_port << "}\n"
          << "  peer_api: {address: 127.0.0.1, port: " << n.peer_port << "}\n"
          << "  admin_api: {address: 127.0.0.1, port: 0}\n"
          << "tls:\n  cert: " << (dir / (id + ".crt")).string() << "\n"
          << "  key: " << (dir / (id + ".key")).string() << "\n"
          << "  sae_ca: " << (dir / "ca.crt").string() << "\n"
          << "  peer_ca: " << (dir / "ca.crt").string() << "\n"
          << "sae_identity:\n  mode: san_uri\n"
          << "saes:\n";
        for (const sae_home& s : _saes) {
            y << "  - {id: " << s.id << ", home_node: " << s.home_node << "}\n";
        }
        y << "store:\n  dir: " << (n.dir / "store").string() << "\n"
          << "  master_key_file: " << (n.dir / "master.key").string() << "\n"
          << "  durability: " << o.durability << "\n";
        if (o.reservations_max) {
            y << "  reservations_max: " << *o.reservations_max << "\n";
        }
        bool any_link = false;
        for (std::size_t i = 0; i < _links.size(); ++i) {
            const link_ends& l = _links[i];
            if (l.a != id && l.b != id) {
                continue;
            }
            if (!any_link) {
                y << "links:\n";
                any_link = true;
            }
            const std::string& peer = l.a == id ? l.b : l.a;
            auto over = o.secret_override.find(l.id);
            const fs::path secret =
                over != o.secret_override.end() ? over->second : dir / "links" / (l.id + ".hex");
            y << "  - id: " << l.id << "\n    peer: " << peer << "\n"
              << "    peer_address: {address: 127.0.0.1, port: " << at(peer).peer_port << "}\n"
              << "    kind: qkd\n"
              << "    driver:\n      sim:\n        secret_file: " << secret.string() << "\n"
              << "        rate_bps: " << o.rate_bps << "\n"
              << "        burst: {blocks: " << o.burst_blocks
              << ", jitter_percent: " << o.jitter_percent << ", seed: " << 7 + i << "}\n";
        }
        y << "limits:\n  max_key_count: " << o.max_key_count << "\n"
          << "  max_key_per_request: " << o.max_key_per_request << "\n"
          << "  max_SAE_ID_count: " << o.max_sae_id_count << "\n";
        if (o.dec_keys_wait_ms) {
            y << "  dec_keys_wait_ms: " << *o.dec_keys_wait_ms << "\n";
        }
        if (o.key_expiry_s) {
            y << "  key_expiry_s: " << *o.key_expiry_s << "\n";
        }
        y << "shards: " << o.shards << "\n";
        if (!y) {
            throw std::runtime_error("write " + n.config.string());
        }
    }

    void write_configs() {
        for (const auto& [id, n] : _nodes) {
            write_config(id);
        }
    }

    // Starts keyraild for node id (stderr and stdout appended to its log) and waits, at most
    // 30 s, as `wait` says. Throws with the log when the node exits or the wait times out.
    void start(const std::string& id, start_wait wait = start_wait::ready_line) {
        node_state& n = at(id);
        if (n.pid > 0) {
            throw std::runtime_error(id + " is already running");
        }
        n.run_log_offset = file_size_or_zero(n.log);
        // Everything the child needs is prepared before fork: another test thread may hold
        // the allocator's lock at the moment of the fork.
        const int fd = ::open(n.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            throw std::runtime_error("open " + n.log.string());
        }
        const std::string config = n.config.string();
        const pid_t pid = ::fork();
        if (pid < 0) {
            ::close(fd);
            throw std::runtime_error("fork");
        }
        if (pid == 0) {
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::execl(KEYRAIL_KEYRAILD_PATH, "keyraild", "--config", config.c_str(),
                    static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(fd);
        n.pid = pid;
        ++n.starts;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        const std::string ready = "ready: node " + id + ", SAE API on 127.0.0.1 port " +
                                  std::to_string(n.sae_port) + ",";
        while (std::chrono::steady_clock::now() < deadline) {
            if (wait == start_wait::sae_port ? port_accepts(n.sae_port)
                                             : read_from(n.log, n.run_log_offset).find(ready) !=
                                                   std::string::npos) {
                return;
            }
            int status = 0;
            if (::waitpid(n.pid, &status, WNOHANG) == n.pid) {
                n.pid = -1;
                throw std::runtime_error(id + ": keyraild exited at start-up (status " +
                                         std::to_string(status) + "):\n" +
                                         read_from(n.log, n.run_log_offset));
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(
                wait == start_wait::sae_port ? 2 : 20));
        }
        throw std::runtime_error(id + ": keyraild not ready in 30 s (waited for '" +
                                 (wait == start_wait::sae_port ? "SAE port accepts" : ready) +
                                 "'):\n" + tail_of(read_from(n.log, n.run_log_offset), 4000));
    }

    // Sends sig (0: none, the node is already stopping) and waits at most 15 s for the exit,
    // then SIGKILLs. Returns the exit code; -1 after a signal death, -2 if not running, -3 if
    // it had to be killed.
    int stop(const std::string& id, int sig = SIGTERM) {
        node_state& n = at(id);
        if (n.pid <= 0) {
            return -2;
        }
        if (sig != 0) {
            ::kill(n.pid, sig);
        }
        int status = 0;
        for (int i = 0; i < 1500; ++i) {
            if (::waitpid(n.pid, &status, WNOHANG) == n.pid) {
                n.pid = -1;
                return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        ::kill(n.pid, SIGKILL);
        ::waitpid(n.pid, &status, 0);
        n.pid = -1;
        return -3;
    }

    // Sends sig (SIGSTOP, SIGCONT, ...) to a running node without waiting for anything.
    void signal(const std::string& id, int sig) {
        const node_state& n = at(id);
        if (n.pid > 0) {
            ::kill(n.pid, sig);
        }
    }

    // kill -9; true when the node was running and died of the SIGKILL.
    // The kernel closes a killed process's io_uring (and the listening sockets its pending
    // accepts hold) a little after the process is reaped: until then the dead node's port still
    // completes TCP handshakes, which a restart's start_wait::sae_port would take for the new
    // node. So wait (2 s at most) until nothing accepts on its SAE port.
    bool kill9(const std::string& id) {
        const bool died = stop(id, SIGKILL) == -1;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        while (port_accepts(at(id).sae_port) && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return died;
    }

    [[nodiscard]] bool running(const std::string& id) const { return at(id).pid > 0; }

    // True while the node's process lives. A node that exited on its own is reaped here and
    // `how` says how it ended ("exit 1", "signal 6").
    bool alive(const std::string& id, std::string* how = nullptr) {
        node_state& n = at(id);
        if (n.pid <= 0) {
            return false;
        }
        int status = 0;
        if (::waitpid(n.pid, &status, WNOHANG) != n.pid) {
            return true;
        }
        n.pid = -1;
        if (how != nullptr) {
            *how = WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                     : "signal " + std::to_string(WTERMSIG(status));
        }
        return false;
    }

    // Stops every running node with SIGTERM; returns id -> exit code for those that ran.
    std::map<std::string, int> stop_all(int sig = SIGTERM) {
        std::map<std::string, int> out;
        for (auto& [id, n] : _nodes) {
            if (n.pid > 0) {
                out[id] = stop(id, sig);
            }
        }
        return out;
    }

    log_marks marks() const {
        log_marks m;
        for (const auto& [id, n] : _nodes) {
            m[id] = file_size_or_zero(n.log);
        }
        return m;
    }

    // The log of node id from `since` (default: the start of the current run).
    std::string log_since(const std::string& id, std::optional<std::uintmax_t> since = {}) const {
        const node_state& n = at(id);
        return read_from(n.log, since ? *since : n.run_log_offset);
    }

    std::string log_tails(std::size_t chars = 3000) const {
        std::string out;
        for (const auto& [id, n] : _nodes) {
            out += "\n--- " + id + " log (" + n.log.string() + ", tail) ---\n" +
                   tail_of(read_text(n.log), chars);
        }
        return out;
    }

    // Waits until both ends of link_id have logged "link '<id>' (to|from) <peer> up" after
    // `since`. Bounded; the failure names the missing lines and shows the log tails.
    ::testing::AssertionResult wait_link_up(const std::string& link_id, const log_marks& since,
                                            std::chrono::milliseconds timeout =
                                                std::chrono::seconds(15)) const {
        const link_ends& l = link(link_id);
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        bool a_up = false;
        bool b_up = false;
        for (;;) {
            a_up = a_up || has_link_up_line(log_since(l.a, mark_of(since, l.a)), l.id, l.b);
            b_up = b_up || has_link_up_line(log_since(l.b, mark_of(since, l.b)), l.id, l.a);
            if (a_up && b_up) {
                return ::testing::AssertionSuccess();
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        auto r = ::testing::AssertionFailure();
        r << "link '" << l.id << "' not up within " << timeout.count() << " ms:";
        if (!a_up) {
            r << " no \"link '" << l.id << "' (to|from) " << l.b << " up\" in " << l.a << "'s log;";
        }
        if (!b_up) {
            r << " no \"link '" << l.id << "' (to|from) " << l.a << " up\" in " << l.b << "'s log;";
        }
        return r << log_tails();
    }

    // Waits until any of `nodes` logs a line containing `needle` after `since`.
    ::testing::AssertionResult wait_log(const std::vector<std::string>& nodes,
                                        const std::string& needle, const log_marks& since,
                                        std::chrono::milliseconds timeout) const {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            for (const std::string& id : nodes) {
                if (log_since(id, mark_of(since, id)).find(needle) != std::string::npos) {
                    return ::testing::AssertionSuccess() << id;
                }
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return ::testing::AssertionFailure() << "no log line containing \"" << needle
                                             << "\" within " << timeout.count() << " ms"
                                             << log_tails();
    }

    // ---- ETSI 014 over curl ----

    // One curl run as SAE `who` against node's SAE API. extra: more curl arguments.
    answer curl(const std::string& node_id, const std::string& who, const std::string& path,
                const std::string& extra = "", int max_time_s = 10) {
        const std::string cmd = curl_prefix(who, max_time_s) + extra +
                                " -w '\\n%{time_pretransfer} %{time_starttransfer} "
                                "%{time_total} %{http_code}' " +
                                shell_quote(url(node_id, path)) + " 2>/dev/null";
        int exit_code = 0;
        const std::string out = run_capture(cmd, &exit_code);
        answer a;
        a.curl_exit = exit_code;
        const auto nl = out.rfind('\n');
        if (nl == std::string::npos) {
            return a;
        }
        double pre = 0;
        double start = 0;
        double total = 0;
        int code = 0;
        if (std::sscanf(out.c_str() + nl + 1, "%lf %lf %lf %d", &pre, &start, &total, &code) == 4) {
            a.code = code;
            a.server_s = start > pre ? start - pre : 0.0;
            a.total_s = total;
        }
        a.body = out.substr(0, nl);
        parse_key_container(a.body, a.ids, a.keys);
        record(a.keys);
        return a;
    }

    answer post(const std::string& node_id, const std::string& who, const std::string& path,
                const std::string& json, int max_time_s = 10) {
        return curl(node_id, who, path,
                    "-H 'Content-Type: application/json' --data-binary " + shell_quote(json),
                    max_time_s);
    }

    // enc_keys at node_id as master for slave: GET ?number=&size= when there are no additional
    // slaves, else POST {"number","size","additional_slave_SAE_IDs"}.
    answer enc_keys(const std::string& node_id, const std::string& master,
                    const std::string& slave, std::uint32_t number, std::uint32_t size_bits,
                    const std::vector<std::string>& additional_slaves = {}) {
        const std::string path = "/api/v1/keys/" + slave + "/enc_keys";
        if (additional_slaves.empty()) {
            return curl(node_id, master,
                        path + "?number=" + std::to_string(number) +
                            "&size=" + std::to_string(size_bits));
        }
        std::string json = "{\"number\":" + std::to_string(number) +
                           ",\"size\":" + std::to_string(size_bits) +
                           ",\"additional_slave_SAE_IDs\":[";
        for (std::size_t i = 0; i < additional_slaves.size(); ++i) {
            json += (i == 0 ? "\"" : ",\"") + additional_slaves[i] + "\"";
        }
        return post(node_id, master, path, json + "]}");
    }

    // dec_keys at node_id as slave for keys of master: POST {"key_IDs":[{"key_ID":...}]}.
    answer dec_keys(const std::string& node_id, const std::string& slave,
                    const std::string& master, const std::vector<std::string>& ids,
                    int max_time_s = 10) {
        std::string json = "{\"key_IDs\":[";
        for (std::size_t i = 0; i < ids.size(); ++i) {
            json += (i == 0 ? "" : ",") + std::string("{\"key_ID\":\"") + ids[i] + "\"}";
        }
        return post(node_id, slave, "/api/v1/keys/" + master + "/dec_keys", json + "]}",
                    max_time_s);
    }

    // dec_keys GET ?key_ID= for one ID.
    answer dec_keys_get(const std::string& node_id, const std::string& slave,
                        const std::string& master, const std::string& id, int max_time_s = 10) {
        return curl(node_id, slave, "/api/v1/keys/" + master + "/dec_keys?key_ID=" + id, "",
                    max_time_s);
    }

    // One GET dec_keys per ID, each a request of its own, over few connections: `parallel`
    // curl processes, each reusing its connection for its share of the IDs. Answers in the
    // order of ids; an ID whose transfer produced nothing gets code 0.
    std::vector<answer> dec_keys_each(const std::string& node_id, const std::string& slave,
                                      const std::string& master,
                                      const std::vector<std::string>& ids, int parallel = 4) {
        std::vector<answer> out(ids.size());
        if (ids.empty()) {
            return out;
        }
        const std::size_t workers =
            std::min<std::size_t>(static_cast<std::size_t>(std::max(parallel, 1)), ids.size());
        std::vector<std::future<void>> jobs;
        for (std::size_t w = 0; w < workers; ++w) {
            jobs.push_back(std::async(std::launch::async, [&, w] {
                std::vector<std::size_t> mine;
                for (std::size_t i = w; i < ids.size(); i += workers) {
                    mine.push_back(i);
                }
                const fs::path list = dir / ("curl-" + std::to_string(++_curl_files) + ".conf");
                {
                    std::ofstream f(list);
                    for (std::size_t i : mine) {
                        f << "url = \""
                          << url(node_id, "/api/v1/keys/" + master + "/dec_keys?key_ID=" + ids[i])
                          << "\"\n";
                    }
                }
                static const std::string sep = "\n@@keyrail-transfer@@ ";
                const std::string cmd = curl_prefix(slave, 10) + " -K " +
                                        shell_quote(list.string()) + " -w '" +
                                        "\\n@@keyrail-transfer@@ %{http_code}\\n' 2>/dev/null";
                const std::string text = run_capture(cmd);
                std::error_code ec;
                fs::remove(list, ec);
                std::size_t from = 0;
                for (std::size_t i : mine) {
                    const std::size_t at = text.find(sep, from);
                    if (at == std::string::npos) {
                        break;
                    }
                    const std::size_t eol = text.find('\n', at + sep.size());
                    answer& a = out[i];
                    a.body = text.substr(from, at - from);
                    a.code = std::atoi(text.c_str() + at + sep.size());
                    parse_key_container(a.body, a.ids, a.keys);
                    record(a.keys);
                    from = eol == std::string::npos ? text.size() : eol + 1;
                }
            }));
        }
        for (auto& j : jobs) {
            j.get();
        }
        return out;
    }

    [[nodiscard]] std::string url(const std::string& node_id, const std::string& path) const {
        return "https://127.0.0.1:" + std::to_string(at(node_id).sae_port) + path;
    }

    // ---- key bytes in logs ----

    // Every key of at least 8 bytes seen in any answer (base64, and hex in both cases) must be
    // absent from every node's log. Shorter keys are skipped: 1..7 random bytes occur in any
    // text by chance. A hit on the first 8 bytes of a key counts: that much key material leaked.
    void expect_logs_clean() const {
        std::vector<std::string> keys;
        {
            std::lock_guard<std::mutex> lock(_seen_mutex);
            keys.assign(_seen.begin(), _seen.end());
        }
        constexpr std::size_t b64_prefix = 10; // 60 bits, all from the first 8 bytes
        constexpr std::size_t hex_prefix = 16; // 8 bytes
        std::unordered_set<std::string> b64;
        std::unordered_set<std::string> hex;
        std::vector<bool> b64_first3(1u << 24);
        std::vector<bool> hex_first3(1u << 24);
        auto tri = [](const char* p) {
            return (static_cast<std::uint32_t>(static_cast<unsigned char>(p[0])) << 16) |
                   (static_cast<std::uint32_t>(static_cast<unsigned char>(p[1])) << 8) |
                   static_cast<std::uint32_t>(static_cast<unsigned char>(p[2]));
        };
        std::size_t scanned = 0;
        for (const std::string& k : keys) {
            const std::string h = base64_to_hex(k);
            if (h.size() < 2 * 8 || k.size() < b64_prefix) {
                continue;
            }
            ++scanned;
            b64.insert(k.substr(0, b64_prefix));
            b64_first3[tri(k.data())] = true;
            hex.insert(h.substr(0, hex_prefix));
            hex_first3[tri(h.data())] = true;
        }
        for (const auto& [id, n] : _nodes) {
            const std::string text = read_text(n.log);
            std::string lower = text;
            for (char& c : lower) {
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            }
            std::size_t hits = 0;
            std::string first;
            auto hit = [&](const std::string& t, std::size_t i, const char* what) {
                if (++hits <= 3) {
                    const std::size_t bol = t.rfind('\n', i);
                    const std::size_t eol = t.find('\n', i);
                    first += std::string("\n  ") + what + " at byte " + std::to_string(i) + ": " +
                             text.substr(bol == std::string::npos ? 0 : bol + 1,
                                         std::min<std::size_t>(
                                             200, (eol == std::string::npos ? t.size() : eol) -
                                                      (bol == std::string::npos ? 0 : bol + 1)));
                }
            };
            for (std::size_t i = 0; i + b64_prefix <= text.size(); ++i) {
                if (b64_first3[tri(text.data() + i)] &&
                    b64.count(text.substr(i, b64_prefix)) != 0) {
                    hit(text, i, "base64");
                }
            }
            for (std::size_t i = 0; i + hex_prefix <= lower.size(); ++i) {
                if (hex_first3[tri(lower.data() + i)] &&
                    hex.count(lower.substr(i, hex_prefix)) != 0) {
                    hit(lower, i, "hex");
                }
            }
            EXPECT_EQ(hits, 0u) << id << "'s log holds key bytes (" << scanned
                                << " keys of >= 8 bytes checked):" << first;
            // A sanitizer build of keyraild (ASan, UBSan, TSan) reports into the same log.
            for (const char* report : {"ThreadSanitizer", "AddressSanitizer",
                                       "LeakSanitizer", "runtime error:"}) {
                const std::size_t at = text.find(report);
                EXPECT_EQ(at, std::string::npos)
                    << id << "'s log has a sanitizer report:\n"
                    << text.substr(at == std::string::npos ? 0 : at, 3000);
            }
        }
    }

    [[nodiscard]] std::size_t keys_seen() const {
        std::lock_guard<std::mutex> lock(_seen_mutex);
        return _seen.size();
    }

    fs::path dir;

private:
    static std::optional<std::uintmax_t> mark_of(const log_marks& m, const std::string& id) {
        auto it = m.find(id);
        if (it == m.end()) {
            return std::nullopt;
        }
        return it->second;
    }

    const link_ends& link(const std::string& id) const {
        for (const link_ends& l : _links) {
            if (l.id == id) {
                return l;
            }
        }
        throw std::runtime_error("no link " + id);
    }

    std::string curl_prefix(const std::string& who, int max_time_s) const {
        return "curl -s --max-time " + std::to_string(max_time_s) + " --cacert " +
               shell_quote((dir / "ca.crt").string()) + " --cert " +
               shell_quote((dir / (who + ".crt")).string()) + " --key " +
               shell_quote((dir / (who + ".key")).string()) + " ";
    }

    void record(const std::vector<std::string>& keys) {
        if (keys.empty()) {
            return;
        }
        std::lock_guard<std::mutex> lock(_seen_mutex);
        _seen.insert(keys.begin(), keys.end());
    }

    static pki::credential issue_or_throw(const pki::credential& ca, const pki::cert_spec& s) {
        auto c = pki::issue(ca, s);
        if (!c) {
            throw std::runtime_error("issue " + s.common_name + ": " + c.error().message());
        }
        return *c;
    }

    static void write_credential(const pki::credential& c, const fs::path& stem) {
        if (!pki::write_files(c, stem.string() + ".crt", stem.string() + ".key")) {
            throw std::runtime_error("write " + stem.string());
        }
    }

    std::map<std::string, node_state> _nodes;
    std::vector<sae_home> _saes;
    std::vector<link_ends> _links;
    std::atomic<unsigned> _curl_files{0};
    mutable std::mutex _seen_mutex;
    std::set<std::string> _seen; // base64 of every key in any answer
};

// What a slave's fetch of a set of expected keys found (see fetch_and_compare).
struct fetch_report {
    std::size_t matched = 0;
    std::vector<std::string> mismatched; // 200 with other bytes, or with other or extra IDs
    std::vector<std::string> missing;    // still not delivered when the deadline passed
    std::map<int, std::size_t> other_codes; // answers neither 200 nor 400
    std::map<std::string, std::string> got; // id -> key, every key delivered here

    [[nodiscard]] std::string summary() const {
        std::ostringstream s;
        s << matched << " matched, " << mismatched.size() << " mismatched, " << missing.size()
          << " missing";
        for (const auto& [code, count] : other_codes) {
            s << ", " << count << " x HTTP " << code;
        }
        for (std::size_t i = 0; i < mismatched.size() && i < 5; ++i) {
            s << "\n  mismatched: " << mismatched[i];
        }
        for (std::size_t i = 0; i < missing.size() && i < 5; ++i) {
            s << "\n  missing: " << missing[i];
        }
        return s.str();
    }
};

// The slave fetches every key of `expected` (id -> base64) at node_id, each ID in its own GET
// request, and compares. An ID answered 400 is asked again (a reservation may still be on its
// way from the master's node) until retry_for has passed; what is left then is missing.
inline fetch_report fetch_and_compare(network& net, const std::string& node_id,
                                      const std::string& slave, const std::string& master,
                                      const std::map<std::string, std::string>& expected,
                                      std::chrono::milliseconds retry_for) {
    fetch_report r;
    std::vector<std::string> todo;
    for (const auto& [id, key] : expected) {
        todo.push_back(id);
    }
    const auto deadline = std::chrono::steady_clock::now() + retry_for;
    while (!todo.empty()) {
        const std::vector<answer> answers = net.dec_keys_each(node_id, slave, master, todo);
        std::vector<std::string> again;
        for (std::size_t i = 0; i < todo.size(); ++i) {
            const answer& a = answers[i];
            const std::string& id = todo[i];
            if (a.code == 200) {
                if (a.ids.size() != 1 || a.ids[0] != id) {
                    r.mismatched.push_back(id + ": answer names other IDs: " +
                                           a.body.substr(0, 200));
                } else if (a.keys[0] != expected.at(id)) {
                    r.mismatched.push_back(id + ": other key bytes");
                } else {
                    ++r.matched;
                }
                if (!a.keys.empty()) {
                    r.got[id] = a.keys[0];
                }
            } else {
                if (a.code != 400) {
                    ++r.other_codes[a.code];
                }
                again.push_back(id);
            }
        }
        todo = std::move(again);
        if (todo.empty() || std::chrono::steady_clock::now() >= deadline) {
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    r.missing = std::move(todo);
    return r;
}

} // namespace keyrail::test::net
