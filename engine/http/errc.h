#pragma once
// Errors of the HTTP response writer (the parser reports HTTP statuses, not error codes).
#include <system_error>

namespace keyrail::engine::http {

enum class errc : int {
    buffer_too_small = 1, // the response does not fit the caller's buffer
    invalid_field = 2,    // a header name or value would break the framing (CR, LF, ...)
};

[[nodiscard]] const std::error_category& http_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), http_category()};
}

} // namespace keyrail::engine::http

template <> struct std::is_error_code_enum<keyrail::engine::http::errc> : std::true_type {};
