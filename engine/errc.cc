#include "engine/errc.h"

#include <string>

namespace keyrail::engine {
namespace {

class category final : public std::error_category {
public:
    const char* name() const noexcept override { return "keyrail.engine"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::ring_full:
            return "cross-shard ring is full";
        case errc::bad_shard:
            return "no such shard";
        case errc::topology:
            return "cannot read the machine topology";
        case errc::tls_config:
            return "cannot load TLS certificate, key or CA";
        case errc::bad_config:
            return "invalid server configuration";
        case errc::already_running:
            return "server is already running";
        }
        return "unknown engine error";
    }
};

} // namespace

const std::error_category& engine_category() noexcept {
    static const category instance;
    return instance;
}

} // namespace keyrail::engine
