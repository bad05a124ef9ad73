#pragma once
// A log-linear latency histogram in the manner of HdrHistogram: values below 2^precision_bits
// are counted exactly; above that, every power-of-two range [2^e, 2^(e+1)) is split into
// 2^(precision_bits - 1) equal sub-buckets, so a reported value is within 2^(1 - precision_bits)
// of the recorded one (0.1% at the default 11 bits). Values are unsigned integers (keyrail-bench
// records nanoseconds); values above value_max() land in the top bucket and are counted as
// clamped. Min, max, count and sum are exact. Recording is a shift, a count-leading-zeros and
// an increment: cheap enough for every request.
// Lives on: one load thread; merged into the report on the main thread after the threads join.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace keyrail::bench_client {

class histogram {
public:
    static constexpr unsigned precision_bits_default = 11;
    static constexpr unsigned highest_bit_default = 44; // 2^44 ns: about 4.9 hours

    // precision_bits in [4, 20]; highest_bit in [precision_bits, 63]: values up to
    // 2^highest_bit - 1 are kept within the relative error.
    explicit histogram(unsigned precision_bits = precision_bits_default,
                       unsigned highest_bit = highest_bit_default);

    void record(std::uint64_t value) noexcept { record_n(value, 1); }
    void record_n(std::uint64_t value, std::uint64_t count) noexcept;
    // Adds other's counts; both must have the same precision and range.
    void merge(const histogram& other);
    void reset() noexcept;

    [[nodiscard]] std::uint64_t count() const noexcept { return _total_count; }
    [[nodiscard]] std::uint64_t clamped_count() const noexcept { return _clamped_count; }
    [[nodiscard]] std::uint64_t min() const noexcept { return _total_count == 0 ? 0 : _min; }
    [[nodiscard]] std::uint64_t max() const noexcept { return _max; }
    [[nodiscard]] double mean() const noexcept;
    [[nodiscard]] std::uint64_t value_max() const noexcept { return _value_max; }

    // The smallest value v such that at least quantile * count() recorded values are <= v,
    // reported as the upper edge of its bucket and never above max(). quantile in [0, 1];
    // 0 gives min(), 1 gives max(). 0 when nothing was recorded.
    [[nodiscard]] std::uint64_t value_at_quantile(double quantile) const noexcept;

    // Bucket geometry, exposed for tests.
    [[nodiscard]] std::size_t bucket_index(std::uint64_t value) const noexcept;
    [[nodiscard]] std::uint64_t bucket_lowest(std::size_t index) const noexcept;
    [[nodiscard]] std::uint64_t bucket_highest(std::size_t index) const noexcept;
    [[nodiscard]] std::size_t bucket_count() const noexcept { return _counts.size(); }

private:
    unsigned _precision_bits;
    unsigned _highest_bit;
    std::uint64_t _linear_count; // 2^precision_bits values counted exactly
    std::uint64_t _half_count;   // sub-buckets per power of two above the linear range
    std::uint64_t _value_max;
    std::vector<std::uint64_t> _counts;
    std::uint64_t _total_count = 0;
    std::uint64_t _clamped_count = 0;
    std::uint64_t _min = 0;
    std::uint64_t _max = 0;
    long double _sum = 0;
};

} // namespace keyrail::bench_client
