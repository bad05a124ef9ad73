#pragma once
// Shard hooks of a node: on drain, shard 0 makes the local source's store durable (every
// connection of every shard is closed by then, so nothing races the final commit).
// Lives on: one instance per shard.
#include "dataplane/node/local_source.h"
#include "engine/log.h"
#include "engine/protocol.h"

namespace keyrail::dataplane::node {

class node_hooks final : public engine::shard_hooks {
public:
    explicit node_hooks(local_source* source) noexcept : _source(source) {}

    void on_drain(engine::shard_context& shard) noexcept override {
        if (shard.shard_index() != 0 || _source == nullptr) {
            return;
        }
        if (auto done = _source->commit(); !done) {
            KEYRAIL_LOG(error, "node", "drain: store commit failed: %s",
                        done.error().message().c_str());
        }
    }

private:
    local_source* _source;
};

} // namespace keyrail::dataplane::node
