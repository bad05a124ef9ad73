#include "control/config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

#include <openssl/crypto.h>
#include <yaml-cpp/yaml.h>

#include "control/errc.h"
#include "engine/limits.h"

namespace keyrail::control {
namespace {

// Ranges. Sizes are in bits; ETSI 014 requires key sizes to be multiples of 8.
constexpr std::uint64_t key_size_bits_max = 65536;
constexpr std::uint64_t block_bits_min = 64;
constexpr std::uint64_t block_bits_max = 8192;
constexpr std::uint64_t max_key_per_request_max = 10'000;
constexpr std::uint64_t max_SAE_ID_count_max = 64;
constexpr std::uint64_t dec_keys_wait_ms_max = 10'000;
constexpr std::uint64_t key_expiry_s_max = 30ull * 24 * 3600;
// 2^24 reservation slots hold about 3 GiB in memory: beyond that, fetch keys or expire sooner.
constexpr std::uint64_t reservations_max_max = std::uint64_t{1} << 24;
constexpr std::uint64_t verify_depth_max = 10;
constexpr std::uint64_t rate_bps_max = 100'000'000'000ull; // 100 Gbit/s: beyond any device
constexpr std::uint64_t burst_blocks_max = 65536;
constexpr std::size_t secret_bytes_min = 32;
constexpr std::size_t secret_bytes_max = 512;
constexpr std::size_t id_chars_max = 64;

struct parse_context {
    std::string file;               // as the user named it, for messages
    std::filesystem::path base_dir; // relative paths resolve against this
};

[[noreturn]] void fail_at(const parse_context &ctx, const YAML::Mark &mark, const std::string &path,
                          const std::string &problem) {
    const bool has_mark = !mark.is_null() && mark.line >= 0;
    throw config_error(ctx.file, has_mark ? mark.line + 1 : 0, has_mark ? mark.column + 1 : 0, path,
                       problem);
}

[[nodiscard]] std::string join_path(const std::string &parent, std::string_view key) {
    if (parent.empty()) {
        return std::string(key);
    }
    return parent + "." + std::string(key);
}

[[nodiscard]] std::string index_path(const std::string &parent, std::size_t index) {
    return parent + "[" + std::to_string(index) + "]";
}

// A YAML mapping read strictly: duplicate keys are errors at parse time, and finish()
// reports any key nobody asked for.
class map_reader {
public:
    map_reader(const parse_context &ctx, const YAML::Node &node, std::string path)
        : _ctx(ctx), _node(node), _path(std::move(path)) {
        if (!node.IsMap()) {
            fail_at(ctx, node.Mark(), _path.empty() ? std::string() : _path,
                    _path.empty() ? "the document must be a mapping" : "must be a mapping");
        }
        for (const auto &kv : node) {
            if (!kv.first.IsScalar()) {
                fail_at(ctx, kv.first.Mark(), _path, "keys must be plain strings");
            }
            std::string key = kv.first.Scalar();
            for (const auto &e : _entries) {
                if (e.key == key) {
                    fail_at(ctx, kv.first.Mark(), join_path(_path, key), "duplicate key");
                }
            }
            _entries.push_back(entry{std::move(key), kv.first.Mark(), kv.second, false});
        }
    }

    // The value of key, or an undefined node if absent. Either way key becomes known.
    [[nodiscard]] YAML::Node get(std::string_view key) {
        _known.emplace_back(key);
        for (auto &e : _entries) {
            if (e.key == key) {
                e.used = true;
                return e.value;
            }
        }
        return YAML::Node(YAML::NodeType::Undefined);
    }

    [[nodiscard]] bool has(std::string_view key) const {
        return std::any_of(_entries.begin(), _entries.end(),
                           [&](const entry &e) { return e.key == key; });
    }

    [[nodiscard]] YAML::Node require(std::string_view key) {
        YAML::Node value = get(key);
        if (!value.IsDefined()) {
            fail_at(_ctx, _node.Mark(), _path, "missing required key '" + std::string(key) + "'");
        }
        return value;
    }

    [[nodiscard]] std::string child(std::string_view key) const { return join_path(_path, key); }
    [[nodiscard]] const YAML::Node &node() const noexcept { return _node; }
    [[nodiscard]] const std::string &path() const noexcept { return _path; }

