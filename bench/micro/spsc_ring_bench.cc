// Throughput of the cross-shard ring with a pinned producer and consumer (Google Benchmark).
#include "engine/spsc_ring.h"

#include <pthread.h>
#include <sched.h>

#include <cstdint>
#include <thread>

#include <benchmark/benchmark.h>

namespace {

void pin_to(unsigned cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % std::thread::hardware_concurrency(), &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

void bm_spsc_ring_transfer(benchmark::State& state) {
    static keyrail::engine::spsc_ring<std::uint64_t, 1024> ring;
    const auto batch = static_cast<std::uint64_t>(state.range(0));
    std::uint64_t checksum = 0;
    for (auto _ : state) {
        std::thread consumer([&] {
            pin_to(1);
            std::uint64_t value = 0;
            for (std::uint64_t i = 0; i < batch; ++i) {
                while (!ring.try_pop(value)) {
                }
                checksum += value;
            }
        });
        pin_to(0);
        for (std::uint64_t i = 0; i < batch; ++i) {
            while (!ring.try_push(i)) {
            }
        }
        consumer.join();
    }
    benchmark::DoNotOptimize(checksum);
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(batch));
}
BENCHMARK(bm_spsc_ring_transfer)->Arg(1 << 20)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
