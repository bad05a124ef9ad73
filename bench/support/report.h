#pragma once
// The benchmark report every suite writes: bench/results/<suite>.json as
// {"suite", "commit", "machine", "results": [{"name", "value", "unit",
//   "reference": {"name", "value", "unit"}, "ratio"}]}
// Each reference is measured in the same run on the same machine; ratio = value / reference.
// Commit and machine come from KEYRAIL_COMMIT and /proc/cpuinfo (tools/bench.sh sets it).
#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace keyrail::bench {

struct measurement {
    std::string name;
    double value;
    std::string unit;
};

struct result_row {
    measurement metric;
    measurement reference;
};

inline std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            auto colon = line.find(':');
            if (colon != std::string::npos) {
                auto start = line.find_first_not_of(' ', colon + 1);
                return start == std::string::npos ? std::string() : line.substr(start);
            }
        }
    }
    return "unknown cpu";
}

inline std::string json_escape(const std::string& s) {
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

class report {
public:
    explicit report(std::string suite) : _suite(std::move(suite)) {}

    void add(measurement metric, measurement reference) {
        std::printf("%-28s %14.1f %-10s reference %-24s %14.1f %-10s ratio %.3f\n",
                    metric.name.c_str(), metric.value, metric.unit.c_str(),
                    reference.name.c_str(), reference.value, reference.unit.c_str(),
                    reference.value != 0 ? metric.value / reference.value : 0.0);
        std::fflush(stdout);
        _rows.push_back({std::move(metric), std::move(reference)});
    }

    // Writes the JSON; returns false (and says why) when the file cannot be written.
    bool write(const std::string& path) const {
        const char* commit = std::getenv("KEYRAIL_COMMIT");
        std::string machine = cpu_model() + ", " +
                              std::to_string(std::thread::hardware_concurrency()) + " cpus";
        std::ofstream out(path);
        if (!out) {
            std::fprintf(stderr, "bench: cannot write %s\n", path.c_str());
            return false;
        }
        out << "{\n  \"suite\": \"" << json_escape(_suite) << "\",\n  \"commit\": \""
            << json_escape(commit != nullptr ? commit : "unknown") << "\",\n  \"machine\": \""
            << json_escape(machine) << "\",\n  \"results\": [";
        for (std::size_t i = 0; i < _rows.size(); ++i) {
            const auto& r = _rows[i];
            const double ratio = r.reference.value != 0 ? r.metric.value / r.reference.value : 0;
            char nums[160];
            out << (i == 0 ? "\n" : ",\n") << "    {\"name\": \"" << json_escape(r.metric.name)
                << "\", ";
            std::snprintf(nums, sizeof nums, "\"value\": %.6g, ", r.metric.value);
            out << nums << "\"unit\": \"" << json_escape(r.metric.unit)
                << "\", \"reference\": {\"name\": \"" << json_escape(r.reference.name) << "\", ";
            std::snprintf(nums, sizeof nums, "\"value\": %.6g, ", r.reference.value);
            out << nums << "\"unit\": \"" << json_escape(r.reference.unit) << "\"}, ";
            std::snprintf(nums, sizeof nums, "\"ratio\": %.6g}", ratio);
            out << nums;
        }
        out << "\n  ]\n}\n";
        return static_cast<bool>(out);
    }

private:
    std::string _suite;
    std::vector<result_row> _rows;
};

// Arguments every suite binary accepts: --out FILE (JSON path), --smoke (tiny inputs).
struct suite_args {
    std::string out;
    bool smoke = false;
};

inline suite_args parse_suite_args(int argc, char** argv) {
    suite_args args;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--out" && i + 1 < argc) {
            args.out = argv[++i];
        } else if (a == "--smoke") {
            args.smoke = true;
        }
    }
    return args;
}

// Pins the calling thread to the core it runs on now (so a measurement does not migrate);
// returns that core, or -1 when it is unknown (nothing pinned).
inline int pin_to_current_cpu() {
    const int cpu = sched_getcpu();
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        (void)sched_setaffinity(0, sizeof set, &set);
    }
    return cpu;
}

} // namespace keyrail::bench