    // Call after every get(): reports the first key in file order that no get() named.
    void finish() const {
        for (const auto &e : _entries) {
            if (!e.used) {
                std::string expected;
                for (const auto &k : _known) {
                    expected += expected.empty() ? k : ", " + k;
                }
                fail_at(_ctx, e.mark, join_path(_path, e.key),
                        "unknown key (expected one of: " + expected + ")");
            }
        }
    }

private:
    struct entry {
        std::string key;
        YAML::Mark mark;
        YAML::Node value;
        bool used;
    };
    const parse_context &_ctx;
    YAML::Node _node;
    std::string _path;
    std::vector<entry> _entries;
    std::vector<std::string> _known;
};

[[nodiscard]] std::string as_string(const parse_context &ctx, const YAML::Node &node,
                                    const std::string &path) {
    if (!node.IsScalar()) {
        fail_at(ctx, node.Mark(), path, "must be a string");
    }
    return node.Scalar();
}

[[nodiscard]] std::string as_nonempty_string(const parse_context &ctx, const YAML::Node &node,
                                             const std::string &path) {
    std::string s = as_string(ctx, node, path);
    if (s.empty()) {
        fail_at(ctx, node.Mark(), path, "must not be empty");
    }
    return s;
}

// Digits only: no sign, no hex, no 1e3, no 1_000, so what the file says is what we use.
[[nodiscard]] std::uint64_t as_uint(const parse_context &ctx, const YAML::Node &node,
                                    const std::string &path) {
    if (!node.IsScalar()) {
        fail_at(ctx, node.Mark(), path, "must be an integer");
    }
    const std::string &s = node.Scalar();
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    const bool digits_only =
        !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits_only || end != s.data() + s.size()) {
        fail_at(ctx, node.Mark(), path, "must be a non-negative integer, got '" + s + "'");
    }
    if (ec == std::errc::result_out_of_range) {
        fail_at(ctx, node.Mark(), path, "is too large, got " + s);
    }
    return value;
}

[[nodiscard]] std::uint64_t as_uint_in(const parse_context &ctx, const YAML::Node &node,
                                       const std::string &path, std::uint64_t lo,
                                       std::uint64_t hi) {
    const std::uint64_t v = as_uint(ctx, node, path);
    if (v < lo || v > hi) {
        fail_at(ctx, node.Mark(), path,
                "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " +
                    std::to_string(v));
    }
    return v;
}

[[nodiscard]] std::uint64_t as_bits(const parse_context &ctx, const YAML::Node &node,
                                    const std::string &path, std::uint64_t lo, std::uint64_t hi) {
    const std::uint64_t v = as_uint(ctx, node, path);
    if (v == 0) {
        fail_at(ctx, node.Mark(), path, "must be positive, got 0");
    }
    if (v % 8 != 0 || v < lo || v > hi) {
        // The smallest positive multiple of 8 needs no mention.
        fail_at(ctx, node.Mark(), path,
                "must be a multiple of 8 and " +
                    (lo > 8 ? ">= " + std::to_string(lo) + " and " : std::string()) +
                    "<= " + std::to_string(hi) + ", got " + std::to_string(v));
    }
    return v;
}

template <class Enum>
[[nodiscard]] Enum as_enum(const parse_context &ctx, const YAML::Node &node,
                           const std::string &path,
                           std::initializer_list<std::pair<const char *, Enum>> choices) {
    const std::string s = as_string(ctx, node, path);
    std::string names;
    for (const auto &[name, value] : choices) {
        if (s == name) {
            return value;
        }
        names += names.empty() ? std::string(name) : ", " + std::string(name);
    }
    fail_at(ctx, node.Mark(), path, "must be one of " + names + ", got '" + s + "'");
}

[[nodiscard]] std::string as_id(const parse_context &ctx, const YAML::Node &node,
                                const std::string &path) {
    std::string s = as_string(ctx, node, path);
    if (!is_valid_id(s)) {
        fail_at(ctx, node.Mark(), path,
                "must be 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit, "
                "without '..', got '" +
                    s + "'");
    }
    return s;
}

[[nodiscard]] std::filesystem::path as_path(const parse_context &ctx, const YAML::Node &node,
                                            const std::string &path) {
    std::filesystem::path p(as_nonempty_string(ctx, node, path));
    if (p.is_relative()) {
        p = ctx.base_dir / p;
    }
    return p.lexically_normal();
}

[[nodiscard]] bool is_ip_literal(const std::string &s) noexcept {
    unsigned char buf[16];
    return ::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// A DNS host name (RFC 1123 labels) or an IP literal.
[[nodiscard]] bool is_host(const std::string &s) noexcept {
    if (is_ip_literal(s)) {
        return true;
    }
    if (s.empty() || s.size() > 253) {
        return false;
    }
    std::size_t label = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-') {
                return false;
            }
            label = 0;
            continue;
        }
        const bool alnum = std::isalnum(static_cast<unsigned char>(c)) != 0;
        if (!alnum && (c != '-' || label == 0)) {
            return false;
        }
        if (++label > 63) {
            return false;
        }
    }
    return label > 0 && s.back() != '-';
}

