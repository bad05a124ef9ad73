#include "tools/keyrail-bench/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

namespace keyrail::bench_client {
namespace {

TEST(bench_histogram, empty_reports_zeros) {
    histogram h;
    EXPECT_EQ(h.count(), 0u);
    EXPECT_EQ(h.min(), 0u);
    EXPECT_EQ(h.max(), 0u);
    EXPECT_EQ(h.value_at_quantile(0.5), 0u);
    EXPECT_EQ(h.mean(), 0.0);
}

TEST(bench_histogram, small_values_are_exact) {
    histogram h(8, 20);
    for (std::uint64_t v = 0; v < 256; ++v) {
        EXPECT_EQ(h.bucket_index(v), v);
        EXPECT_EQ(h.bucket_lowest(h.bucket_index(v)), v);
        EXPECT_EQ(h.bucket_highest(h.bucket_index(v)), v);
    }
    for (std::uint64_t v = 1; v <= 100; ++v) {
        h.record(v);
    }
    EXPECT_EQ(h.value_at_quantile(0.5), 50u);
    EXPECT_EQ(h.value_at_quantile(0.99), 99u);
    EXPECT_EQ(h.value_at_quantile(1.0), 100u);
    EXPECT_EQ(h.value_at_quantile(0.0), 1u);
    EXPECT_DOUBLE_EQ(h.mean(), 50.5);
}

TEST(bench_histogram, buckets_tile_the_range_without_gaps) {
    histogram h(6, 30);
    for (std::size_t i = 0; i + 1 < h.bucket_count(); ++i) {
        ASSERT_LE(h.bucket_lowest(i), h.bucket_highest(i)) << i;
        ASSERT_EQ(h.bucket_highest(i) + 1, h.bucket_lowest(i + 1)) << i;
    }
    EXPECT_EQ(h.bucket_highest(h.bucket_count() - 1), h.value_max());
}

TEST(bench_histogram, every_value_lands_in_its_bucket) {
    histogram h;
    std::mt19937_64 rng(7);
    for (int i = 0; i < 100000; ++i) {
        const std::uint64_t v = rng() >> (rng() % 64);
        const std::uint64_t clamped = std::min(v, h.value_max());
        const std::size_t b = h.bucket_index(v);
        ASSERT_LE(h.bucket_lowest(b), clamped) << v;
        ASSERT_GE(h.bucket_highest(b), clamped) << v;
    }
}

TEST(bench_histogram, relative_error_is_bounded) {
    histogram h; // 11 bits: within 2^-10
    for (std::uint64_t v : {2049ull, 1'000'000ull, 123'456'789ull, 7'000'000'000ull}) {
        const std::size_t b = h.bucket_index(v);
        const double width = static_cast<double>(h.bucket_highest(b) - h.bucket_lowest(b) + 1);
        EXPECT_LE(width / static_cast<double>(v), 1.0 / 1024) << v;
    }
}

TEST(bench_histogram, quantiles_match_a_sorted_reference) {
    histogram h;
    std::mt19937_64 rng(11);
    std::lognormal_distribution<double> dist(13.0, 1.0); // around 0.4 ms in ns, long tail
    std::vector<std::uint64_t> values;
    for (int i = 0; i < 50000; ++i) {
        const auto v = static_cast<std::uint64_t>(dist(rng));
        values.push_back(v);
        h.record(v);
    }
    std::sort(values.begin(), values.end());
    for (double q : {0.5, 0.9, 0.99, 0.999}) {
        const auto rank =
            static_cast<std::size_t>(std::ceil(q * static_cast<double>(values.size())));
        const std::uint64_t exact = values[rank - 1];
        const std::uint64_t got = h.value_at_quantile(q);
        EXPECT_GE(got, exact) << q;
        EXPECT_LE(static_cast<double>(got), static_cast<double>(exact) * (1 + 1.0 / 1024) + 1) << q;
    }
    EXPECT_EQ(h.max(), values.back());
    EXPECT_EQ(h.min(), values.front());
    EXPECT_EQ(h.value_at_quantile(1.0), values.back());
}

TEST(bench_histogram, merge_equals_recording_into_one) {
    histogram a;
    histogram b;
    histogram both;
    for (std::uint64_t v = 1; v < 100000; v += 37) {
        (v % 2 == 0 ? a : b).record(v * 1000);
        both.record(v * 1000);
    }
    a.merge(b);
    EXPECT_EQ(a.count(), both.count());
    EXPECT_EQ(a.min(), both.min());
    EXPECT_EQ(a.max(), both.max());
    EXPECT_DOUBLE_EQ(a.mean(), both.mean());
    for (double q : {0.1, 0.5, 0.99, 0.9999}) {
        EXPECT_EQ(a.value_at_quantile(q), both.value_at_quantile(q)) << q;
    }
    histogram other(8, 30);
    EXPECT_THROW(a.merge(other), std::invalid_argument);
}

TEST(bench_histogram, huge_values_are_clamped_and_counted) {
    histogram h(8, 20);
    h.record(1u << 25);
    h.record(5);
    EXPECT_EQ(h.clamped_count(), 1u);
    EXPECT_EQ(h.max(), 1u << 25); // the exact max survives
    EXPECT_EQ(h.value_at_quantile(0.5), 5u);
    EXPECT_EQ(h.count(), 2u);
}

TEST(bench_histogram, record_n_and_reset) {
    histogram h;
    h.record_n(1000, 99);
    h.record_n(1'000'000, 1);
    EXPECT_EQ(h.count(), 100u);
    EXPECT_EQ(h.value_at_quantile(0.99), 1000u);
    EXPECT_GE(h.value_at_quantile(0.999), 1'000'000u);
    h.reset();
    EXPECT_EQ(h.count(), 0u);
    EXPECT_EQ(h.value_at_quantile(0.5), 0u);
}

TEST(bench_histogram, rejects_bad_geometry) {
    EXPECT_THROW(histogram(3, 20), std::invalid_argument);
    EXPECT_THROW(histogram(11, 10), std::invalid_argument);
    EXPECT_THROW(histogram(11, 64), std::invalid_argument);
}

} // namespace
} // namespace keyrail::bench_client
