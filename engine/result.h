#pragma once
// The one way expected failures travel: result<T> carries a value or a std::error_code.
// Each module owns an errc enum with its own category (see engine/errc.h, dataplane/errc.h).
#include <system_error>
#include <tl/expected.hpp>

namespace keyrail {

template <class T>
using result = tl::expected<T, std::error_code>;

using tl::unexpected;

// fail(e): the error side of a result, from any error-code enum or a std::error_code.
template <class E>
[[nodiscard]] inline tl::unexpected<std::error_code> fail(E e) noexcept {
    return tl::unexpected<std::error_code>(std::error_code(e));
}
[[nodiscard]] inline tl::unexpected<std::error_code> fail(std::error_code e) noexcept {
    return tl::unexpected<std::error_code>(e);
}

// errno_error(): the current errno as an error_code (for syscalls that are not io_uring).
[[nodiscard]] inline std::error_code errno_error(int err) noexcept {
    return std::error_code(err, std::system_category());
}

} // namespace keyrail
