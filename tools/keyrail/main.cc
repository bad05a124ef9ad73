// keyrail: the command-line tool. Certificates for a test or small deployment and a config
// checker. Runs on the caller's thread; exceptions end in main with a message and exit 1.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "control/config.h"
#include "control/pki.h"

namespace {

namespace pki = keyrail::control::pki;

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

constexpr std::string_view usage_text = R"(keyrail: certificates and configuration for keyrail nodes

Usage:
  keyrail cert ca   --out DIR [--cn NAME] [--days N]
      A self-signed CA: DIR/ca.crt and DIR/ca.key (mode 0600). Default CN "keyrail CA",
      valid 3650 days.
  keyrail cert node --ca DIR --id NODE_ID --out DIR [--dns NAME]... [--ip ADDR]... [--days N]
      A node certificate (TLS server and client) signed by DIR/ca.{crt,key}:
      OUT/NODE_ID.crt and OUT/NODE_ID.key, CN NODE_ID, SAN URI urn:keyrail:node:NODE_ID
      plus the given DNS names and IPs (default: --dns localhost --ip 127.0.0.1).
  keyrail cert sae  --ca DIR --id SAE_ID --out DIR [--prefix URI_PREFIX] [--days N]
      An SAE client certificate: OUT/SAE_ID.crt and OUT/SAE_ID.key, CN SAE_ID,
      SAN URI PREFIX + SAE_ID (default prefix urn:keyrail:sae:).
  keyrail config check FILE
      Checks a node configuration; prints "ok: <summary>" or "FILE:LINE:COL: problem".
  keyrail --help

Exit status: 0 success, 1 failure, 2 usage error.
)";

// A usage mistake: printed with a hint, exit 2.
class usage_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// --flag value pairs; repeated flags accumulate.
class options {
public:
    options(const std::vector<std::string> &args, std::size_t first,
            const std::vector<std::string_view> &allowed) {
        for (std::size_t i = first; i < args.size(); ++i) {
            const std::string &flag = args[i];
            bool known = false;
            for (const auto a : allowed) {
                known = known || flag == a;
            }
            if (!known) {
                throw usage_error("unknown option '" + flag + "'");
            }
            if (i + 1 >= args.size()) {
                throw usage_error("option " + flag + " needs a value");
            }
            _values[flag].push_back(args[++i]);
        }
    }

    [[nodiscard]] const std::vector<std::string> &all(const std::string &flag) const {
        static const std::vector<std::string> none;
        const auto it = _values.find(flag);
        return it == _values.end() ? none : it->second;
    }

    [[nodiscard]] std::string one(const std::string &flag, const std::string &fallback) const {
        const auto &v = all(flag);
        if (v.size() > 1) {
            throw usage_error("option " + flag + " given more than once");
        }
        return v.empty() ? fallback : v.front();
    }

    [[nodiscard]] std::string required(const std::string &flag) const {
        std::string v = one(flag, "");
        if (v.empty()) {
            throw usage_error("missing required option " + flag);
        }
        return v;
    }

    // --days N as seconds.
    [[nodiscard]] long validity_s(long default_days) const {
        const std::string days = one("--days", std::to_string(default_days));
        char *end = nullptr;
        const long n = std::strtol(days.c_str(), &end, 10);
        if (end == days.c_str() || *end != '\0' || n <= 0 || n > 100L * 365) {
            throw usage_error("--days must be between 1 and 36500, got '" + days + "'");
        }
        return n * 24 * 3600;
    }

private:
    std::map<std::string, std::vector<std::string>> _values;
};

[[noreturn]] void fail_with(const std::string &what, const std::error_code &ec) {
    throw std::runtime_error(what + ": " + ec.message());
}

void write_credential(const pki::credential &cred, const std::filesystem::path &dir,
                      const std::string &stem) {
    const auto cert = dir / (stem + ".crt");
    const auto key = dir / (stem + ".key");
    if (auto r = pki::write_files(cred, cert, key); !r) {
        fail_with("cannot write " + cert.string() + " / " + key.string(), r.error());
    }
    std::printf("wrote %s and %s\n", cert.c_str(), key.c_str());
}