enum class endpoint_role { listener, peer };

[[nodiscard]] endpoint parse_endpoint(const parse_context &ctx, const YAML::Node &node,
                                      const std::string &path, endpoint_role role) {
    map_reader m(ctx, node, path);
    endpoint out;
    const YAML::Node address = m.require("address");
    out.address = as_nonempty_string(ctx, address, m.child("address"));
    if (role == endpoint_role::listener && !is_ip_literal(out.address)) {
        fail_at(ctx, address.Mark(), m.child("address"),
                "must be an IPv4 or IPv6 literal, got '" + out.address + "'");
    }
    if (role == endpoint_role::peer && !is_host(out.address)) {
        fail_at(ctx, address.Mark(), m.child("address"),
                "must be a host name or an IP literal, got '" + out.address + "'");
    }
    const std::uint64_t port_min = role == endpoint_role::listener ? 0 : 1;
    out.port = static_cast<std::uint16_t>(
        as_uint_in(ctx, m.require("port"), m.child("port"), port_min, 65535));
    m.finish();
    return out;
}

void parse_node(const parse_context &ctx, const YAML::Node &node, config &cfg) {
    map_reader m(ctx, node, "node");
    cfg.node.id = as_id(ctx, m.require("id"), m.child("id"));
    const char *names[] = {"sae_api", "peer_api", "admin_api"};
    endpoint *eps[] = {&cfg.node.sae_api, &cfg.node.peer_api, &cfg.node.admin_api};
    for (std::size_t i = 0; i < 3; ++i) {
        const YAML::Node value = m.require(names[i]);
        *eps[i] = parse_endpoint(ctx, value, m.child(names[i]), endpoint_role::listener);
        // Two listeners on one port would make the kernel refuse the second at start-up;
        // say so here instead. Port 0 (ephemeral) never conflicts.
        for (std::size_t j = 0; j < i; ++j) {
            if (eps[i]->port != 0 && eps[i]->port == eps[j]->port) {
                fail_at(ctx, value["port"].Mark(), m.child(names[i]) + ".port",
                        "same port as node." + std::string(names[j]) + " (" +
                            std::to_string(eps[i]->port) + ")");
            }
        }
    }
    m.finish();
}

void parse_tls(const parse_context &ctx, const YAML::Node &node, config &cfg) {
    map_reader m(ctx, node, "tls");
    cfg.tls.cert = as_path(ctx, m.require("cert"), m.child("cert"));
    cfg.tls.key = as_path(ctx, m.require("key"), m.child("key"));
    cfg.tls.sae_ca = as_path(ctx, m.require("sae_ca"), m.child("sae_ca"));
    cfg.tls.peer_ca = as_path(ctx, m.require("peer_ca"), m.child("peer_ca"));
    if (const YAML::Node v = m.get("admin_ca"); v.IsDefined()) {
        cfg.tls.admin_ca = as_path(ctx, v, m.child("admin_ca"));
    } else {
        cfg.tls.admin_ca = cfg.tls.peer_ca;
    }
    if (const YAML::Node v = m.get("verify_depth"); v.IsDefined()) {
        cfg.tls.verify_depth =
            static_cast<int>(as_uint_in(ctx, v, m.child("verify_depth"), 1, verify_depth_max));
    }
    m.finish();
}

