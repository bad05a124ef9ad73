// keyrail-bench: an ETSI GS QKD 014 load generator. See tools/keyrail-bench/README.md.
#include <csignal>
#include <cstdio>
#include <exception>
#include <stdexcept>

#include <unistd.h>

#include "tools/keyrail-bench/load.h"
#include "tools/keyrail-bench/options.h"
#include "tools/keyrail-bench/report.h"

int main(int argc, char** argv) {
    using namespace keyrail::bench_client;
    std::signal(SIGPIPE, SIG_IGN);
    options opts;
    try {
        bool help = false;
        opts = parse_options(argc, argv, help);
        if (help) {
            std::fputs(usage_text(), stdout);
            return 0;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "keyrail-bench: %s\n", e.what());
        return 2;
    }
    try {
        const bool tty = opts.progress && ::isatty(STDOUT_FILENO) == 1;
        progress_sample before;
        double before_s = 0;
        progress_callback progress;
        if (tty) {
            progress = [&](double elapsed_s, const progress_sample& now) {
                print_progress(stdout, elapsed_s, now, before, elapsed_s - before_s);
                before = now;
                before_s = elapsed_s;
            };
        }
        const run_result r = run_load(opts, progress);
        if (tty && before_s > 0) {
            std::fputs("\n", stdout);
        }
        print_summary(stdout, opts, r);
        if (!opts.json_file.empty()) {
            write_json(opts.json_file, opts, r);
        }
        return r.stats.errors() == 0 && r.stats.requests > 0 && !r.stalled ? 0 : 1;
    } catch (const setup_error& e) {
        std::fprintf(stderr, "keyrail-bench: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "keyrail-bench: %s\n", e.what());
        return 2;
    }
}
