// keyraild: the keyrail node. Loads the node configuration, opens the key store, starts the
// sharded ETSI 014 server over mutual TLS and runs until SIGTERM or SIGINT, then drains:
// stop accepting, finish in-flight requests, make the store durable, exit 0.
// Runs on the starting thread; exceptions (configuration, start-up) end in main with a
// message and exit 1. Nothing here logs key bytes.
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "control/config.h"
#include "dataplane/errc.h"
#include "dataplane/etsi014/errc.h"
#include "dataplane/node/etsi_protocol.h"
#include "dataplane/node/local_key_service.h"
#include "dataplane/node/local_source.h"
#include "dataplane/node/node_hooks.h"
#include "dataplane/node/node_runtime.h"
#include "dataplane/node/peer_link.h"
#include "dataplane/node/peer_protocol.h"
#include "dataplane/node/settings.h"
#include "dataplane/store/key_store.h"
#include "drivers/sim/sim_link.h"
#include "engine/log.h"
#include "engine/secure.h"
#include "engine/server.h"

namespace {

namespace control = keyrail::control;
namespace dp = keyrail::dataplane;
namespace node = keyrail::dataplane::node;
namespace engine = keyrail::engine;

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

constexpr std::string_view usage_text = R"(keyraild: the keyrail node (ETSI GS QKD 014 over mutual TLS)

Usage:
  keyraild --config FILE
      Runs the node FILE describes (schema: control/README.md). SIGTERM or SIGINT drains it:
      no new connections, in-flight requests finish, the store is made durable, exit 0.
  keyraild --help

Environment: KEYRAIL_LOG=debug|info|warn|error (default info); the store's master key
variable when the configuration names one (store.master_key_env).
Exit status: 0 after a clean drain, 1 on a configuration, store or start-up problem, 2 on a
usage error.
)";

// Stream ids of local sources sit above any id a link's shared stream will use, so the
// two-node wave can number link streams from 1 without meeting these.
constexpr std::uint32_t local_stream_base = 0x4000'0000u;

// Start-up failure with a message for the operator; exit 1.
class startup_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The sim driver behind the node's block_source interface (dataplane does not link drivers).
class sim_source final : public node::block_source {
public:
    explicit sim_source(keyrail::drivers::sim::sim_link link) noexcept : _link(std::move(link)) {}
    std::size_t produce(std::uint64_t now_ns, std::span<std::uint8_t> out,
                        std::size_t max_blocks) noexcept override {
        return _link.produce(now_ns, out, max_blocks);
    }
    std::uint64_t next_sequence() const noexcept override { return _link.next_sequence(); }
    void deliver_through(std::uint64_t sequence_end) noexcept override {
        _link.deliver_through(sequence_end);
    }

private:
    keyrail::drivers::sim::sim_link _link;
};

std::uint64_t monotonic_now_ns() {
    return node::monotonic_clock{}.now_ns();
}

node::settings make_settings(const control::config& cfg) {
    node::settings s;
    s.kme_id = cfg.node.id;
    s.identity = cfg.sae_identity.mode == control::sae_identity_mode::cn
                     ? node::identity_mode::cn
                     : node::identity_mode::san_uri;
    s.san_uri_prefix = cfg.sae_identity.san_uri_prefix;
    for (const control::sae_config& sae : cfg.saes) {
        s.saes.push_back({sae.id,
                          sae.home_node == cfg.node.id ? node::sae_home::local
                                                       : node::sae_home::remote,
                          sae.home_node});
    }
    for (const control::link_config& link : cfg.links) {
        s.links.push_back({link.id, link.peer});
    }
    s.dec_keys_wait_ms = cfg.limits.dec_keys_wait_ms;
    s.key_size_bits = cfg.limits.key_size;
    s.min_key_size_bits = cfg.limits.min_key_size;
    s.max_key_size_bits = cfg.limits.max_key_size;
    s.max_key_per_request = cfg.limits.max_key_per_request;
    s.max_key_count = cfg.limits.max_key_count;
    s.max_sae_id_count = cfg.limits.max_SAE_ID_count;
    s.key_rate_bits_per_s = cfg.links.empty() ? 0 : cfg.links.front().sim.rate_bps;
    return s;
}

