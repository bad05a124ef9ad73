#include "dataplane/node/local_key_service.h"

#include <time.h>

#include "engine/assert.h"

namespace keyrail::dataplane::node {

std::uint64_t monotonic_clock::now_ns() const noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

using etsi014::errc;

result<sae_id> local_key_service::local_sae(std::string_view id) const noexcept {
    const auto index = _cfg.find_sae(id);
    if (!index) {
        return fail(errc::unknown_sae);
    }
    if (_cfg.saes[*index].home != sae_home::local) {
        // Known, but on another node: relay does not exist yet.
        return fail(errc::unavailable);
    }
    return sae_id{static_cast<std::uint64_t>(*index) + 1};
}

result<etsi014::status_info> local_key_service::status(std::string_view master_sae_id,
                                                       std::string_view slave_sae_id) noexcept {
    auto master = local_sae(master_sae_id);
    if (!master) {
        // The caller comes from a verified certificate, so this is a configuration change at
        // most; refuse it like any other unknown caller.
        return fail(errc::unauthorized);
    }
    auto slave = local_sae(slave_sae_id);
    if (!slave) {
        return fail(slave.error());
    }
    if (_source == nullptr) {
        return fail(errc::unavailable);
    }
    const source_counts c = _source->counts(_clock.now_ns());
    auto per_key = blocks_for_key(_cfg.key_size_bits, c.block_bytes);
    KEYRAIL_ASSERT(per_key.has_value() && *per_key > 0, "key_size %u with %u-byte blocks",
                   _cfg.key_size_bits, c.block_bytes);
    etsi014::status_info s;
    s.source_kme_id = _cfg.kme_id;
    s.target_kme_id = _cfg.kme_id; // both SAEs are homed here
    s.master_sae_id = master_sae_id;
    s.slave_sae_id = slave_sae_id;
    s.key_size_bits = _cfg.key_size_bits;
    s.stored_key_count = c.available_blocks / *per_key;
    s.max_key_count = _cfg.max_key_count;
    s.max_key_per_request = _cfg.max_key_per_request;
    s.max_key_size_bits = _cfg.max_key_size_bits;
    s.min_key_size_bits = _cfg.min_key_size_bits;
    s.max_sae_id_count = _cfg.max_sae_id_count;
    s.key_rate_per_s = _cfg.key_rate_bits_per_s / _cfg.key_size_bits;
    return s;
}

result<void> local_key_service::enc_keys(const etsi014::enc_request& req,
                                         std::span<etsi014::key_id> ids_out,
                                         std::span<std::byte> key_bytes_out) noexcept {
    auto master = local_sae(req.master_sae_id);
    if (!master) {
        return fail(errc::unauthorized);
    }
    std::array<sae_id, slaves_max> slaves{};
    std::size_t slave_count = 0;
    auto first = local_sae(req.slave_sae_id);
    if (!first) {
        return fail(first.error());
    }
    slaves[slave_count++] = *first;
    if (req.additional_slave_sae_ids.size() > _cfg.max_sae_id_count ||
        req.additional_slave_sae_ids.size() + 1 > slaves_max) {
        return fail(errc::too_many_slaves);
    }
    for (std::string_view extra : req.additional_slave_sae_ids) {
        auto s = local_sae(extra);
        if (!s) {
            return fail(s.error());
        }
        slaves[slave_count++] = *s;
    }
    if (req.size_bits < _cfg.min_key_size_bits || req.size_bits > _cfg.max_key_size_bits ||
        req.size_bits % 8 != 0) {
        return fail(errc::size_unsupported);
    }
    if (req.number == 0 || req.number > _cfg.max_key_per_request) {
        return fail(errc::number_unsupported);
    }
    if (_source == nullptr) {
        return fail(errc::unavailable);
    }
    const reserve_args args{req.size_bits, req.number, *master,
                            std::span<const sae_id>(slaves.data(), slave_count)};
    return _source->reserve(_clock.now_ns(), args, ids_out, key_bytes_out);
}

result<void> local_key_service::dec_keys(const etsi014::dec_request& req,
                                         std::span<std::byte> key_bytes_out,
                                         std::span<std::uint32_t> key_bytes_each_out) noexcept {
    auto caller = local_sae(req.slave_sae_id);
    if (!caller) {
        return fail(errc::unauthorized);
    }
    const auto master_index = _cfg.find_sae(req.master_sae_id);
    if (!master_index) {
        return fail(errc::unknown_sae);
    }
    if (_source == nullptr) {
        return fail(errc::unavailable);
    }
    const sae_id master{static_cast<std::uint64_t>(*master_index) + 1};
    return _source->deliver(_clock.now_ns(), master, *caller, req.ids, key_bytes_out,
                            key_bytes_each_out);
}

} // namespace keyrail::dataplane::node