void parse_sae_identity(const parse_context &ctx, const YAML::Node &node, config &cfg) {
    map_reader m(ctx, node, "sae_identity");
    if (const YAML::Node v = m.get("mode"); v.IsDefined()) {
        cfg.sae_identity.mode = as_enum<sae_identity_mode>(
            ctx, v, m.child("mode"),
            {{"san_uri", sae_identity_mode::san_uri}, {"cn", sae_identity_mode::cn}});
    }
    if (const YAML::Node v = m.get("san_uri_prefix"); v.IsDefined()) {
        std::string prefix = as_nonempty_string(ctx, v, m.child("san_uri_prefix"));
        const bool printable =
            std::all_of(prefix.begin(), prefix.end(), [](char c) { return c > 0x20 && c < 0x7f; });
        if (!printable || prefix.find(':') == std::string::npos) {
            fail_at(ctx, v.Mark(), m.child("san_uri_prefix"),
                    "must be a URI prefix with a scheme and no spaces, got '" + prefix + "'");
        }
        cfg.sae_identity.san_uri_prefix = std::move(prefix);
    }
    m.finish();
}

void parse_store(const parse_context &ctx, const YAML::Node &node, config &cfg) {
    map_reader m(ctx, node, "store");
    cfg.store.dir = as_path(ctx, m.require("dir"), m.child("dir"));
    const YAML::Node key_file = m.get("master_key_file");
    const YAML::Node key_env = m.get("master_key_env");
    if (key_file.IsDefined() == key_env.IsDefined()) {
        fail_at(ctx, key_file.IsDefined() ? key_env.Mark() : node.Mark(), "store",
                "exactly one of master_key_file and master_key_env is required");
    }
    if (key_file.IsDefined()) {
        cfg.store.master_key_file = as_path(ctx, key_file, m.child("master_key_file"));
    } else {
        cfg.store.master_key_env = as_nonempty_string(ctx, key_env, m.child("master_key_env"));
        const std::string &env = cfg.store.master_key_env;
        const bool ok = std::all_of(env.begin(), env.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
        });
        if (!ok || std::isdigit(static_cast<unsigned char>(env.front())) != 0) {
            fail_at(ctx, key_env.Mark(), m.child("master_key_env"),
                    "must be an environment variable name, got '" + env + "'");
        }
    }
    if (const YAML::Node v = m.get("block_bits"); v.IsDefined()) {
        cfg.store.block_bits = static_cast<std::uint32_t>(
            as_bits(ctx, v, m.child("block_bits"), block_bits_min, block_bits_max));
    }
    if (const YAML::Node v = m.get("durability"); v.IsDefined()) {
        cfg.store.durability_mode =
            as_enum<durability>(ctx, v, m.child("durability"),
                                {{"process", durability::process}, {"power", durability::power}});
    }
    if (const YAML::Node v = m.get("capacity_blocks"); v.IsDefined()) {
        cfg.store.capacity_blocks =
            as_uint_in(ctx, v, m.child("capacity_blocks"), 1, std::uint64_t{1} << 40);
    }
    if (const YAML::Node v = m.get("reservations_max"); v.IsDefined()) {
        cfg.store.reservations_max = static_cast<std::uint32_t>(
            as_uint_in(ctx, v, m.child("reservations_max"), 1, reservations_max_max));
    }
    if (const YAML::Node v = m.get("journal_compact_mb"); v.IsDefined()) {
        cfg.store.journal_compact_mb = static_cast<std::uint32_t>(
            as_uint_in(ctx, v, m.child("journal_compact_mb"), 0, 1u << 20));
    }
    m.finish();
}

