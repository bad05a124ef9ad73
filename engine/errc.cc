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
        case errc::timer_table_full:
            return "the shard's timer table is full";
        case errc::no_such_connection:
            return "no such connection (closed or stale handle)";
        case errc::output_full:
            return "the connection's output buffer is full";
        case errc::not_connected:
            return "outbound connection not established";
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