dp::store_config make_store_config(const control::config& cfg) {
    dp::store_config s;
    s.dir = cfg.store.dir.string();
    if (!cfg.store.master_key_file.empty()) {
        s.master_key = {dp::master_key_source::kind::file, cfg.store.master_key_file.string()};
    } else {
        s.master_key = {dp::master_key_source::kind::env, cfg.store.master_key_env};
    }
    s.mode = cfg.store.durability_mode == control::durability::power ? dp::durability::power
                                                                     : dp::durability::process;
    s.create = dp::open_mode::create_if_missing;
    s.block_bytes = cfg.store.block_bits / 8;
    s.capacity_blocks = cfg.store.capacity_blocks;
    s.reservations_max = cfg.store.reservations_max;
    s.journal_compact_bytes = std::uint64_t{cfg.store.journal_compact_mb} << 20;
    return s;
}

std::string master_key_name(const control::config& cfg) {
    if (!cfg.store.master_key_file.empty()) {
        return "store.master_key_file '" + cfg.store.master_key_file.string() + "'";
    }
    return "store.master_key_env '" + cfg.store.master_key_env + "'";
}

// The local stream's secret. The link's own keystream is what the peer node derives too, so
// serving local pairs from it would give a pair at the peer the same bytes; and a stream that
// restarted at sequence 0 after a lost store would replay old keys. Hence
//   local secret = HMAC-SHA256(link secret, "keyrail local stream v1" || 0 || node id || salt)
// with a random salt kept beside the store and made new with each new local stream.
struct local_secret {
    std::array<std::uint8_t, 32> bytes{};
    local_secret() = default;
    local_secret(const local_secret&) = delete;
    local_secret& operator=(const local_secret&) = delete;
    ~local_secret() { keyrail::secure_wipe(bytes.data(), bytes.size()); }
};

constexpr std::size_t salt_bytes = 32;

void write_new_salt(const std::filesystem::path& path) {
    std::array<std::uint8_t, salt_bytes> salt{};
    if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) {
        throw startup_error("local stream salt: the DRBG failed");
    }
    const std::filesystem::path tmp = path.string() + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 &&
              ::write(fd, salt.data(), salt.size()) == static_cast<ssize_t>(salt.size()) &&
              ::fsync(fd) == 0;
    if (fd >= 0) {
        ok = (::close(fd) == 0) && ok;
    }
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
        throw startup_error("local stream salt '" + path.string() + "': " + std::strerror(errno));
    }
}

std::array<std::uint8_t, salt_bytes> read_salt(const std::filesystem::path& path) {
    std::array<std::uint8_t, salt_bytes> salt{};
    std::ifstream in(path, std::ios::binary);
    in.read(reinterpret_cast<char*>(salt.data()), static_cast<std::streamsize>(salt.size()));
    if (!in || in.gcount() != static_cast<std::streamsize>(salt.size())) {
        // The stream exists but its salt does not: regenerating it would be silent, and using
        // none would replay. Refuse, and say what to do.
        throw startup_error("local stream salt '" + path.string() +
                            "' is missing or short while the store has a local stream; restore "
                            "it, or move the store away to start a new one");
    }
    return salt;
}

std::unique_ptr<local_secret> derive_local_secret(std::span<const std::uint8_t> link_secret,
                                                  const std::string& node_id,
                                                  const std::array<std::uint8_t, salt_bytes>& salt) {
    static constexpr char label[] = "keyrail local stream v1";
    std::vector<std::uint8_t> msg(label, label + sizeof label); // includes the 0 separator
    msg.insert(msg.end(), node_id.begin(), node_id.end());
    msg.insert(msg.end(), salt.begin(), salt.end());
    auto out = std::make_unique<local_secret>();
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), link_secret.data(), static_cast<int>(link_secret.size()), msg.data(),
             msg.size(), out->bytes.data(), &len) == nullptr ||
        len != out->bytes.size()) {
        throw startup_error("local stream secret: HMAC-SHA256 failed");
    }
    return out;
}

