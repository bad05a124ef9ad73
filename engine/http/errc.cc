#include "engine/http/errc.h"

#include <string>

namespace keyrail::engine::http {
namespace {

class category final : public std::error_category {
public:
    const char* name() const noexcept override { return "keyrail.http"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::buffer_too_small:
            return "response does not fit the output buffer";
        case errc::invalid_field:
            return "header field would break HTTP framing";
        }
        return "unknown http error";
    }
};

} // namespace

const std::error_category& http_category() noexcept {
    static const category instance;
    return instance;
}

} // namespace keyrail::engine::http
