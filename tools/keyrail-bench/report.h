#pragma once
// The results of a run: a human summary on stdout and, with --json FILE, a JSON document
// (format in tools/keyrail-bench/README.md). Runs on the main thread after the load threads end.
#include <cstdio>
#include <string>

#include "tools/keyrail-bench/load.h"
#include "tools/keyrail-bench/options.h"

namespace keyrail::bench_client {

void print_summary(std::FILE* out, const options& opts, const run_result& r);
[[nodiscard]] std::string results_json(const options& opts, const run_result& r);
// Throws std::runtime_error when the file cannot be written.
void write_json(const std::string& path, const options& opts, const run_result& r);
// One progress line, meant to overwrite the previous one ("\r", no newline).
void print_progress(std::FILE* out, double elapsed_s, const progress_sample& now,
                    const progress_sample& before, double interval_s);

} // namespace keyrail::bench_client