// Blocks a source holds at most: max_key_count keys of the default size, and half the stream's
// window so reserved keys always have room.
std::uint64_t ingest_cap(const control::config& cfg, const dp::stream_status& st) {
    const std::uint64_t per_key = (cfg.limits.key_size + cfg.store.block_bits - 1) /
                                  cfg.store.block_bits;
    return std::min<std::uint64_t>(cfg.limits.max_key_count * per_key,
                                   std::max<std::uint64_t>(1, st.capacity_blocks / 2));
}

// The link's sim driver keyed with secret, starting now at the stream's ingest mark.
keyrail::drivers::sim::sim_link make_sim(const control::link_config& link,
                                         std::span<const std::uint8_t> secret,
                                         const dp::stream& stream, const std::string& where) {
    keyrail::drivers::sim::sim_link_config sc;
    sc.link_id = link.id;
    sc.secret = secret;
    sc.block_bytes = stream.block_bytes();
    sc.rate_bps = link.sim.rate_bps;
    sc.burst_blocks = link.sim.burst_blocks;
    sc.jitter_percent = link.sim.jitter_percent;
    sc.seed = link.sim.seed;
    sc.start_ns = monotonic_now_ns();
    sc.first_sequence = stream.status().ingested;
    auto sim = keyrail::drivers::sim::sim_link::create(sc);
    if (!sim) {
        throw startup_error(where + ": sim driver: " + sim.error().message());
    }
    return std::move(*sim);
}

// The key stream and its source for SAE pairs homed here: the first link's sim driver with a
// node-local secret (above), until the peer protocol lands. nullptr when the node has no link.
std::unique_ptr<node::local_source> make_local_source(const control::config& cfg,
                                                      dp::key_store& store) {
    if (cfg.links.empty()) {
        KEYRAIL_LOG(warn, "keyraild", "no link configured: key requests will get 503");
        return nullptr;
    }
    const control::link_config& link = cfg.links.front();
    const dp::stream_id id{local_stream_base};
    const std::filesystem::path salt_path = cfg.store.dir / "local-stream.salt";
    auto found = store.find(id);
    if (!found && found.error() == dp::errc::unknown_stream) {
        // A new local stream gets a new salt before its first block, so a store that was lost
        // and recreated never serves the blocks of the old one again.
        write_new_salt(salt_path);
        found = store.create_stream(id, dp::ownership{1, 0});
    }
    if (!found) {
        throw startup_error("store '" + cfg.store.dir.string() + "': local stream: " +
                            found.error().message());
    }
    dp::stream& stream = **found;
    auto secret = control::read_link_secret(link.sim);
    if (!secret) {
        throw startup_error("links[0] '" + link.id + "': link secret: " +
                            secret.error().message());
    }
    const dp::stream_status st = stream.status();
    const auto derived = derive_local_secret(secret->bytes(), cfg.node.id,
                                                     read_salt(salt_path));
    auto sim = make_sim(link, derived->bytes, stream, "links[0] '" + link.id + "'");
    const std::uint64_t cap = ingest_cap(cfg, st);
    KEYRAIL_LOG(info, "keyraild",
                "local key source: link '%s' (sim, %llu bit/s), stream %u resumes at seq %llu, "
                "%llu blocks available, holding at most %llu; %u reservation slots, unfetched "
                "keys expire after %u s",
                link.id.c_str(), static_cast<unsigned long long>(link.sim.rate_bps), id.value,
                static_cast<unsigned long long>(st.ingested),
                static_cast<unsigned long long>(st.owned_available_blocks),
                static_cast<unsigned long long>(cap), cfg.store.reservations_max,
                cfg.limits.key_expiry_s);
    node::local_source_options options;
    options.ingest_cap_blocks = cap;
    options.key_expiry_ns = std::uint64_t{cfg.limits.key_expiry_s} * 1'000'000'000u;
    options.reservations_max = cfg.store.reservations_max;
    options.commit_at_barrier = true; // node_hooks::before_output commits once per loop turn
    auto source = std::make_unique<node::local_source>(
        stream, std::make_unique<sim_source>(std::move(sim)), options);
    source->recover(monotonic_now_ns());
    return source;
}