[[nodiscard]] bool is_hex(std::string_view s) noexcept {
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

void parse_sim_driver(const parse_context &ctx, const YAML::Node &node, const std::string &path,
                      sim_driver_config &sim) {
    map_reader m(ctx, node, path);
    const YAML::Node file = m.get("secret_file");
    const YAML::Node hex = m.get("secret_hex");
    if (file.IsDefined() == hex.IsDefined()) {
        fail_at(ctx, file.IsDefined() ? hex.Mark() : node.Mark(), path,
                "exactly one of secret_file and secret_hex is required");
    }
    if (file.IsDefined()) {
        sim.secret_file = as_path(ctx, file, m.child("secret_file"));
    } else {
        // The message never echoes the value: it is a secret.
        if (!hex.IsScalar() || !is_hex(hex.Scalar()) || hex.Scalar().size() % 2 != 0 ||
            hex.Scalar().size() < 2 * secret_bytes_min ||
            hex.Scalar().size() > 2 * secret_bytes_max) {
            fail_at(ctx, hex.Mark(), m.child("secret_hex"),
                    "must be " + std::to_string(2 * secret_bytes_min) + " to " +
                        std::to_string(2 * secret_bytes_max) +
                        " hex digits (an even number); value not shown");
        }
        sim.secret_hex = hex.Scalar();
    }
    if (const YAML::Node v = m.get("rate_bps"); v.IsDefined()) {
        sim.rate_bps = as_uint_in(ctx, v, m.child("rate_bps"), 1, rate_bps_max);
    }
    if (const YAML::Node v = m.get("burst"); v.IsDefined()) {
        map_reader b(ctx, v, m.child("burst"));
        if (const YAML::Node w = b.get("blocks"); w.IsDefined()) {
            sim.burst_blocks = static_cast<std::uint32_t>(
                as_uint_in(ctx, w, b.child("blocks"), 1, burst_blocks_max));
        }
        if (const YAML::Node w = b.get("jitter_percent"); w.IsDefined()) {
            sim.jitter_percent =
                static_cast<std::uint32_t>(as_uint_in(ctx, w, b.child("jitter_percent"), 0, 100));
        }
        if (const YAML::Node w = b.get("seed"); w.IsDefined()) {
            sim.seed = as_uint(ctx, w, b.child("seed"));
        }
        b.finish();
    }
    m.finish();
}

void parse_link(const parse_context &ctx, const YAML::Node &node, const std::string &path,
                link_config &link) {
    map_reader m(ctx, node, path);
    link.id = as_id(ctx, m.require("id"), m.child("id"));
    link.peer = as_id(ctx, m.require("peer"), m.child("peer"));
    link.peer_address = parse_endpoint(ctx, m.require("peer_address"), m.child("peer_address"),
                                       endpoint_role::peer);
    if (const YAML::Node v = m.get("kind"); v.IsDefined()) {
        const std::string kind = as_string(ctx, v, m.child("kind"));
        if (kind == "pqc" || kind == "hybrid") {
            fail_at(ctx, v.Mark(), m.child("kind"),
                    "'" + kind + "' links are not implemented yet; use qkd");
        }
        link.kind = as_enum<link_kind>(ctx, v, m.child("kind"), {{"qkd", link_kind::qkd}});
    }
    const YAML::Node driver = m.require("driver");
    map_reader d(ctx, driver, m.child("driver"));
    const YAML::Node sim = d.get("sim");
    if (!sim.IsDefined()) {
        d.finish(); // names an unknown driver, if that is the problem
        fail_at(ctx, driver.Mark(), m.child("driver"), "exactly one driver is required (sim)");
    }
    link.driver = driver_kind::sim;
    parse_sim_driver(ctx, sim, d.child("sim"), link.sim);
    d.finish();
    m.finish();
}

void require_sequence(const parse_context &ctx, const YAML::Node &node, const std::string &path) {
    if (!node.IsSequence()) {
        fail_at(ctx, node.Mark(), path, "must be a list");
    }
}

// Links first, because SAEs' home nodes are checked against this node, its link peers and
// remote_nodes.
void parse_links(const parse_context &ctx, const YAML::Node &node, config &cfg) {
    require_sequence(ctx, node, "links");
    std::size_t index = 0;
    for (const auto &item : node) {
        const std::string path = index_path("links", index);
        link_config link;
        parse_link(ctx, item, path, link);
        if (link.peer == cfg.node.id) {
            fail_at(ctx, item["peer"].Mark(), path + ".peer",
                    "a link cannot lead back to this node ('" + link.peer + "')");
        }
        for (std::size_t j = 0; j < cfg.links.size(); ++j) {
            if (cfg.links[j].id == link.id) {
                fail_at(ctx, item["id"].Mark(), path + ".id",
                        "duplicate link id '" + link.id + "' (also links[" + std::to_string(j) +
                            "])");
            }
            if (cfg.links[j].peer == link.peer) {
                fail_at(ctx, item["peer"].Mark(), path + ".peer",
                        "second link to '" + link.peer + "' (also links[" + std::to_string(j) +
                            "])");
            }
        }
        cfg.links.push_back(std::move(link));
        ++index;
    }
}

void parse_remote_nodes(const parse_context &ctx, const YAML::Node &node, config &cfg) {
    require_sequence(ctx, node, "remote_nodes");
    std::size_t index = 0;
    for (const auto &item : node) {
        const std::string path = index_path("remote_nodes", index);
        std::string id = as_id(ctx, item, path);
        if (id == cfg.node.id) {
            fail_at(ctx, item.Mark(), path, "is this node's own id");
        }
        if (std::find(cfg.remote_nodes.begin(), cfg.remote_nodes.end(), id) !=
            cfg.remote_nodes.end()) {
            fail_at(ctx, item.Mark(), path, "duplicate node id '" + id + "'");
        }
        cfg.remote_nodes.push_back(std::move(id));
        ++index;
    }
}

void parse_saes(const parse_context &ctx, const YAML::Node &node, config &cfg) {
    require_sequence(ctx, node, "saes");
    std::size_t index = 0;
    for (const auto &item : node) {
        const std::string path = index_path("saes", index);
        map_reader m(ctx, item, path);
        sae_config sae;
        sae.id = as_id(ctx, m.require("id"), m.child("id"));
        const YAML::Node home = m.require("home_node");
        sae.home_node = as_id(ctx, home, m.child("home_node"));
        m.finish();
        for (std::size_t j = 0; j < cfg.saes.size(); ++j) {
            if (cfg.saes[j].id == sae.id) {
                fail_at(ctx, item["id"].Mark(), m.child("id"),
                        "duplicate SAE id '" + sae.id + "' (also saes[" + std::to_string(j) + "])");
            }
        }
        const bool known =
            sae.home_node == cfg.node.id ||
            std::any_of(cfg.links.begin(), cfg.links.end(),
                        [&](const link_config &l) { return l.peer == sae.home_node; }) ||
            std::find(cfg.remote_nodes.begin(), cfg.remote_nodes.end(), sae.home_node) !=
                cfg.remote_nodes.end();
        if (!known) {
            fail_at(ctx, home.Mark(), m.child("home_node"),
                    "unknown node '" + sae.home_node +
                        "' (not node.id, a link peer or in remote_nodes)");
        }
        cfg.saes.push_back(std::move(sae));
        ++index;
    }
}

void parse_limits(const parse_context &ctx, const YAML::Node &node, config &cfg) {
    map_reader m(ctx, node, "limits");
    limits_config &l = cfg.limits;
    const auto bits = [&](const char *key, std::uint32_t &out) {
        if (const YAML::Node v = m.get(key); v.IsDefined()) {
            out = static_cast<std::uint32_t>(as_bits(ctx, v, m.child(key), 8, key_size_bits_max));
        }
    };
    bits("key_size", l.key_size);
    bits("min_key_size", l.min_key_size);
    bits("max_key_size", l.max_key_size);
    if (const YAML::Node v = m.get("max_key_per_request"); v.IsDefined()) {
        l.max_key_per_request = static_cast<std::uint32_t>(
            as_uint_in(ctx, v, m.child("max_key_per_request"), 1, max_key_per_request_max));
    }
    if (const YAML::Node v = m.get("max_key_count"); v.IsDefined()) {
        l.max_key_count = as_uint_in(ctx, v, m.child("max_key_count"), 1, std::uint64_t{1} << 40);
    }
    if (const YAML::Node v = m.get("max_SAE_ID_count"); v.IsDefined()) {
        l.max_SAE_ID_count = static_cast<std::uint32_t>(
            as_uint_in(ctx, v, m.child("max_SAE_ID_count"), 0, max_SAE_ID_count_max));
    }
    if (const YAML::Node v = m.get("dec_keys_wait_ms"); v.IsDefined()) {
        l.dec_keys_wait_ms = static_cast<std::uint32_t>(
            as_uint_in(ctx, v, m.child("dec_keys_wait_ms"), 0, dec_keys_wait_ms_max));
    }
    if (const YAML::Node v = m.get("key_expiry_s"); v.IsDefined()) {
        l.key_expiry_s = static_cast<std::uint32_t>(
            as_uint_in(ctx, v, m.child("key_expiry_s"), 1, key_expiry_s_max));
    }
    m.finish();
    // Relations, reported at the setting that breaks them (or the mapping if defaulted).
    const auto mark_of = [&](const char *key) {
        const YAML::Node v = node[key];
        return v.IsDefined() ? v.Mark() : node.Mark();
    };
    if (l.min_key_size > l.max_key_size) {
        fail_at(ctx, mark_of("min_key_size"), m.child("min_key_size"),
                "must be <= max_key_size (" + std::to_string(l.max_key_size) + "), got " +
                    std::to_string(l.min_key_size));
    }
    if (l.key_size < l.min_key_size || l.key_size > l.max_key_size) {
        fail_at(ctx, mark_of("key_size"), m.child("key_size"),
                "must be between min_key_size (" + std::to_string(l.min_key_size) +
                    ") and max_key_size (" + std::to_string(l.max_key_size) + "), got " +
                    std::to_string(l.key_size));
    }
    if (l.max_key_per_request > l.max_key_count) {
        fail_at(ctx, mark_of("max_key_per_request"), m.child("max_key_per_request"),
                "must be <= max_key_count (" + std::to_string(l.max_key_count) + "), got " +
                    std::to_string(l.max_key_per_request));
    }
}

[[nodiscard]] std::uint8_t hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') {
        return static_cast<std::uint8_t>(c - '0');
    }
    if (c >= 'a' && c <= 'f') {
        return static_cast<std::uint8_t>(c - 'a' + 10);
    }
    return static_cast<std::uint8_t>(c - 'A' + 10);
}

