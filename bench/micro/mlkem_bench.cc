// Suite `mlkem`: keygen, encaps and decaps per second and TSC cycles per operation for each
// ML-KEM parameter set (native backend), with SHA3-256 throughput measured in the same run as
// the reference. Pinned to the CPU it starts on; each figure is the median of several batches.
// Writes bench/results/mlkem.json through bench/support/report.h. Target (issue): ML-KEM-768
// decaps under 100 us on one core.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <sched.h>
#include <x86intrin.h>

#include "bench/support/report.h"
#include "dataplane/crypto/hash.h"
#include "dataplane/crypto/mlkem.h"

namespace {

using namespace keyrail;
using clock_type = std::chrono::steady_clock;

struct timing {
    double ns_per_op;
    double cycles_per_op;
};

// Median over batches of the time per call of op().
template <class F>
timing measure(int batches, int per_batch, F&& op) {
    std::vector<double> ns;
    std::vector<double> cycles;
    for (int b = 0; b < batches; ++b) {
        const auto t0 = clock_type::now();
        const std::uint64_t c0 = __rdtsc();
        for (int i = 0; i < per_batch; ++i) {
            op();
        }
        const std::uint64_t c1 = __rdtsc();
        const auto t1 = clock_type::now();
        ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / per_batch);
        cycles.push_back(static_cast<double>(c1 - c0) / per_batch);
    }
    std::sort(ns.begin(), ns.end());
    std::sort(cycles.begin(), cycles.end());
    return {ns[ns.size() / 2], cycles[cycles.size() / 2]};
}

std::uint64_t checksum = 0;

template <class S>
void bench_set(bench::report& rep, const std::string& name, int batches, int per_batch,
               const bench::measurement& ref) {
    const auto b = crypto::mlkem_backend::native;
    auto kp = S::keygen(b);
    auto enc = S::encaps(kp->ek, b);
    const timing kg = measure(batches, per_batch, [&] {
        auto r = S::keygen(b);
        checksum += r->ek[7];
    });
    const timing en = measure(batches, per_batch, [&] {
        auto r = S::encaps(kp->ek, b);
        checksum += r->c[3];
    });
    const timing de = measure(batches, per_batch, [&] {
        auto r = S::decaps(kp->dk.bytes(), enc->c, b);
        checksum += r->data()[0];
    });
    const std::pair<const char*, timing> ops[] = {{"keygen", kg}, {"encaps", en}, {"decaps", de}};
    for (const auto& [op, t] : ops) {
        rep.add({name + "_" + op + "_per_s", 1e9 / t.ns_per_op, "ops/s"}, ref);
        rep.add({name + "_" + op + "_cycles", t.cycles_per_op, "cycles/op"}, ref);
        rep.add({name + "_" + op + "_us", t.ns_per_op / 1000.0, "us/op"}, ref);
    }
}

} // namespace

int main(int argc, char** argv) {
    const auto args = bench::parse_suite_args(argc, argv);
    const int cpu = bench::pin_to_current_cpu();
    const int batches = args.smoke ? 3 : 15;
    const int per_batch = args.smoke ? 2 : 200;
    std::printf("mlkem bench: cpu %d, %s, %d batches x %d ops, median\n", cpu,
                bench::cpu_model().c_str(), batches, per_batch);

    // Reference: SHA3-256 over 4 KiB blocks, the hash that dominates ML-KEM's cost.
    std::vector<std::uint8_t> block(4096, 0x5a);
    std::uint8_t digest[32];
    const timing sha = measure(batches, per_batch * 4, [&] {
        (void)crypto::detail::hash(crypto::detail::hash_kind::sha3_256, {block}, digest);
        checksum += digest[0];
    });
    const bench::measurement ref{"sha3_256_mb_per_s",
                                 static_cast<double>(block.size()) * 1e3 / sha.ns_per_op, "MB/s"};

    bench::report rep("mlkem");
    bench_set<crypto::detail::mlkem_set<2>>(rep, "mlkem512", batches, per_batch, ref);
    bench_set<crypto::detail::mlkem_set<3>>(rep, "mlkem768", batches, per_batch, ref);
    bench_set<crypto::detail::mlkem_set<4>>(rep, "mlkem1024", batches, per_batch, ref);
    rep.add({"sha3_256_cycles_per_byte", sha.cycles_per_op / static_cast<double>(block.size()),
             "cycles/B"},
            ref);
    std::printf("checksum %llu\n", static_cast<unsigned long long>(checksum));
    if (!args.out.empty() && !rep.write(args.out)) {
        return 1;
    }
    return 0;
}