// A link's stream id in this node's store: a hash of the link id (the same at both ends and
// independent of the order of links in the file), below local_stream_base.
std::uint32_t link_stream_id(const std::string& link_id) {
    std::uint32_t h = 2166136261u; // FNV-1a
    for (const char c : link_id) {
        h = (h ^ static_cast<std::uint8_t>(c)) * 16777619u;
    }
    h &= local_stream_base - 1;
    return h == 0 ? 1 : h;
}

// One link's stream, shared with the neighbour: even sequence numbers belong to the node whose
// id sorts first, odd ones to the other. Its sim driver uses the link secret itself, so both
// ends derive the same blocks.
struct link_parts {
    std::unique_ptr<node::local_source> source;
    std::unique_ptr<node::peer_link> link;
};

link_parts make_link(const control::config& cfg, const node::settings& settings,
                     dp::key_store& store, std::size_t index) {
    const control::link_config& link = cfg.links[index];
    const std::string where = "links[" + std::to_string(index) + "] '" + link.id + "'";
    const dp::stream_id id{link_stream_id(link.id)};
    const dp::ownership own{2, cfg.node.id < link.peer ? 0u : 1u};
    auto found = store.find(id);
    bool fresh = false;
    if (!found && found.error() == dp::errc::unknown_stream) {
        found = store.create_stream(id, own);
        fresh = true;
    }
    if (!found) {
        throw startup_error("store '" + cfg.store.dir.string() + "': " + where + ": " +
                            found.error().message());
    }
    dp::stream& stream = **found;
    if (stream.owner().stride != own.stride || stream.owner().offset != own.offset) {
        throw startup_error(where + ": the store's stream " + std::to_string(id.value) +
                            " has another share (was the node id changed?)");
    }
    auto secret = control::read_link_secret(link.sim);
    if (!secret) {
        throw startup_error(where + ": link secret: " + secret.error().message());
    }
    const dp::stream_status st = stream.status();
    auto sim = make_sim(link, secret->bytes(), stream, where);
    auto confirmation = sim.key_confirmation();
    node::local_source_options options;
    options.cfg = &settings;
    options.peer_node = link.peer;
    options.fresh = fresh;
    options.ingest_cap_blocks = ingest_cap(cfg, st);
    options.key_expiry_ns = std::uint64_t{cfg.limits.key_expiry_s} * 1'000'000'000u;
    options.reservations_max = cfg.store.reservations_max;
    options.commit_at_barrier = true; // node_hooks::before_output commits once per loop turn
    link_parts parts;
    parts.source = std::make_unique<node::local_source>(
        stream, std::make_unique<sim_source>(std::move(sim)), options);
    parts.source->recover(monotonic_now_ns());
    parts.link = std::make_unique<node::peer_link>(
        link.id, cfg.node.id, link.peer, link.sim.rate_bps, *parts.source, confirmation,
        cfg.store.dir / ("link-" + link.id + ".confirmed"));
    keyrail::secure_wipe(confirmation.data(), confirmation.size());
    KEYRAIL_LOG(info, "keyraild",
                "link '%s' to %s: stream %u (share %u of %u) resumes at seq %llu, %llu own blocks "
                "available; %s",
                link.id.c_str(), link.peer.c_str(), id.value, own.offset, own.stride,
                static_cast<unsigned long long>(st.ingested),
                static_cast<unsigned long long>(st.owned_available_blocks),
                parts.link->serving() ? "confirmed before: serving keys"
                                      : "serving keys once the peer confirms the link secret");
    return parts;
}

node::protocol_limits make_protocol_limits(const control::config& cfg) {
    node::protocol_limits lim;
    lim.http.body_bytes_max = 32 * 1024;
    lim.workspace.keys_max = std::max<std::size_t>(cfg.limits.max_key_per_request, 1);
    // Key bytes in one response: what max_key_per_request keys of max_key_size need, at most
    // 64 KiB per shard; a larger request gets 400 before anything is reserved.
    const std::uint64_t wanted = std::uint64_t{cfg.limits.max_key_per_request} *
                                 (cfg.limits.max_key_size / 8);
    lim.workspace.key_bytes_max =
        static_cast<std::size_t>(std::clamp<std::uint64_t>(wanted, 1024, 64 * 1024));
    lim.workspace.json_tokens_max = 4 * lim.workspace.keys_max + 64;
    lim.workspace.body_bytes_max = lim.http.body_bytes_max;
    return lim;
}