[[nodiscard]] result<secret_bytes> decode_secret_hex(std::string_view hex) {
    if (!is_hex(hex) || hex.size() % 2 != 0 || hex.size() < 2 * secret_bytes_min ||
        hex.size() > 2 * secret_bytes_max) {
        return fail(errc::invalid_spec);
    }
    std::vector<std::uint8_t> bytes(hex.size() / 2);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        bytes[i] =
            static_cast<std::uint8_t>((hex_value(hex[2 * i]) << 4) | hex_value(hex[2 * i + 1]));
    }
    return secret_bytes(std::move(bytes));
}

} // namespace

config_error::config_error(std::string file, int line, int column, std::string path,
                           std::string problem)
    : std::runtime_error(
          file +
          (line > 0 ? ":" + std::to_string(line) + ":" + std::to_string(column) : std::string()) +
          ": " + (path.empty() ? std::string() : path + ": ") + problem),
      _file(std::move(file)), _line(line), _column(column), _path(std::move(path)),
      _problem(std::move(problem)) {}

bool is_valid_id(std::string_view s) noexcept {
    if (s.empty() || s.size() > id_chars_max) {
        return false;
    }
    if (std::isalnum(static_cast<unsigned char>(s.front())) == 0) {
        return false;
    }
    if (s.find("..") != std::string_view::npos) {
        return false; // keeps ids a subset of dataplane/etsi014/sae_id.h and path-safe
    }
    return std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '_' || c == '-';
    });
}

