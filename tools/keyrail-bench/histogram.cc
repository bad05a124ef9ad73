#include "tools/keyrail-bench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>

#include "engine/assert.h"

namespace keyrail::bench_client {

histogram::histogram(unsigned precision_bits, unsigned highest_bit)
    : _precision_bits(precision_bits), _highest_bit(highest_bit) {
    if (precision_bits < 4 || precision_bits > 20) {
        throw std::invalid_argument("histogram: precision_bits must be in [4, 20]");
    }
    if (highest_bit < precision_bits || highest_bit > 63) {
        throw std::invalid_argument("histogram: highest_bit must be in [precision_bits, 63]");
    }
    _linear_count = std::uint64_t{1} << precision_bits;
    _half_count = _linear_count / 2;
    _value_max = (std::uint64_t{1} << highest_bit) - 1;
    // One term per region: the exact values, then one group of sub-buckets per exponent
    // from precision_bits to highest_bit - 1.
    const std::uint64_t buckets = _linear_count + (highest_bit - precision_bits) * _half_count;
    _counts.assign(static_cast<std::size_t>(buckets), 0);
}

std::size_t histogram::bucket_index(std::uint64_t value) const noexcept {
    value = std::min(value, _value_max);
    if (value < _linear_count) {
        return static_cast<std::size_t>(value);
    }
    const auto exponent = static_cast<unsigned>(std::bit_width(value) - 1); // >= precision_bits
    const unsigned shift = exponent - _precision_bits + 1;
    const std::uint64_t sub = (value >> shift) - _half_count; // in [0, _half_count)
    const std::uint64_t index =
        _linear_count + (exponent - _precision_bits) * _half_count + sub;
    KEYRAIL_DEBUG_ASSERT(index < _counts.size(), "index %llu of %zu",
                         static_cast<unsigned long long>(index), _counts.size());
    return static_cast<std::size_t>(index);
}

std::uint64_t histogram::bucket_lowest(std::size_t index) const noexcept {
    const std::uint64_t i = index;
    if (i < _linear_count) {
        return i;
    }
    const std::uint64_t group = (i - _linear_count) / _half_count;
    const std::uint64_t sub = (i - _linear_count) % _half_count;
    const std::uint64_t shift = group + 1;
    return (_half_count + sub) << shift;
}

std::uint64_t histogram::bucket_highest(std::size_t index) const noexcept {
    const std::uint64_t i = index;
    if (i < _linear_count) {
        return i;
    }
    const std::uint64_t group = (i - _linear_count) / _half_count;
    const std::uint64_t width = std::uint64_t{1} << (group + 1);
    return bucket_lowest(index) + width - 1;
}

void histogram::record_n(std::uint64_t value, std::uint64_t count) noexcept {
    if (count == 0) {
        return;
    }
    if (value > _value_max) {
        _clamped_count += count;
    }
    _counts[bucket_index(value)] += count;
    if (_total_count == 0 || value < _min) {
        _min = value;
    }
    _max = std::max(_max, value);
    _total_count += count;
    _sum += static_cast<long double>(value) * static_cast<long double>(count);
}

void histogram::merge(const histogram& other) {
    if (other._precision_bits != _precision_bits || other._highest_bit != _highest_bit) {
        throw std::invalid_argument("histogram: merge of different geometries");
    }
    if (other._total_count == 0) {
        return;
    }
    for (std::size_t i = 0; i < _counts.size(); ++i) {
        _counts[i] += other._counts[i];
    }
    _min = _total_count == 0 ? other._min : std::min(_min, other._min);
    _max = std::max(_max, other._max);
    _total_count += other._total_count;
    _clamped_count += other._clamped_count;
    _sum += other._sum;
}

void histogram::reset() noexcept {
    std::fill(_counts.begin(), _counts.end(), 0);
    _total_count = 0;
    _clamped_count = 0;
    _min = 0;
    _max = 0;
    _sum = 0;
}

double histogram::mean() const noexcept {
    if (_total_count == 0) {
        return 0;
    }
    return static_cast<double>(_sum / static_cast<long double>(_total_count));
}

std::uint64_t histogram::value_at_quantile(double quantile) const noexcept {
    if (_total_count == 0) {
        return 0;
    }
    if (!(quantile > 0)) {
        return _min;
    }
    if (quantile >= 1) {
        return _max;
    }
    // The rank of the wanted value, 1-based: at least quantile * count values at or below it.
    auto rank = static_cast<std::uint64_t>(std::ceil(quantile * static_cast<double>(_total_count)));
    rank = std::clamp<std::uint64_t>(rank, 1, _total_count);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < _counts.size(); ++i) {
        seen += _counts[i];
        if (seen >= rank) {
            return std::clamp(bucket_highest(i), _min, _max);
        }
    }
    return _max;
}

} // namespace keyrail::bench_client