int run_node(const std::string& config_path) {
    const control::config cfg = control::load_config(config_path);
    const node::settings settings = make_settings(cfg);

    auto store = dp::key_store::open(make_store_config(cfg));
    if (!store) {
        std::string hint;
        if (store.error() == dp::errc::master_key_missing ||
            store.error() == dp::errc::master_key_invalid ||
            store.error() == dp::errc::wrong_master_key) {
            hint = " (" + master_key_name(cfg) + ")";
        }
        throw startup_error("store '" + cfg.store.dir.string() + "': " + store.error().message() +
                            hint);
    }
    std::unique_ptr<node::local_source> source = make_local_source(cfg, **store);
    std::vector<link_parts> links;
    std::vector<node::peer_link*> link_ptrs;
    std::vector<node::local_source*> sources{source.get()};
    for (std::size_t i = 0; i < cfg.links.size(); ++i) {
        for (std::size_t j = 0; j < i; ++j) {
            if (link_stream_id(cfg.links[i].id) == link_stream_id(cfg.links[j].id)) {
                throw startup_error("links '" + cfg.links[j].id + "' and '" + cfg.links[i].id +
                                    "' hash to the same stream id: rename one");
            }
        }
        links.push_back(make_link(cfg, settings, **store, i));
        link_ptrs.push_back(links.back().link.get());
        sources.push_back(links.back().source.get());
    }
    // Made once the shard count is known (after server::create), before run() starts the
    // shards that use it.
    std::unique_ptr<node::node_runtime> runtime;
    // Quoted by the 503 of a full reservation table; set before any shard thread starts.
    keyrail::dataplane::etsi014::set_reservation_limits(
        {cfg.store.reservations_max, cfg.limits.key_expiry_s});
    node::local_source* const source_ptr = source.get();

    const node::protocol_limits limits = make_protocol_limits(cfg);
    const std::size_t response_bytes_max =
        keyrail::dataplane::etsi014::workspace(limits.workspace).response_bytes_max();
    static const node::monotonic_clock clock;

    engine::server_config sc;
    sc.shard_count = cfg.shards;
    sc.signals = engine::stop_signals::handle;
    sc.connections_per_shard_max = 128;
    sc.input_buffer_bytes = 64 * 1024;
    // Peer connections share these buffers: a Reserve batch (up to 256 keys) and its ack must
    // fit whatever the ETSI limits make the largest response.
    sc.output_buffer_bytes =
        cfg.links.empty() ? response_bytes_max : std::max<std::size_t>(response_bytes_max, 128 * 1024);
    engine::listener_config l;
    l.address = cfg.node.sae_api.address;
    l.port = cfg.node.sae_api.port;
    l.tls.cert_file = cfg.tls.cert;
    l.tls.key_file = cfg.tls.key;
    l.tls.ca_file = cfg.tls.sae_ca;
    l.tls.verify_depth = cfg.tls.verify_depth;
    l.make_protocol = [&settings, source_ptr, limits, &runtime](std::size_t shard) {
        return std::make_unique<node::etsi_protocol>(
            settings,
            std::make_unique<node::local_key_service>(settings, source_ptr, clock, runtime.get(),
                                                      shard),
            limits, runtime.get(), shard);
    };
    sc.listeners.push_back(std::move(l));
    // The peer API, and the links this node dials: the node whose id sorts first dials, so a
    // link has one connection. Both use the peer protocol of listener 1.
    std::vector<std::size_t> outbound_links;
    if (!cfg.links.empty()) {
        engine::listener_config p;
        p.address = cfg.node.peer_api.address;
        p.port = cfg.node.peer_api.port;
        p.tls.cert_file = cfg.tls.cert;
        p.tls.key_file = cfg.tls.key;
        p.tls.ca_file = cfg.tls.peer_ca;
        p.tls.verify_depth = cfg.tls.verify_depth;
        // Peer connections live on the key shard with the sources they feed.
        p.only_shard = node::node_runtime::key_shard;
        for (std::size_t i = 0; i < cfg.links.size(); ++i) {
            const control::link_config& link = cfg.links[i];
            if (!(cfg.node.id < link.peer)) {
                continue;
            }
            engine::outbound_config o;
            o.address = link.peer_address.address;
            o.port = link.peer_address.port;
            o.tls.cert_file = cfg.tls.cert;
            o.tls.key_file = cfg.tls.key;
            o.tls.ca_file = cfg.tls.peer_ca;
            o.tls.verify_depth = cfg.tls.verify_depth;
            o.tls.expected_peer_uri = "urn:keyrail:node:" + link.peer;
            o.shard_index = node::node_runtime::key_shard;
            o.protocol_listener = 1;
            o.backoff_min = std::chrono::milliseconds(50);
            o.backoff_max = std::chrono::milliseconds(1000);
            sc.outbound.push_back(std::move(o));
            outbound_links.push_back(i);
        }
        // A frame fits the peer's input buffer and leaves room in our output for the rest.
        const std::size_t frame_max = std::min(sc.input_buffer_bytes, sc.output_buffer_bytes / 2);
        p.make_protocol = [&settings, &runtime, outbound_links, frame_max](std::size_t shard) {
            return std::make_unique<node::peer_protocol>(settings, *runtime, shard, outbound_links,
                                                         frame_max);
        };
        sc.listeners.push_back(std::move(p));
    }
    sc.make_shard_hooks = [sources, &runtime](std::size_t shard) {
        // Only the key shard touches the sources: their timers and their group commit.
        return std::make_unique<node::node_hooks>(
            shard == node::node_runtime::key_shard ? sources : std::vector<node::local_source*>{},
            runtime.get());
    };
    // No drain_hook: the key shard's node_hooks::on_drain makes the sources durable, on the
    // thread that owns them, once every connection is closed.

    auto server = engine::server::create(std::move(sc));
    if (!server) {
        throw startup_error("SAE API on " + cfg.node.sae_api.address + ":" +
                            std::to_string(cfg.node.sae_api.port) + ": " +
                            server.error().message());
    }
    // Off the key shard, key calls are forwarded with buffers for one request's keys.
    runtime = std::make_unique<node::node_runtime>(
        (*server)->shard_count(), link_ptrs,
        node::forward_limits{limits.workspace.keys_max, limits.workspace.key_bytes_max});
    KEYRAIL_LOG(info, "keyraild", "ready: node %s, SAE API on %s port %u, %zu shards, %zu SAEs",
                cfg.node.id.c_str(), cfg.node.sae_api.address.c_str(), (*server)->port(0),
                (*server)->shard_count(), cfg.saes.size());
    if (!cfg.links.empty()) {
        KEYRAIL_LOG(info, "keyraild", "peer API on %s port %u, %zu links (%zu dialled)",
                    cfg.node.peer_api.address.c_str(), (*server)->port(1), cfg.links.size(),
                    outbound_links.size());
    }
    auto ran = (*server)->run();
    if (!ran) {
        throw startup_error("server: " + ran.error().message());
    }
    server->reset();
    KEYRAIL_LOG(info, "keyraild", "drained: store durable, exiting");
    return exit_ok;
}

} // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
        std::fputs(usage_text.data(), stdout);
        return exit_ok;
    }
    if (args.size() != 2 || args[0] != "--config") {
        std::fprintf(stderr, "keyraild: usage: keyraild --config FILE (see keyraild --help)\n");
        return exit_usage;
    }
    // Keep SIGTERM and SIGINT blocked for the whole life of the process (before any thread
    // starts, so every thread inherits it): the server drains on them through a signalfd, and a
    // second signal during the final commit must not kill the process before it exits 0.
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_set, nullptr);
    try {
        return run_node(args[1]);
    } catch (const control::config_error& e) {
        std::fprintf(stderr, "keyraild: %s\n", e.what());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "keyraild: %s\n", e.what());
    }
    return exit_failure;
}