sim_driver_config::~sim_driver_config() {
    secret_hex.resize(secret_hex.capacity());
    OPENSSL_cleanse(secret_hex.data(), secret_hex.size());
}

secret_bytes &secret_bytes::operator=(secret_bytes &&other) noexcept {
    if (this != &other) {
        OPENSSL_cleanse(_bytes.data(), _bytes.size());
        _bytes = std::move(other._bytes);
    }
    return *this;
}

secret_bytes::~secret_bytes() {
    OPENSSL_cleanse(_bytes.data(), _bytes.size());
}

config parse_config(std::string_view yaml, const std::string &display_name,
                    const std::filesystem::path &base_dir) {
    const parse_context ctx{display_name, base_dir};
    YAML::Node root;
    try {
        root = YAML::Load(std::string(yaml));
    } catch (const YAML::Exception &e) {
        fail_at(ctx, e.mark, "", "invalid YAML: " + e.msg);
    }
    if (!root.IsDefined() || root.IsNull()) {
        throw config_error(display_name, 0, 0, "", "the file is empty");
    }
    config cfg;
    map_reader top(ctx, root, "");
    // The order matters for cross-references: node id, then links and remote nodes, then the
    // SAEs whose home nodes must be among them.
    parse_node(ctx, top.require("node"), cfg);
    parse_tls(ctx, top.require("tls"), cfg);
    if (const YAML::Node v = top.get("sae_identity"); v.IsDefined()) {
        parse_sae_identity(ctx, v, cfg);
    }
    parse_store(ctx, top.require("store"), cfg);
    if (const YAML::Node v = top.get("links"); v.IsDefined()) {
        parse_links(ctx, v, cfg);
    }
    if (const YAML::Node v = top.get("remote_nodes"); v.IsDefined()) {
        parse_remote_nodes(ctx, v, cfg);
    }
    if (const YAML::Node v = top.get("saes"); v.IsDefined()) {
        parse_saes(ctx, v, cfg);
    }
    if (const YAML::Node v = top.get("limits"); v.IsDefined()) {
        parse_limits(ctx, v, cfg);
    }
    if (const YAML::Node v = top.get("shards"); v.IsDefined()) {
        cfg.shards =
            static_cast<std::uint32_t>(as_uint_in(ctx, v, "shards", 0, engine::limits::shards_max));
    }
    top.finish();
    return cfg;
}

