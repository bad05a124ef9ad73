#include "dataplane/store/key_store.h"

#include "dataplane/errc.h"
#include "engine/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace keyrail::dataplane {
namespace {

result<void> fsync_path(const std::string& path) noexcept {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return fail(errno_error(errno));
    }
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) {
        return fail(errno_error(err));
    }
    return {};
}

} // namespace

key_store::~key_store() {
    // Streams first: they commit and close their files while the lock is still held.
    _streams.clear();
    if (_lock_fd >= 0) {
        ::close(_lock_fd); // releases the flock
    }
}

std::string key_store::stream_dir(stream_id id) const noexcept {
    char name[32];
    std::snprintf(name, sizeof name, "/stream-%08" PRIx32, id.value);
    return _config.dir + name;
}

result<std::unique_ptr<key_store>> key_store::open(const store_config& config) noexcept {
    std::unique_ptr<key_store> store(new key_store());
    store->_config = config;
    // The master key comes first: without it nothing opens, not even an empty store.
    auto master = load_master_key(config.master_key);
    if (!master) {
        KEYRAIL_LOG(error, "store", "master key (%s %s): %s",
                    config.master_key.from == master_key_source::kind::env ? "env" : "file",
                    config.master_key.name.c_str(), master.error().message().c_str());
        return fail(master.error());
    }
    if (config.create == open_mode::create_if_missing) {
        if (::mkdir(config.dir.c_str(), 0700) != 0 && errno != EEXIST) {
            return fail(errno_error(errno));
        }
    }
    const std::string lock_path = config.dir + "/lock";
    store->_lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (store->_lock_fd < 0) {
        KEYRAIL_LOG(error, "store", "%s: %s", lock_path.c_str(), std::strerror(errno));
        return fail(errno_error(errno));
    }
    if (::flock(store->_lock_fd, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        if (err == EWOULDBLOCK) {
            KEYRAIL_LOG(error, "store", "%s: locked by another process using this store",
                        lock_path.c_str());
            return fail(errc::store_in_use);
        }
        KEYRAIL_LOG(error, "store", "%s: flock: %s", lock_path.c_str(), std::strerror(err));
        return fail(errno_error(err));
    }
    std::vector<stream_id> found;
    DIR* d = ::opendir(config.dir.c_str());
    if (d == nullptr) {
        KEYRAIL_LOG(error, "store", "%s: %s", config.dir.c_str(), std::strerror(errno));
        return fail(errno_error(errno));
    }
    while (dirent* e = ::readdir(d)) {
        std::uint32_t id = 0;
        char tail = 0;
        if (std::sscanf(e->d_name, "stream-%8" SCNx32 "%c", &id, &tail) == 1) {
            found.push_back(stream_id{id});
        }
    }
    ::closedir(d);

    const std::string keyring = config.dir + "/keyring";
    const int fd = ::open(keyring.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        std::byte bytes[keyring_file_bytes + 1];
        const ssize_t got = ::read(fd, bytes, sizeof bytes);
        ::close(fd);
        if (got < 0) {
            return fail(errno_error(errno));
        }
        auto data = unwrap_data_key(
            *master, std::span<const std::byte>(bytes, static_cast<std::size_t>(got)));
        if (!data) {
            KEYRAIL_LOG(error, "store", "%s offset 0: %s", keyring.c_str(),
                        data.error().message().c_str());
            return fail(data.error());
        }
        store->_data_key = std::move(*data);
    } else if (errno != ENOENT) {
        return fail(errno_error(errno));
    } else if (!found.empty() || config.create == open_mode::must_exist) {
        KEYRAIL_LOG(error, "store", "%s: keyring missing", keyring.c_str());
        return fail(errc::keyring_missing);
    } else {
        auto data = random_secret_key();
        if (!data) {
            return fail(data.error());
        }
        std::byte bytes[keyring_file_bytes];
        if (auto r = wrap_data_key(*master, *data, bytes); !r) {
            return fail(r.error());
        }
        const std::string tmp = keyring + ".tmp";
        const int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (out < 0) {
            return fail(errno_error(errno));
        }
        const bool ok = ::write(out, bytes, sizeof bytes) == static_cast<ssize_t>(sizeof bytes) &&
                        ::fsync(out) == 0;
        const int err = errno;
        ::close(out);
        if (!ok) {
            return fail(errno_error(err));
        }
        if (::rename(tmp.c_str(), keyring.c_str()) != 0) {
            return fail(errno_error(errno));
        }
        if (auto r = fsync_path(config.dir); !r) {
            return fail(r.error());
        }
        store->_data_key = std::move(*data);
    }

    store_config stream_config = config;
    stream_config.create = open_mode::must_exist;
    for (const stream_id id : found) {
        entry e{id, nullptr, {}};
        auto s =
            stream::open(stream_config, store->_data_key, id, ownership{}, store->stream_dir(id));
        if (s) {
            e.s = std::move(*s);
        } else if (s.error() == errc::unknown_stream) {
            // A directory without a meta: create_stream crashed before its rename. Leave it
            // for create_stream to finish; it holds no blocks.
            continue;
        } else {
            e.error = s.error();
            KEYRAIL_LOG(error, "store", "%s: stream not served: %s", store->stream_dir(id).c_str(),
                        s.error().message().c_str());
        }
        store->_streams.push_back(std::move(e));
    }
    return store;
}

result<stream*> key_store::find(stream_id id) noexcept {
    for (auto& e : _streams) {
        if (e.id == id) {
            if (!e.s) {
                return fail(e.error);
            }
            return e.s.get();
        }
    }
    return fail(errc::unknown_stream);
}

result<stream*> key_store::create_stream(stream_id id, ownership own) noexcept {
    for (auto& e : _streams) {
        if (e.id == id) {
            return fail(errc::stream_exists);
        }
    }
    store_config c = _config;
    c.create = open_mode::create_if_missing;
    auto s = stream::open(c, _data_key, id, own, stream_dir(id));
    if (!s) {
        return fail(s.error());
    }
    if (auto r = fsync_path(_config.dir); !r) {
        return fail(r.error());
    }
    stream* raw = s->get();
    _streams.push_back(entry{id, std::move(*s), {}});
    return raw;
}

std::vector<stream_id> key_store::stream_ids() const noexcept {
    std::vector<stream_id> ids;
    for (const auto& e : _streams) {
        ids.push_back(e.id);
    }
    return ids;
}

} // namespace keyrail::dataplane
