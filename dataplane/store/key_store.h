#pragma once
// The node's key store: one directory holding the keyring (the data key wrapped by the master
// key) and one subdirectory per stream. Opened at startup; a missing or wrong master key fails
// the open, a stream whose files are unusable is reported by find() while the others serve.
// Lives on: created at startup; each stream then belongs to its home shard (stream.h).
#include "dataplane/store/seal.h"
#include "dataplane/store/stream.h"
#include "dataplane/store/types.h"
#include "engine/result.h"

#include <memory>
#include <system_error>
#include <vector>

namespace keyrail::dataplane {

class key_store {
public:
    ~key_store();
    key_store(const key_store&) = delete;
    key_store& operator=(const key_store&) = delete;

    [[nodiscard]] static result<std::unique_ptr<key_store>>
    open(const store_config& config) noexcept;

    // errc::unknown_stream, or the error that stopped the stream from opening.
    [[nodiscard]] result<stream*> find(stream_id id) noexcept;
    // New stream; ownership is fixed at creation (stored in its meta).
    [[nodiscard]] result<stream*> create_stream(stream_id id, ownership own) noexcept;
    [[nodiscard]] std::vector<stream_id> stream_ids() const noexcept;
    [[nodiscard]] const store_config& config() const noexcept { return _config; }

private:
    key_store() noexcept = default;
    struct entry {
        stream_id id;
        std::unique_ptr<stream> s;
        std::error_code error;
    };
    [[nodiscard]] std::string stream_dir(stream_id id) const noexcept;

    store_config _config;
    // flock(LOCK_EX) on <dir>/lock for the life of the store: two processes on one store would
    // hand out the same blocks and reuse GCM nonces.
    int _lock_fd = -1;
    secret_key _data_key;
    std::vector<entry> _streams;
};

} // namespace keyrail::dataplane
