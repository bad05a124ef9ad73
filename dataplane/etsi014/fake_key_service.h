#pragma once
// An in-memory key_service for tests and fuzz targets only (it allocates freely). Knows a set
// of SAE pairs, holds a counter of available keys, and remembers every reserved key until its
// slave fetches it. Lives on: the test's thread.
#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <openssl/rand.h>

#include "dataplane/etsi014/key_service.h"

namespace keyrail::dataplane::etsi014::testing {

class fake_key_service final : public key_service {
public:
    struct record {
        std::string master;
        std::vector<std::string> slaves; // the slave and every additional slave
        std::vector<std::byte> bytes;
        std::set<std::string> delivered_to;
    };

    // Pairs allowed to talk (master -> slave); both directions are added.
    void allow(const std::string& a, const std::string& b) {
        _pairs.insert({a, b});
        _pairs.insert({b, a});
        _known.insert(a);
        _known.insert(b);
    }
    void add_known(const std::string& sae) { _known.insert(sae); }

    status_info info{
        "kme-a", "kme-b", {}, {}, 256, 1000, 100000, 128, 8192, 64, 2, 1000,
    };
    std::uint64_t available = 1000;
    std::error_code force_error{}; // returned by every call when set
    std::map<std::array<std::uint8_t, 16>, record> records;

    result<status_info> status(std::string_view master, std::string_view slave) noexcept override {
        if (force_error) {
            return fail(force_error);
        }
        if (auto e = check_pair(master, slave)) {
            return fail(e);
        }
        status_info s = info;
        s.master_sae_id = master;
        s.slave_sae_id = slave;
        s.stored_key_count = available;
        return s;
    }

    result<void> enc_keys(const enc_request& req, std::span<key_id> ids_out,
                          std::span<std::byte> key_bytes_out) noexcept override {
        if (force_error) {
            return fail(force_error);
        }
        if (auto e = check_pair(req.master_sae_id, req.slave_sae_id)) {
            return fail(e);
        }
        for (auto s : req.additional_slave_sae_ids) {
            if (auto e = check_pair(req.master_sae_id, s)) {
                return fail(e);
            }
        }
        if (req.number > available) {
            return fail(errc::exhausted);
        }
        const std::size_t each = req.size_bits / 8;
        if (ids_out.size() != req.number || key_bytes_out.size() != req.number * each) {
            std::abort(); // the handler sized these; a mismatch is a bug
        }
        available -= req.number;
        for (std::size_t i = 0; i < req.number; ++i) {
            auto id = generate_uuid_v4();
            if (!id) {
                return fail(id.error());
            }
            ids_out[i] = *id;
            auto dst = key_bytes_out.subspan(i * each, each);
            if (RAND_bytes(reinterpret_cast<unsigned char*>(dst.data()),
                           static_cast<int>(dst.size())) != 1) {
                return fail(errc::unavailable);
            }
            record r;
            r.master = std::string(req.master_sae_id);
            r.slaves.emplace_back(req.slave_sae_id);
            for (auto s : req.additional_slave_sae_ids) {
                r.slaves.emplace_back(s);
            }
            r.bytes.assign(dst.begin(), dst.end());
            records[id->bytes] = std::move(r);
        }
        return {};
    }

    result<void> dec_keys(const dec_request& req, std::span<std::byte> key_bytes_out,
                          std::span<std::uint32_t> key_bytes_each_out) noexcept override {
        if (force_error) {
            return fail(force_error);
        }
        std::size_t total = 0;
        for (const auto& id : req.ids) {
            auto it = records.find(id.bytes);
            if (it == records.end() || it->second.master != req.master_sae_id ||
                it->second.delivered_to.count(std::string(req.slave_sae_id)) != 0) {
                return fail(errc::not_found);
            }
            const auto& slaves = it->second.slaves;
            if (std::find(slaves.begin(), slaves.end(), req.slave_sae_id) == slaves.end()) {
                return fail(errc::unauthorized);
            }
            total += it->second.bytes.size();
        }
        if (total > key_bytes_out.size()) {
            return fail(errc::buffer_too_small);
        }
        std::size_t offset = 0;
        for (std::size_t i = 0; i < req.ids.size(); ++i) {
            auto it = records.find(req.ids[i].bytes);
            auto& r = it->second;
            std::memcpy(key_bytes_out.data() + offset, r.bytes.data(), r.bytes.size());
            key_bytes_each_out[i] = static_cast<std::uint32_t>(r.bytes.size());
            offset += r.bytes.size();
            r.delivered_to.insert(std::string(req.slave_sae_id));
            if (r.delivered_to.size() == r.slaves.size()) {
                records.erase(it); // every slave has it: it leaves the pool
            }
        }
        return {};
    }

private:
    std::error_code check_pair(std::string_view master, std::string_view slave) const {
        if (_known.count(std::string(master)) == 0 || _known.count(std::string(slave)) == 0) {
            return make_error_code(errc::unknown_sae);
        }
        if (_pairs.count({std::string(master), std::string(slave)}) == 0) {
            return make_error_code(errc::unauthorized);
        }
        return {};
    }

    std::set<std::string> _known;
    std::set<std::pair<std::string, std::string>> _pairs;
};

} // namespace keyrail::dataplane::etsi014::testing
