#pragma once
// Errors of the ETSI 014 shim and of the key_service it calls. Each maps to one HTTP answer
// (see handler.cc: to_http).
#include <cstdint>
#include <system_error>

namespace keyrail::dataplane::etsi014 {

enum class errc : int {
    not_found = 1,      // 400 "one or more keys specified are not found on KME"
    unauthorized,       // 401, no body: the caller may not use this SAE pair or these keys
    unknown_sae,        // 400: the named SAE is not registered anywhere we know
    exhausted,          // 503: not enough key material now (message gives counts and rate)
    unavailable,        // 503: no route, peer down, store busy
    size_unsupported,   // 400: the service cannot produce keys of this size
    number_unsupported, // 400: more keys than the service allows per request
    too_many_slaves,    // 400: more additional_slave_SAE_IDs than max_SAE_ID_count
    buffer_too_small,   // the response does not fit the output buffer (a sizing bug)
    reservations_full,  // 503: every reservation slot holds a key no slave fetched yet
    pending,            // not here yet (the peer's Reserve, or the answer of another shard,
                        // is on its way): ask again
    link_unconfirmed,   // 503: the key link to the slave's KME never passed key confirmation
};

[[nodiscard]] const std::error_category& etsi014_category() noexcept;

// What the 503 for errc::reservations_full quotes: how many keys a stream can hold reserved
// and after how long an unfetched one expires. 0 means unknown (the message then omits it).
struct reservation_limits {
    std::uint64_t reservations_max = 0;
    std::uint64_t key_expiry_s = 0;
};

// The message hook: keyraild sets the limits once at start-up, before any shard thread
// starts (thread creation orders the write before every read); the handler only reads them.
void set_reservation_limits(const reservation_limits& limits) noexcept;
[[nodiscard]] reservation_limits current_reservation_limits() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), etsi014_category()};
}

} // namespace keyrail::dataplane::etsi014

template <> struct std::is_error_code_enum<keyrail::dataplane::etsi014::errc> : std::true_type {};