config load_config(const std::filesystem::path &file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        const int err = errno;
        throw config_error(file.string(), 0, 0, "",
                           std::string("cannot open: ") + std::strerror(err));
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) {
        throw config_error(file.string(), 0, 0, "", "read error");
    }
    const std::filesystem::path absolute = std::filesystem::absolute(file).lexically_normal();
    config cfg = parse_config(text.str(), file.string(), absolute.parent_path());
    cfg.source = absolute;
    return cfg;
}

result<secret_bytes> read_link_secret(const sim_driver_config &sim) {
    if (sim.secret_file.empty()) {
        return decode_secret_hex(sim.secret_hex);
    }
    std::ifstream in(sim.secret_file, std::ios::binary);
    if (!in) {
        return fail(errno_error(errno != 0 ? errno : ENOENT));
    }
    // Read into a buffer sized once, so no reallocation leaves a copy behind.
    std::string text(4 * secret_bytes_max, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    const bool too_long = got == text.size();
    std::string_view view(text.data(), got);
    while (!view.empty() && std::isspace(static_cast<unsigned char>(view.front())) != 0) {
        view.remove_prefix(1);
    }
    while (!view.empty() && std::isspace(static_cast<unsigned char>(view.back())) != 0) {
        view.remove_suffix(1);
    }
    auto out = too_long ? result<secret_bytes>(fail(errc::invalid_spec)) : decode_secret_hex(view);
    OPENSSL_cleanse(text.data(), text.size());
    return out;
}

std::string summary(const config &cfg) {
    std::string s = "node " + cfg.node.id + ": " + std::to_string(cfg.saes.size()) + " SAEs (" +
                    std::to_string(std::count_if(
                        cfg.saes.begin(), cfg.saes.end(),
                        [&](const sae_config &sae) { return sae.home_node == cfg.node.id; })) +
                    " at home), " + std::to_string(cfg.links.size()) + " links";
    for (std::size_t i = 0; i < cfg.links.size(); ++i) {
        s += (i == 0 ? " (" : ", ") + cfg.links[i].id + " -> " + cfg.links[i].peer;
    }
    s += cfg.links.empty() ? "" : ")";
    s += ", SAE API " + cfg.node.sae_api.address + ":" + std::to_string(cfg.node.sae_api.port);
    s += ", shards " + (cfg.shards == 0 ? std::string("one per core") : std::to_string(cfg.shards));
    return s;
}

} // namespace keyrail::control
