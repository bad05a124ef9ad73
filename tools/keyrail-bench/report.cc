#include "tools/keyrail-bench/report.h"

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace keyrail::bench_client {
namespace {

std::string escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
            out += buf;
        } else {
            out += c;
        }
    }
    return out;
}

std::string num(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            if (colon != std::string::npos) {
                const auto start = line.find_first_not_of(' ', colon + 1);
                return start == std::string::npos ? std::string() : line.substr(start);
            }
        }
    }
    return "unknown cpu";
}

double per_s(std::uint64_t n, double s) { return s > 0 ? static_cast<double>(n) / s : 0; }

double ms(std::uint64_t ns) { return static_cast<double>(ns) / 1e6; }

struct quantile {
    const char* name;
    double q;
};
constexpr quantile quantiles[] = {
    {"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}};

} // namespace

void print_summary(std::FILE* out, const options& opts, const run_result& r) {
    const load_stats& s = r.stats;
    std::fprintf(out, "keyrail-bench: %s", to_string(opts.kind));
    if (opts.kind != request_kind::status) {
        std::fprintf(out, " %s number=%u size=%u", opts.method == http_method::get ? "GET" : "POST",
                     opts.key_number, opts.key_size_bits);
    }
    std::fprintf(out, " at %s, ", opts.master.url.text().c_str());
    if (opts.rate_per_s > 0) {
        std::fprintf(out, "open loop %.0f req/s", opts.rate_per_s);
    } else {
        std::fprintf(out, "closed loop");
    }
    std::fprintf(out, ", %u connections x pipeline %u, %u threads\n", opts.connections_count,
                 opts.pipeline_depth, opts.threads_count);
    std::fprintf(out, "  elapsed    %.3f s\n", r.elapsed_s);
    std::fprintf(out, "  requests   %llu (%llu ok, %llu errors)  %.1f req/s\n",
                 static_cast<unsigned long long>(s.requests),
                 static_cast<unsigned long long>(s.successes),
                 static_cast<unsigned long long>(s.errors()), per_s(s.requests, r.elapsed_s));
    if (opts.kind != request_kind::status) {
        std::fprintf(out, "  keys       %llu  %.1f keys/s  %.3f key Mbit/s\n",
                     static_cast<unsigned long long>(s.keys), per_s(s.keys, r.elapsed_s),
                     per_s(s.key_bytes, r.elapsed_s) * 8 / 1e6);
    }
    std::fprintf(out, "  latency   ");
    for (const auto& q : quantiles) {
        std::fprintf(out, " %s %.3f ms", q.name, ms(s.latency_ns.value_at_quantile(q.q)));
    }
    std::fprintf(out, " max %.3f ms (mean %.3f ms, %llu samples%s)\n", ms(s.latency_ns.max()),
                 s.latency_ns.mean() / 1e6,
                 static_cast<unsigned long long>(s.latency_ns.count()),
                 opts.rate_per_s > 0 ? ", from the intended send time" : "");
    if (s.errors() != 0) {
        std::fprintf(out, "  errors    ");
        for (std::size_t code = 0; code < s.http_errors.size(); ++code) {
            if (s.http_errors[code] != 0) {
                std::fprintf(out, " http_%zu %llu", code,
                             static_cast<unsigned long long>(s.http_errors[code]));
            }
        }
        if (s.invalid_response != 0) {
            std::fprintf(out, " invalid_response %llu",
                         static_cast<unsigned long long>(s.invalid_response));
        }
        if (s.key_mismatch != 0) {
            std::fprintf(out, " key_mismatch %llu",
                         static_cast<unsigned long long>(s.key_mismatch));
        }
        if (s.transport != 0) {
            std::fprintf(out, " transport %llu", static_cast<unsigned long long>(s.transport));
        }
        if (s.timeouts != 0) {
            std::fprintf(out, " timeout %llu", static_cast<unsigned long long>(s.timeouts));
        }
        std::fprintf(out, "\n");
        for (const auto& [why, n] : s.invalid_reasons) {
            std::fprintf(out, "    invalid: %s (%llu)\n", why.c_str(),
                         static_cast<unsigned long long>(n));
        }
    }
    if (s.unsent != 0) {
        std::fprintf(out, "  unsent     %llu scheduled requests never sent (the server fell "
                          "behind the rate)\n",
                     static_cast<unsigned long long>(s.unsent));
    }
    for (const auto& [why, n] : s.connection_errors) {
        std::fprintf(out, "  connection error: %s (%llu)\n", why.c_str(),
                     static_cast<unsigned long long>(n));
    }
    if (r.stalled) {
        std::fprintf(out, "  stopped early: %s\n", r.stall_reason.c_str());
    }
}

std::string results_json(const options& opts, const run_result& r) {
    const load_stats& s = r.stats;
    const char* commit = std::getenv("KEYRAIL_COMMIT");
    std::string j = "{\n";
    j += "  \"tool\": \"keyrail-bench\",\n";
    j += "  \"commit\": \"" + escape(commit != nullptr ? commit : "unknown") + "\",\n";
    j += "  \"machine\": \"" + escape(cpu_model()) + ", " +
         std::to_string(std::thread::hardware_concurrency()) + " cpus\",\n";
    j += "  \"config\": {\"url\": \"" + escape(opts.master.url.text()) + "\"";
    if (opts.kind == request_kind::paired) {
        j += ", \"slave_url\": \"" + escape(opts.slave.url.text()) + "\"";
    }
    j += ", \"request\": \"" + std::string(to_string(opts.kind)) + "\"";
    j += ", \"method\": \"" + std::string(opts.method == http_method::get ? "GET" : "POST") + "\"";
    j += ", \"number\": " + std::to_string(opts.key_number);
    j += ", \"size\": " + std::to_string(opts.key_size_bits);
    j += ", \"mode\": \"" + std::string(opts.rate_per_s > 0 ? "open" : "closed") + "\"";
    j += ", \"rate\": " + num(opts.rate_per_s);
    j += ", \"connections\": " + std::to_string(opts.connections_count);
    j += ", \"pipeline\": " + std::to_string(opts.pipeline_depth);
    j += ", \"threads\": " + std::to_string(opts.threads_count);
    j += ", \"cpus\": [";
    for (std::size_t i = 0; i < opts.cpus.size(); ++i) {
        j += (i == 0 ? "" : ", ") + std::to_string(opts.cpus[i]);
    }
    j += "], \"duration_s\": " + num(opts.duration_s);
    j += ", \"requests_max\": " + std::to_string(opts.requests_max);
    j += ", \"timeout_s\": " + num(opts.timeout_s) + "},\n";
    j += "  \"elapsed_s\": " + num(r.elapsed_s) + ",\n";
    j += "  \"requests\": " + std::to_string(s.requests) + ",\n";
    j += "  \"successes\": " + std::to_string(s.successes) + ",\n";
    j += "  \"errors\": " + std::to_string(s.errors()) + ",\n";
    j += "  \"http_requests\": " + std::to_string(s.http_requests) + ",\n";
    j += "  \"requests_per_s\": " + num(per_s(s.requests, r.elapsed_s)) + ",\n";
    j += "  \"keys\": " + std::to_string(s.keys) + ",\n";
    j += "  \"keys_per_s\": " + num(per_s(s.keys, r.elapsed_s)) + ",\n";
    j += "  \"key_mbit_per_s\": " + num(per_s(s.key_bytes, r.elapsed_s) * 8 / 1e6) + ",\n";
    j += "  \"errors_by_kind\": {\"http\": {";
    bool first = true;
    for (std::size_t code = 0; code < s.http_errors.size(); ++code) {
        if (s.http_errors[code] != 0) {
            j += (first ? "\"" : ", \"") + std::to_string(code) +
                 "\": " + std::to_string(s.http_errors[code]);
            first = false;
        }
    }
    j += "}, \"invalid_response\": " + std::to_string(s.invalid_response);
    j += ", \"key_mismatch\": " + std::to_string(s.key_mismatch);
    j += ", \"transport\": " + std::to_string(s.transport);
    j += ", \"timeout\": " + std::to_string(s.timeouts) + "},\n";
    j += "  \"invalid_reasons\": {";
    first = true;
    for (const auto& [why, n] : s.invalid_reasons) {
        j += (first ? "\"" : ", \"") + escape(why) + "\": " + std::to_string(n);
        first = false;
    }
    j += "},\n";
    j += "  \"unsent\": " + std::to_string(s.unsent) + ",\n";
    j += "  \"connects\": " + std::to_string(s.connects) + ",\n";
    j += "  \"connection_errors\": {";
    first = true;
    for (const auto& [why, n] : s.connection_errors) {
        j += (first ? "\"" : ", \"") + escape(why) + "\": " + std::to_string(n);
        first = false;
    }
    j += "},\n";
    j += "  \"latency_ms\": {\"count\": " + std::to_string(s.latency_ns.count());
    j += ", \"min\": " + num(ms(s.latency_ns.min()));
    j += ", \"mean\": " + num(s.latency_ns.mean() / 1e6);
    for (const auto& q : quantiles) {
        j += ", \"" + std::string(q.name) + "\": " + num(ms(s.latency_ns.value_at_quantile(q.q)));
    }
    j += ", \"max\": " + num(ms(s.latency_ns.max()));
    j += ", \"origin\": \"" + std::string(opts.rate_per_s > 0 ? "intended" : "sent") + "\"},\n";
    j += "  \"stalled\": " + std::string(r.stalled ? "true" : "false") + ",\n";
    j += "  \"stall_reason\": \"" + escape(r.stall_reason) + "\"\n";
    j += "}\n";
    return j;
}

void write_json(const std::string& path, const options& opts, const run_result& r) {
    std::ofstream out(path);
    out << results_json(opts, r);
    if (!out) {
        throw std::runtime_error("cannot write " + path);
    }
}

void print_progress(std::FILE* out, double elapsed_s, const progress_sample& now,
                    const progress_sample& before, double interval_s) {
    std::fprintf(out, "\r%7.1f s  %12llu requests  %10.1f req/s  %10.1f keys/s  %llu errors   ",
                 elapsed_s, static_cast<unsigned long long>(now.requests),
                 per_s(now.requests - before.requests, interval_s),
                 per_s(now.keys - before.keys, interval_s),
                 static_cast<unsigned long long>(now.errors));
    std::fflush(out);
}

} // namespace keyrail::bench_client
