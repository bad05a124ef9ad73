#include "dataplane/etsi014/errc.h"

#include <string>

namespace keyrail::dataplane::etsi014 {
namespace {

class category final : public std::error_category {
public:
    const char* name() const noexcept override { return "keyrail.etsi014"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::not_found:
            return "one or more keys specified are not found on KME";
        case errc::unauthorized:
            return "unauthorized";
        case errc::unknown_sae:
            return "unknown SAE ID";
        case errc::exhausted:
            return "insufficient key material";
        case errc::unavailable:
            return "service unavailable";
        case errc::size_unsupported:
            return "key size not supported";
        case errc::number_unsupported:
            return "number of keys not supported";
        case errc::too_many_slaves:
            return "too many additional slave SAE IDs";
        case errc::buffer_too_small:
            return "response does not fit the output buffer";
        case errc::reservations_full:
            return "reservation table full";
        case errc::pending:
            return "keys not arrived yet";
        case errc::link_unconfirmed:
            return "key link not confirmed";
        }
        return "unknown etsi014 error";
    }
};

// Written before the shards start, read-only afterwards (see errc.h).
reservation_limits configured_reservation_limits{};

} // namespace

void set_reservation_limits(const reservation_limits& limits) noexcept {
    configured_reservation_limits = limits;
}

reservation_limits current_reservation_limits() noexcept {
    return configured_reservation_limits;
}

const std::error_category& etsi014_category() noexcept {
    static const category instance;
    return instance;
}

} // namespace keyrail::dataplane::etsi014
