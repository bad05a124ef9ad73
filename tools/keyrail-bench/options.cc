#include "tools/keyrail-bench/options.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string_view>

namespace keyrail::bench_client {
namespace {

std::uint64_t parse_uint(std::string_view name, std::string_view text, std::uint64_t min_value,
                         std::uint64_t max_value) {
    std::uint64_t v = 0;
    const auto* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, v);
    if (ec != std::errc{} || ptr != end || text.empty()) {
        throw std::invalid_argument(std::string(name) + ": not a number: '" + std::string(text) +
                                    "'");
    }
    if (v < min_value || v > max_value) {
        throw std::invalid_argument(std::string(name) + ": " + std::string(text) +
                                    " is out of range [" + std::to_string(min_value) + ", " +
                                    std::to_string(max_value) + "]");
    }
    return v;
}

double parse_positive(std::string_view name, const std::string& text) {
    std::size_t used = 0;
    double v = 0;
    try {
        v = std::stod(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != text.size() || !std::isfinite(v) || v <= 0) {
        throw std::invalid_argument(std::string(name) + ": not a positive number: '" + text +
                                    "'");
    }
    return v;
}

std::vector<int> parse_cpus(const std::string& text) {
    std::vector<int> cpus;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const std::size_t comma = text.find(',', pos);
        const std::string_view item =
            std::string_view(text).substr(pos, comma == std::string::npos ? std::string::npos
                                                                          : comma - pos);
        const std::size_t dash = item.find('-');
        if (dash == std::string_view::npos) {
            cpus.push_back(static_cast<int>(parse_uint("--cpus", item, 0, 4095)));
        } else {
            const auto lo = parse_uint("--cpus", item.substr(0, dash), 0, 4095);
            const auto hi = parse_uint("--cpus", item.substr(dash + 1), lo, 4095);
            for (auto c = lo; c <= hi; ++c) {
                cpus.push_back(static_cast<int>(c));
            }
        }
        if (comma == std::string::npos) {
            break;
        }
        pos = comma + 1;
    }
    return cpus;
}

} // namespace

std::string base_url::text() const {
    const bool v6 = host.find(':') != std::string::npos;
    return "https://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + prefix;
}

base_url parse_base_url(const std::string& url) {
    constexpr std::string_view scheme = "https://";
    if (url.rfind(scheme, 0) != 0) {
        throw std::invalid_argument("URL '" + url + "' must start with https:// (ETSI 014 is "
                                    "HTTPS only)");
    }
    std::string_view rest = std::string_view(url).substr(scheme.size());
    base_url out;
    const std::size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    if (slash != std::string_view::npos) {
        std::string_view path = rest.substr(slash);
        while (!path.empty() && path.back() == '/') {
            path.remove_suffix(1);
        }
        out.prefix = std::string(path);
    }
    std::string_view port_text;
    if (!authority.empty() && authority.front() == '[') {
        const std::size_t close = authority.find(']');
        if (close == std::string_view::npos) {
            throw std::invalid_argument("URL '" + url + "': unterminated [IPv6] host");
        }
        out.host = std::string(authority.substr(1, close - 1));
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                throw std::invalid_argument("URL '" + url + "': junk after ]");
            }
            port_text = after.substr(1);
        }
    } else {
        const std::size_t colon = authority.rfind(':');
        out.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos) {
            port_text = authority.substr(colon + 1);
        }
    }
    if (out.host.empty()) {
        throw std::invalid_argument("URL '" + url + "' has no host");
    }
    if (!port_text.empty()) {
        out.port = static_cast<std::uint16_t>(parse_uint("URL port", port_text, 1, 65535));
    }
    return out;
}

double options::duration_bound_s() const noexcept {
    if (duration_s > 0) {
        return duration_s;
    }
    return requests_max > 0 ? std::numeric_limits<double>::infinity() : 10.0;
}

const char* to_string(request_kind k) noexcept {
    switch (k) {
    case request_kind::status:
        return "status";
    case request_kind::enc_keys:
        return "enc_keys";
    case request_kind::paired:
        return "paired";
    }
    return "?";
}

const char* usage_text() noexcept {
    return R"(usage: keyrail-bench --url https://HOST:PORT --ca FILE --cert FILE --key FILE
                     --slave-sae ID [options]
An ETSI GS QKD 014 load generator (client side). Every response is verified.

target
  --url URL            the (master) KME's ETSI 014 base URL
  --ca FILE            CA certificate(s) that sign the KME's certificate
  --cert FILE --key FILE   the calling SAE's client certificate and key
  --slave-sae ID       slave_SAE_ID for status and enc_keys paths
  --master-sae ID      master_SAE_ID for dec_keys paths (paired)
  --slave-url URL --slave-cert FILE --slave-key FILE [--slave-ca FILE]
                       the slave SAE's KME and credentials (paired; default: as master)
request
  --request KIND       status | enc_keys (default) | paired (enc_keys then dec_keys, compared)
  --method get|post    for enc_keys (default get; dec_keys is always POST)
  --number N           keys per request (default 1)
  --size BITS          key size, a multiple of 8 (default 256)
load
  --connections N      keep-alive connections per KME, over all threads (default 1)
  --pipeline N         requests in flight per connection (default 1)
  --threads N          load threads (default 1)
  --cpus LIST          pin threads (and the main thread) to these cores, e.g. 1 or 0,1 or 2-3
  --rate R             open loop: R requests/s in total, latency from the intended send time;
                       without it: closed loop, connections x pipeline requests in flight
bounds (whichever comes first; default 10 s)
  --duration S         stop issuing after S seconds
  --requests N         stop after N requests
  --timeout S          per-request timeout and drain wait at the end (default 5)
output
  --json FILE          write the results as JSON
  --no-progress        no progress line (it is only shown when stdout is a terminal)
  --no-probe           skip the pre-flight check (connect, TLS, one status request)
exit status: 0 all requests succeeded, 1 some requests failed, 2 set-up error
)";
}