[[nodiscard]] pki::credential read_ca(const std::filesystem::path &dir) {
    auto ca = pki::read_files(dir / "ca.crt", dir / "ca.key");
    if (!ca) {
        fail_with("cannot read the CA in " + dir.string() + " (ca.crt, ca.key)", ca.error());
    }
    return std::move(*ca);
}

void check_id(const std::string &id, const char *what) {
    if (!keyrail::control::is_valid_id(id)) {
        throw usage_error(std::string(what) +
                          " must be 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit, "
                          "without '..', got '" +
                          id + "'");
    }
}

int cert_ca(const std::vector<std::string> &args) {
    const options opt(args, 2, {"--out", "--cn", "--days"});
    const std::filesystem::path out = opt.required("--out");
    auto ca = pki::make_ca(opt.one("--cn", "keyrail CA"), opt.validity_s(3650));
    if (!ca) {
        fail_with("cannot make the CA", ca.error());
    }
    write_credential(*ca, out, "ca");
    return exit_ok;
}

int cert_node(const std::vector<std::string> &args) {
    const options opt(args, 2, {"--ca", "--id", "--out", "--dns", "--ip", "--days"});
    const std::string id = opt.required("--id");
    check_id(id, "--id");
    const pki::credential ca = read_ca(opt.required("--ca"));
    pki::cert_spec spec;
    spec.common_name = id;
    spec.san_uris = {"urn:keyrail:node:" + id};
    spec.san_dns = opt.all("--dns");
    spec.san_ips = opt.all("--ip");
    if (spec.san_dns.empty() && spec.san_ips.empty()) {
        spec.san_dns = {"localhost"};
        spec.san_ips = {"127.0.0.1"};
    }
    spec.role = pki::cert_role::server_and_client;
    spec.valid_for_s = opt.validity_s(825);
    auto cred = pki::issue(ca, spec);
    if (!cred) {
        fail_with("cannot issue the node certificate", cred.error());
    }
    write_credential(*cred, opt.required("--out"), id);
    return exit_ok;
}

int cert_sae(const std::vector<std::string> &args) {
    const options opt(args, 2, {"--ca", "--id", "--out", "--prefix", "--days"});
    const std::string id = opt.required("--id");
    check_id(id, "--id");
    const pki::credential ca = read_ca(opt.required("--ca"));
    pki::cert_spec spec;
    spec.common_name = id;
    spec.san_uris = {opt.one("--prefix", "urn:keyrail:sae:") + id};
    spec.role = pki::cert_role::client;
    spec.valid_for_s = opt.validity_s(825);
    auto cred = pki::issue(ca, spec);
    if (!cred) {
        fail_with("cannot issue the SAE certificate", cred.error());
    }
    write_credential(*cred, opt.required("--out"), id);
    return exit_ok;
}

int config_check(const std::vector<std::string> &args) {
    if (args.size() != 3) {
        throw usage_error("usage: keyrail config check FILE");
    }
    try {
        const keyrail::control::config cfg = keyrail::control::load_config(args[2]);
        std::printf("ok: %s: %s\n", args[2].c_str(), keyrail::control::summary(cfg).c_str());
        return exit_ok;
    } catch (const keyrail::control::config_error &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return exit_failure;
    }
}

int run(const std::vector<std::string> &args) {
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
        std::fputs(usage_text.data(), args.empty() ? stderr : stdout);
        return args.empty() ? exit_usage : exit_ok;
    }
    for (const auto &a : args) {
        if (a == "--help" || a == "-h") {
            std::fputs(usage_text.data(), stdout);
            return exit_ok;
        }
    }
    const std::string command = args[0] + (args.size() > 1 ? " " + args[1] : "");
    if (command == "cert ca") {
        return cert_ca(args);
    }
    if (command == "cert node") {
        return cert_node(args);
    }
    if (command == "cert sae") {
        return cert_sae(args);
    }
    if (command == "config check") {
        return config_check(args);
    }
    throw usage_error("unknown command '" + command + "'");
}

} // namespace

int main(int argc, char **argv) {
    try {
        return run(std::vector<std::string>(argv + 1, argv + argc));
    } catch (const usage_error &e) {
        std::fprintf(stderr, "keyrail: %s\n(see keyrail --help)\n", e.what());
        return exit_usage;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keyrail: %s\n", e.what());
        return exit_failure;
    }
}