options parse_options(int argc, char** argv, bool& help_requested) {
    options o;
    help_requested = false;
    std::string url;
    std::string slave_url;
    std::string slave_ca;
    std::string method = "get";
    std::string kind = "enc_keys";
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            help_requested = true;
            return o;
        }
        if (arg == "--no-progress") {
            o.progress = false;
            continue;
        }
        if (arg == "--no-probe") {
            o.skip_probe = true;
            continue;
        }
        if (i + 1 >= argc) {
            throw std::invalid_argument(arg.rfind("--", 0) == 0
                                            ? arg + " needs a value"
                                            : "unexpected argument '" + arg + "'");
        }
        const std::string value = argv[++i];
        if (arg == "--url") {
            url = value;
        } else if (arg == "--ca") {
            o.master.ca_file = value;
        } else if (arg == "--cert") {
            o.master.cert_file = value;
        } else if (arg == "--key") {
            o.master.key_file = value;
        } else if (arg == "--slave-url") {
            slave_url = value;
        } else if (arg == "--slave-ca") {
            slave_ca = value;
        } else if (arg == "--slave-cert") {
            o.slave.cert_file = value;
        } else if (arg == "--slave-key") {
            o.slave.key_file = value;
        } else if (arg == "--slave-sae") {
            o.slave_sae_id = value;
        } else if (arg == "--master-sae") {
            o.master_sae_id = value;
        } else if (arg == "--request") {
            kind = value;
        } else if (arg == "--method") {
            method = value;
        } else if (arg == "--number") {
            o.key_number = static_cast<std::uint32_t>(parse_uint(arg, value, 1, 100000));
        } else if (arg == "--size") {
            o.key_size_bits = static_cast<std::uint32_t>(parse_uint(arg, value, 8, 1u << 20));
            if (o.key_size_bits % 8 != 0) {
                throw std::invalid_argument("--size: " + value + " is not a multiple of 8");
            }
        } else if (arg == "--connections") {
            o.connections_count = static_cast<std::uint32_t>(parse_uint(arg, value, 1, 65536));
        } else if (arg == "--pipeline") {
            o.pipeline_depth = static_cast<std::uint32_t>(parse_uint(arg, value, 1, 1024));
        } else if (arg == "--threads") {
            o.threads_count = static_cast<std::uint32_t>(parse_uint(arg, value, 1, 256));
        } else if (arg == "--cpus") {
            o.cpus = parse_cpus(value);
        } else if (arg == "--rate") {
            o.rate_per_s = parse_positive(arg, value);
        } else if (arg == "--duration") {
            o.duration_s = parse_positive(arg, value);
        } else if (arg == "--requests") {
            o.requests_max = parse_uint(arg, value, 1, std::numeric_limits<std::uint64_t>::max());
        } else if (arg == "--timeout") {
            o.timeout_s = parse_positive(arg, value);
        } else if (arg == "--json") {
            o.json_file = value;
        } else {
            throw std::invalid_argument("unknown option '" + arg + "' (see --help)");
        }
    }
    if (url.empty()) {
        throw std::invalid_argument("--url is required");
    }
    o.master.url = parse_base_url(url);
    if (o.master.ca_file.empty() || o.master.cert_file.empty() || o.master.key_file.empty()) {
        throw std::invalid_argument("--ca, --cert and --key are required (ETSI 014 is mutual "
                                    "TLS)");
    }
    if (o.slave_sae_id.empty()) {
        throw std::invalid_argument("--slave-sae is required");
    }
    if (kind == "status") {
        o.kind = request_kind::status;
    } else if (kind == "enc_keys") {
        o.kind = request_kind::enc_keys;
    } else if (kind == "paired") {
        o.kind = request_kind::paired;
    } else {
        throw std::invalid_argument("--request: '" + kind +
                                    "' is not one of status, enc_keys, paired");
    }
    if (method == "get" || method == "GET") {
        o.method = http_method::get;
    } else if (method == "post" || method == "POST") {
        o.method = http_method::post;
    } else {
        throw std::invalid_argument("--method: '" + method + "' is not get or post");
    }
    if (o.kind == request_kind::paired) {
        if (o.master_sae_id.empty()) {
            throw std::invalid_argument("--request paired needs --master-sae");
        }
        o.slave.url = slave_url.empty() ? o.master.url : parse_base_url(slave_url);
        o.slave.ca_file = slave_ca.empty() ? o.master.ca_file : slave_ca;
        if (o.slave.cert_file.empty() != o.slave.key_file.empty()) {
            throw std::invalid_argument("--slave-cert and --slave-key go together");
        }
        if (o.slave.cert_file.empty()) {
            o.slave.cert_file = o.master.cert_file;
            o.slave.key_file = o.master.key_file;
        }
    }
    if (o.threads_count > o.connections_count) {
        throw std::invalid_argument("--threads " + std::to_string(o.threads_count) +
                                    " is more than --connections " +
                                    std::to_string(o.connections_count));
    }
    return o;
}

} // namespace keyrail::bench_client
