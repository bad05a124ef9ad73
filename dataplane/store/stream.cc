#include "dataplane/store/stream.h"

#include "dataplane/errc.h"
#include "dataplane/store/format.h"
#include "engine/assert.h"
#include "engine/log.h"
#include "engine/secure.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstring>
#include <system_error>
#include <thread>

namespace keyrail::dataplane {

namespace detail {

struct segment {
    std::uint64_t number = ~std::uint64_t{0};
    int fd = -1;
    const std::byte* map = nullptr;
    std::size_t map_bytes = 0;
};

struct cache_slot {
    std::uint64_t chunk = ~std::uint64_t{0};
    std::byte* plain = nullptr; // chunk_payload_bytes, wiped when the slot is dropped
    std::uint64_t tick = 0;
    std::uint32_t block_count = 0;
    bool used = false;
    bool dirty = false;  // plaintext differs from the last staged page
    bool pinned = false; // the tail chunk still being appended to
};

struct run {
    seq_t first = 0;
    std::uint32_t count = 0;
};

struct reservation {
    key_id id{};
    sae_id master{};
    std::array<sae_id, slaves_max> slaves{};
    std::array<run, key_runs_max> runs{};
    std::uint32_t key_bits = 0;
    std::uint32_t block_count = 0;
    std::uint8_t slave_count = 0;
    std::uint8_t run_count = 0;
    std::uint8_t delivered_mask = 0;
    bool used = false;
};

} // namespace detail

namespace {

using detail::cache_slot;
using detail::reservation;
using detail::run;
using detail::segment;

constexpr std::size_t stage_pages = 64;
constexpr std::uint64_t nonce_headroom = std::uint64_t{1} << 24;
// Single records (meta version 1; still replayed) and batch records (version 2; written).
constexpr std::uint32_t journal_reserve = 1;
constexpr std::uint32_t journal_deliver = 2;
constexpr std::uint32_t journal_expire = 3;
constexpr std::uint32_t journal_reserve_batch = 4; // common: master, bits, slaves; entry: key
constexpr std::uint32_t journal_deliver_batch = 5; // entry: key ID, slave index
constexpr std::uint32_t journal_expire_batch = 6;  // entry: key ID
constexpr std::uint32_t journal_consumed = 7;      // first seq, count, then a bit a block
constexpr std::size_t journal_header_bytes = 8;
constexpr std::size_t journal_body_max = 16 + 8 + 4 + 4 + 8 * slaves_max + 12 * key_runs_max;
constexpr std::size_t journal_reserve_common_max = 16 + 8 * slaves_max;
constexpr std::size_t journal_reserve_entry_max = 16 + 1 + 12 * key_runs_max;
// A batch record closes before its body would pass this.
constexpr std::size_t journal_batch_body_max = 16 * 1024;

constexpr bool consumed(block_state s) noexcept {
    return s == block_state::delivered || s == block_state::expired || s == block_state::lost;
}

result<void> write_all(int fd, const void* data, std::size_t size, std::uint64_t offset) noexcept {
    const auto* p = static_cast<const std::byte*>(data);
    while (size > 0) {
        const ssize_t n = ::pwrite(fd, p, size, static_cast<off_t>(offset));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail(errno_error(errno));
        }
        p += n;
        size -= static_cast<std::size_t>(n);
        offset += static_cast<std::uint64_t>(n);
    }
    return {};
}

result<std::size_t> read_all(int fd, void* data, std::size_t size, std::uint64_t offset) noexcept {
    auto* p = static_cast<std::byte*>(data);
    std::size_t done = 0;
    while (done < size) {
        const ssize_t n = ::pread(fd, p + done, size - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail(errno_error(errno));
        }
        if (n == 0) {
            break;
        }
        done += static_cast<std::size_t>(n);
    }
    return done;
}

bool all_zero(const std::byte* p, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
        if (p[i] != std::byte{0}) {
            return false;
        }
    }
    return true;
}

// Groups seqs into runs of consecutive owned-stride steps; false when more than fit.
bool compress_runs(std::span<const seq_t> seqs, std::uint32_t stride,
                   std::array<run, key_runs_max>& runs, std::uint8_t& run_count) noexcept {
    run_count = 0;
    for (std::size_t i = 0; i < seqs.size(); ++i) {
        if (run_count > 0) {
            run& last = runs[run_count - 1];
            if (seqs[i] == last.first + std::uint64_t{last.count} * stride) {
                ++last.count;
                continue;
            }
        }
        if (run_count == key_runs_max) {
            return false;
        }
        runs[run_count++] = run{seqs[i], 1};
    }
    return true;
}

std::uint64_t key_hash(const key_id& id) noexcept {
    std::uint64_t h = 0;
    std::memcpy(&h, id.bytes.data() + 8, sizeof h); // the random half (bytes 8..15)
    return h * 0x9e3779b97f4a7c15ull;
}

// The index's hash: the high half of the product, which every input bit reaches (the low
// half depends only on the low input bytes, and byte 8 carries the fixed UUID variant bits).
std::uint32_t index_hash(const key_id& id) noexcept {
    return static_cast<std::uint32_t>(key_hash(id) >> 32);
}

} // namespace

result<std::uint32_t> blocks_for_key(std::uint32_t key_bits, std::uint32_t block_bytes) noexcept {
    if (key_bits < key_bits_min || key_bits > key_bits_max || key_bits % 8 != 0) {
        return fail(errc::key_size_invalid);
    }
    KEYRAIL_ASSERT(block_bytes > 0, "block_bytes %u", block_bytes);
    return (key_bits / 8 + block_bytes - 1) / block_bytes;
}

stream::stream() noexcept = default;

stream::~stream() {
    for (auto& slot : _cache) {
        if (slot.plain != nullptr) {
            secure_wipe(slot.plain, chunk_payload_bytes);
        }
    }
    if (_stage) {
        secure_wipe(_stage.get(), stage_pages * page_bytes);
    }
    for (auto& seg : _segments) {
        if (seg.map != nullptr) {
            ::munmap(const_cast<std::byte*>(seg.map), seg.map_bytes);
        }
        if (seg.fd >= 0) {
            ::close(seg.fd);
        }
    }
    for (int fd : {_meta_fd, _journal_fd, _dir_fd, _compact_fd}) { // an unfinished generation
        // stays unnamed by any meta: open removes it
        if (fd >= 0) {
            ::close(fd);
        }
    }
}

std::string stream::segment_path(std::uint64_t number) const noexcept {
    char name[40];
    std::snprintf(name, sizeof name, "/seg-%016" PRIx64, number);
    return _dir + name;
}

result<std::unique_ptr<stream>> stream::open(const store_config& config, const secret_key& data_key,
                                             stream_id id, ownership own,
                                             std::string dir) noexcept {
    if (config.block_bytes < 8 || config.block_bytes > 1024 || config.block_bytes % 8 != 0 ||
        config.segment_chunks == 0 || own.stride == 0 || own.offset >= own.stride ||
        config.reservations_max == 0 || config.reservations_max > (1u << 31) ||
        config.chunk_cache < 4) {
        return fail(errc::invalid_argument);
    }
    std::unique_ptr<stream> s(new stream());
    s->_id = id;
    s->_own = own;
    s->_mode = config.mode;
    s->_dir = std::move(dir);
    s->_block_bytes = config.block_bytes;
    s->_segment_chunks = config.segment_chunks;
    s->_lease_headroom = config.lease_headroom;
    s->_compact_bytes = config.journal_compact_bytes;
    s->_compact_step = std::max<std::uint64_t>(config.journal_compact_step_bytes, 64);
    if (auto r = s->_cipher.init(data_key); !r) {
        return fail(r.error());
    }
    const std::string meta_path = s->_dir + "/meta";
    struct stat st {};
    const bool exists = ::stat(meta_path.c_str(), &st) == 0;
    if (!exists && config.create == open_mode::must_exist) {
        return fail(errc::unknown_stream);
    }
    // Sizes: the meta's values win for an existing stream (see recover()).
    s->_blocks_per_chunk = static_cast<std::uint32_t>(chunk_payload_bytes / s->_block_bytes);
    s->_blocks_per_segment = std::uint64_t{s->_blocks_per_chunk} * s->_segment_chunks;
    const std::uint64_t segments = std::max<std::uint64_t>(
        2, (config.capacity_blocks + s->_blocks_per_segment - 1) / s->_blocks_per_segment);
    s->_capacity = segments * s->_blocks_per_segment;

    // Allocate at start: every later operation works inside these.
    s->_cache.resize(config.chunk_cache);
    s->_cache_bytes = std::make_unique<std::byte[]>(config.chunk_cache * chunk_payload_bytes);
    for (std::size_t i = 0; i < s->_cache.size(); ++i) {
        s->_cache[i].plain = s->_cache_bytes.get() + i * chunk_payload_bytes;
    }
    s->_stage = std::make_unique<std::byte[]>(stage_pages * page_bytes);
    s->_stage_chunks.reserve(stage_pages);
    s->_journal_pending.reserve(std::size_t{1} << 20);
    s->_slots.resize(config.reservations_max);
    s->_free_slots.reserve(config.reservations_max);
    for (std::uint32_t i = config.reservations_max; i > 0; --i) {
        s->_free_slots.push_back(i - 1);
    }
    s->_index.assign(std::bit_ceil(std::size_t{config.reservations_max} * 2), 0);
    s->_scratch.resize(key_bits_max / 8 / 8 + 1);

    if (!exists) {
        if (::mkdir(s->_dir.c_str(), 0700) != 0 && errno != EEXIST) {
            return fail(errno_error(errno));
        }
    }
    s->_dir_fd = ::open(s->_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->_dir_fd < 0) {
        return fail(errno_error(errno));
    }
    if (!exists) {
        if (auto r = s->create_files(); !r) {
            return fail(r.error());
        }
    }
    if (auto r = s->recover(); !r) {
        return fail(r.error());
    }
    return s;
}

result<void> stream::create_files() noexcept {
    // Creation writes an empty journal and then the meta, before any segment. A directory
    // without a meta that holds segments or journal records therefore lost its meta; a new
    // stream over it would reuse GCM nonces under the same data key and bring consumed blocks
    // back. Refuse and leave the files for an operator.
    if (DIR* d = ::opendir(_dir.c_str())) {
        bool used = false;
        while (dirent* e = ::readdir(d)) {
            used = used || std::strncmp(e->d_name, "seg-", 4) == 0 ||
                   std::strncmp(e->d_name, "journal-", 8) == 0;
        }
        ::closedir(d);
        struct stat journal {};
        used = used || (::stat((_dir + "/journal").c_str(), &journal) == 0 && journal.st_size > 0);
        if (used) {
            KEYRAIL_LOG(error, "store",
                        "%s: holds segments or journal records but no meta; refusing to create "
                        "a new stream over them",
                        _dir.c_str());
            return fail(errc::meta_corrupt);
        }
    }
    _journal_fd = ::open((_dir + "/journal").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (_journal_fd < 0) {
        return fail(errno_error(errno));
    }
    ::close(_journal_fd);
    _journal_fd = -1;
    // The meta is written to a temporary name and renamed, so a crash leaves no half stream.
    const std::string tmp = _dir + "/meta.tmp";
    const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return fail(errno_error(errno));
    }
    meta_record m{};
    m.magic = meta_magic;
    m.version = meta_version;
    m.block_bytes = _block_bytes;
    m.stream = _id.value;
    m.stride = _own.stride;
    m.offset = _own.offset;
    m.segment_chunks = _segment_chunks;
    m.txn = 1;
    m.capacity = _capacity;
    m.checksum = checksum64(&m, offsetof(meta_record, checksum));
    std::byte page[2 * page_bytes] = {};
    std::memcpy(page + page_bytes, &m, sizeof m); // txn 1 lives in slot 1
    auto written = write_all(fd, page, sizeof page, 0);
    if (written && ::fsync(fd) != 0) {
        written = fail(errno_error(errno));
    }
    ::close(fd);
    if (!written) {
        return written;
    }
    if (::rename(tmp.c_str(), (_dir + "/meta").c_str()) != 0) {
        return fail(errno_error(errno));
    }
    if (::fsync(_dir_fd) != 0) {
        return fail(errno_error(errno));
    }
    return {};
}

result<void> stream::recover() noexcept {
    const std::string meta_path = _dir + "/meta";
    _meta_fd = ::open(meta_path.c_str(), O_RDWR | O_CLOEXEC);
    if (_meta_fd < 0) {
        return fail(errno_error(errno));
    }
    meta_record best{};
    bool found = false;
    for (std::uint64_t slot = 0; slot < 2; ++slot) {
        meta_record m{};
        auto got = read_all(_meta_fd, &m, sizeof m, slot * page_bytes);
        if (!got) {
            return fail(got.error());
        }
        if (*got == sizeof m && m.magic == 0 && m.checksum == 0 && m.journal_gen == 0) {
            continue; // never written (a new stream has only slot 1)
        }
        bool verifies = false;
        if (*got == sizeof m && m.magic == meta_magic && m.version == 1) {
            // Version 1: the checksum sits where journal_gen is now, and covers less.
            std::uint64_t sum = 0;
            std::memcpy(&sum, reinterpret_cast<const std::byte*>(&m) + meta_v1_checked_bytes, 8);
            verifies = sum == checksum64(&m, meta_v1_checked_bytes);
            m.journal_gen = 0;
        } else if (*got == sizeof m && m.magic == meta_magic && m.version >= meta_version_min &&
                   m.version <= meta_version) {
            verifies = m.checksum == checksum64(&m, offsetof(meta_record, checksum));
        }
        if (!verifies) {
            KEYRAIL_LOG(warn, "store", "%s offset %" PRIu64 ": meta slot invalid",
                        meta_path.c_str(), slot * page_bytes);
            continue;
        }
        if (!found || m.txn > best.txn) {
            best = m;
            found = true;
        }
    }
    if (!found) {
        KEYRAIL_LOG(error, "store", "%s offset 0: no meta slot verifies", meta_path.c_str());
        return fail(errc::meta_corrupt);
    }
    if (best.block_bytes != _block_bytes || best.stream != _id.value) {
        KEYRAIL_LOG(error, "store",
                    "%s offset %" PRIu64 ": block size %u or stream %u on disk"
                    " differs from configuration",
                    meta_path.c_str(), (best.txn % 2) * page_bytes, best.block_bytes, best.stream);
        return fail(errc::config_mismatch);
    }
    if (best.stride == 0 || best.offset >= best.stride || best.segment_chunks == 0 ||
        best.capacity == 0) {
        return fail(errc::meta_corrupt);
    }
    // The on-disk geometry wins over the configuration for an existing stream.
    _own = ownership{best.stride, best.offset};
    _segment_chunks = best.segment_chunks;
    _blocks_per_segment = std::uint64_t{_blocks_per_chunk} * _segment_chunks;
    if (best.capacity % _blocks_per_segment != 0 || best.base % _blocks_per_segment != 0) {
        return fail(errc::meta_corrupt);
    }
    _capacity = best.capacity;
    _meta_txn = best.txn;
    _lease_high = best.lease_high;
    _nonce_high = best.nonce_high;
    _nonce_next = best.nonce_high; // nonces below were possibly used; never reuse them
    _base = _base_durable = best.base;
    _state.assign(_capacity, block_state::absent);
    _segments.assign(_capacity / _blocks_per_segment, segment{});
    _segment_consumed.assign(_segments.size(), 0);

    _journal_gen = best.journal_gen;
    _next_gen = _journal_gen + 1;
    // Generation 0 may be missing in an old store (nothing journalled yet); a compacted one
    // named by the meta must be there, or its reservations are gone: refuse, never start empty.
    _journal_fd = ::open(journal_path(_journal_gen).c_str(),
                         O_RDWR | O_CLOEXEC | (_journal_gen == 0 ? O_CREAT : 0), 0600);
    if (_journal_fd < 0) {
        KEYRAIL_LOG(error, "store", "%s: %s", journal_path(_journal_gen).c_str(),
                    std::strerror(errno));
        return fail(errc::journal_corrupt);
    }
    if (auto r = replay_journal(best.journal_bytes); !r) {
        return r;
    }
    // The meta slot picked must be durable before the generations it replaced go (power mode:
    // after a kill -9 it may still be in the page cache only, and a power loss would bring back
    // the slot naming a removed generation).
    if (sync(_meta_fd)) {
        remove_other_journals();
    }
    _ingested = std::max(best.ingested, _base);
    scan_segments();
    // Whatever lies below the ingest mark without a verified chunk is lost.
    for (seq_t seq = _base; seq < _ingested; ++seq) {
        if (state_ref(seq) == block_state::absent) {
            set_state(seq, block_state::lost);
        }
    }
    _ingested_written = _ingested_synced = _ingested;
    if (_ingested % _blocks_per_chunk != 0) {
        // The tail chunk continues to fill: load it (or start it afresh when it is lost).
        const std::uint64_t chunk = _ingested / _blocks_per_chunk;
        auto loaded = load_chunk(chunk);
        cache_slot* slot = nullptr;
        if (loaded) {
            slot = *loaded;
        } else {
            auto fresh = free_slot();
            if (!fresh) {
                return fail(fresh.error());
            }
            slot = *fresh;
            std::memset(slot->plain, 0, chunk_payload_bytes);
            slot->used = true;
            slot->chunk = chunk;
        }
        slot->block_count = static_cast<std::uint32_t>(_ingested - chunk * _blocks_per_chunk);
        slot->pinned = true;
    }
    // Leases: every owned block below the durable bound may have been handed out before the
    // crash; unless a reservation holds it, it expires so it is never handed out again.
    _skip_below = _lease_high;
    _next_lease = _own.first_owned_from(std::max(_lease_high, _base));
    const seq_t skip_end = std::min(_lease_high, _ingested);
    for (seq_t seq = _own.first_owned_from(_base); seq < skip_end; seq += _own.stride) {
        if (state_ref(seq) == block_state::available) {
            set_state(seq, block_state::expired);
            _wipe_pending.push_back(seq);
        }
    }
    _meta_dirty = true;
    auto committed = commit();
    if (!committed) {
        return fail(committed.error());
    }
    _commits_done = 0;
    return {};
}

std::string stream::journal_path(std::uint64_t gen) const {
    if (gen == 0) {
        return _dir + "/journal";
    }
    char name[32];
    std::snprintf(name, sizeof name, "/journal-%016" PRIx64, gen);
    return _dir + name;
}

void stream::remove_other_journals() noexcept {
    // A compaction that crashed before its meta leaves the next generation; one that crashed
    // after it, the previous one. Neither is referenced: remove them.
    DIR* d = ::opendir(_dir.c_str());
    if (d == nullptr) {
        return;
    }
    const std::string current = journal_path(_journal_gen);
    std::vector<std::string> stale;
    while (dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if ((name == "journal" || name.rfind("journal-", 0) == 0) &&
            _dir + "/" + name != current) {
            stale.push_back(_dir + "/" + name);
        }
    }
    ::closedir(d);
    for (const std::string& path : stale) {
        ::unlink(path.c_str());
    }
}

result<void> stream::replay_journal(std::uint64_t journal_bytes) noexcept {
    const std::string path = journal_path(_journal_gen);
    std::vector<std::byte> buffer(static_cast<std::size_t>(journal_bytes));
    auto got = read_all(_journal_fd, buffer.data(), buffer.size(), 0);
    if (!got) {
        return fail(got.error());
    }
    std::uint64_t valid = *got;
    if (*got < journal_bytes) {
        KEYRAIL_LOG(error, "store", "%s offset %zu: journal truncated (meta says %" PRIu64 ")",
                    path.c_str(), *got, journal_bytes);
    }
    std::size_t off = 0;
    while (off + journal_header_bytes + 8 <= valid) {
        std::uint32_t type = 0;
        std::uint32_t size = 0;
        std::memcpy(&type, buffer.data() + off, 4);
        std::memcpy(&size, buffer.data() + off + 4, 4);
        std::uint64_t sum = 0;
        const bool fits = size <= std::max(journal_body_max, journal_batch_body_max) &&
                          off + journal_header_bytes + size + 8 <= valid;
        if (fits) {
            std::memcpy(&sum, buffer.data() + off + journal_header_bytes + size, 8);
        }
        if (!fits || sum != checksum64(buffer.data() + off, journal_header_bytes + size)) {
            KEYRAIL_LOG(error, "store",
                        "%s offset %zu: journal record corrupt; later records"
                        " ignored",
                        path.c_str(), off);
            valid = off;
            break;
        }
        const std::byte* body = buffer.data() + off + journal_header_bytes;
        auto id_at = [body](std::size_t at) {
            key_id id;
            std::memcpy(id.bytes.data(), body + at, 16);
            return id;
        };
        // Malformed bodies of a verifying record are skipped (they never come from this code).
        if (type == journal_reserve && size >= 32) {
            std::uint64_t master = 0;
            std::uint32_t bits = 0;
            std::memcpy(&master, body + 16, 8);
            std::memcpy(&bits, body + 24, 4);
            const auto slave_count = static_cast<std::uint8_t>(body[28]);
            const auto run_count = static_cast<std::uint8_t>(body[29]);
            std::array<sae_id, slaves_max> slaves{};
            if (slave_count >= 1 && slave_count <= slaves_max &&
                size == 32u + 8u * slave_count + 12u * run_count) {
                for (std::size_t i = 0; i < slave_count; ++i) {
                    std::memcpy(&slaves[i].value, body + 32 + 8 * i, 8);
                }
                replay_reserve(id_at(0), sae_id{master}, bits,
                               std::span<const sae_id>(slaves.data(), slave_count),
                               body + 32 + 8 * slave_count, run_count, path, off);
            }
        } else if (type == journal_reserve_batch && size >= 16) {
            std::uint64_t master = 0;
            std::uint32_t bits = 0;
            std::memcpy(&master, body, 8);
            std::memcpy(&bits, body + 8, 4);
            const auto slave_count = static_cast<std::uint8_t>(body[12]);
            std::array<sae_id, slaves_max> slaves{};
            std::size_t at = 16 + 8 * std::size_t{slave_count};
            if (slave_count >= 1 && slave_count <= slaves_max && at <= size) {
                for (std::size_t i = 0; i < slave_count; ++i) {
                    std::memcpy(&slaves[i].value, body + 16 + 8 * i, 8);
                }
                while (at + 17 <= size) {
                    const auto run_count = static_cast<std::uint8_t>(body[at + 16]);
                    if (at + 17 + 12 * std::size_t{run_count} > size) {
                        break;
                    }
                    replay_reserve(id_at(at), sae_id{master}, bits,
                                   std::span<const sae_id>(slaves.data(), slave_count),
                                   body + at + 17, run_count, path, off);
                    at += 17 + 12 * std::size_t{run_count};
                }
            }
        } else if (type == journal_deliver && size == 17) {
            replay_deliver(id_at(0), static_cast<std::uint8_t>(body[16]));
        } else if (type == journal_deliver_batch) {
            for (std::size_t at = 0; at + 17 <= size; at += 17) {
                replay_deliver(id_at(at), static_cast<std::uint8_t>(body[at + 16]));
            }
        } else if (type == journal_consumed && size >= 16) {
            // A compaction's snapshot: every block of the window with its bit set was
            // delivered, expired or lost (which one no longer matters: never served again).
            seq_t first = 0;
            std::uint32_t count = 0;
            std::memcpy(&first, body, 8);
            std::memcpy(&count, body + 8, 4);
            if (count <= (std::uint64_t{size} - 16) * 8) {
                for (std::uint32_t i = 0; i < count; ++i) {
                    if ((std::to_integer<unsigned>(body[16 + i / 8]) >> (i % 8)) & 1u) {
                        set_state(first + i, block_state::expired);
                    }
                }
            }
        } else if (type == journal_expire && size == 16) {
            replay_expire(id_at(0));
        } else if (type == journal_expire_batch) {
            for (std::size_t at = 0; at + 16 <= size; at += 16) {
                replay_expire(id_at(at));
            }
        }
        off += journal_header_bytes + size + 8;
    }
    _journal_durable = std::min<std::uint64_t>(valid, off);
    // Records past the committed length were never acknowledged; appends overwrite them.
    if (::ftruncate(_journal_fd, static_cast<off_t>(_journal_durable)) != 0) {
        return fail(errno_error(errno));
    }
    return {};
}

void stream::replay_reserve(const key_id& id, sae_id master, std::uint32_t bits,
                            std::span<const sae_id> slaves, const std::byte* runs,
                            std::uint8_t run_count, const std::string& path,
                            std::size_t off) noexcept {
    if (index_find(id) != 0 || run_count < 1 || run_count > key_runs_max) {
        return;
    }
    std::size_t n = 0;
    bool ok = true;
    for (std::size_t i = 0; i < run_count && ok; ++i) {
        seq_t first = 0;
        std::uint32_t count = 0;
        std::memcpy(&first, runs + 12 * i, 8);
        std::memcpy(&count, runs + 12 * i + 8, 4);
        for (std::uint32_t k = 0; k < count && ok; ++k) {
            ok = n < _scratch.size();
            if (ok) {
                _scratch[n++] = first + std::uint64_t{k} * _own.stride;
            }
        }
    }
    const reserve_request req{bits, master, slaves};
    auto blocks = blocks_for_key(bits, _block_bytes);
    ok = ok && blocks && *blocks == n;
    for (std::size_t i = 0; ok && i < n; ++i) {
        // A block already reserved or consumed cannot be reserved again (a checksummed but
        // inconsistent journal): skip the key rather than revive the block.
        const block_state st = state_of(_scratch[i]);
        ok = st == block_state::absent || st == block_state::available;
    }
    auto slot = ok ? add_reservation(id, req, std::span<const seq_t>(_scratch.data(), n))
                   : result<std::uint32_t>(fail(errc::journal_corrupt));
    if (slot) {
        for (std::size_t i = 0; i < n; ++i) {
            set_state(_scratch[i], block_state::reserved);
        }
    } else {
        KEYRAIL_LOG(error, "store", "%s offset %zu: reservation not restored (%s)", path.c_str(),
                    off, slot.error().message().c_str());
    }
}

void stream::replay_deliver(const key_id& id, std::uint8_t slave) noexcept {
    const std::uint32_t existing = index_find(id);
    if (existing == 0) {
        return;
    }
    reservation& r = _slots[existing - 1];
    if (slave < r.slave_count) {
        r.delivered_mask = static_cast<std::uint8_t>(r.delivered_mask | (1u << slave));
        if (r.delivered_mask == (1u << r.slave_count) - 1) {
            consume_reservation(existing - 1, block_state::delivered, false);
        }
    }
}

void stream::replay_expire(const key_id& id) noexcept {
    if (const std::uint32_t existing = index_find(id); existing != 0) {
        consume_reservation(existing - 1, block_state::expired, false);
    }
}

void stream::scan_segments() noexcept {
    DIR* d = ::opendir(_dir.c_str());
    if (d == nullptr) {
        KEYRAIL_LOG(error, "store", "%s: cannot list segments: %s", _dir.c_str(),
                    std::strerror(errno));
        return;
    }
    std::vector<std::uint64_t> numbers;
    while (dirent* e = ::readdir(d)) {
        std::uint64_t number = 0;
        char tail = 0;
        if (std::sscanf(e->d_name, "seg-%16" SCNx64 "%c", &number, &tail) == 1) {
            numbers.push_back(number);
        }
    }
    ::closedir(d);
    std::sort(numbers.begin(), numbers.end());
    auto work = std::make_unique<std::byte[]>(chunk_payload_bytes);
    const std::uint64_t first_live = _base / _blocks_per_segment;
    const std::uint64_t end_live = (_base + _capacity) / _blocks_per_segment;
    for (const std::uint64_t number : numbers) {
        const std::string path = segment_path(number);
        if (number < first_live) {
            // Reclaimed by a committed meta; the unlink did not happen before the crash.
            ::unlink(path.c_str());
            continue;
        }
        if (number >= end_live) {
            KEYRAIL_LOG(error, "store", "%s offset 0: segment beyond the live window; ignored",
                        path.c_str());
            continue;
        }
        const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            KEYRAIL_LOG(error, "store", "%s offset 0: cannot open: %s", path.c_str(),
                        std::strerror(errno));
            continue;
        }
        struct stat st {};
        ::fstat(fd, &st);
        const std::uint64_t full = page_bytes * (std::uint64_t{1} + _segment_chunks);
        auto size = static_cast<std::uint64_t>(st.st_size);
        if (size < full) {
            KEYRAIL_LOG(error, "store",
                        "%s offset %" PRIu64 ": segment truncated (want %" PRIu64 " bytes)",
                        path.c_str(), size, full);
        }
        size = std::min(size, full) / page_bytes * page_bytes;
        segment_header h{};
        bool header_ok = false;
        if (size >= page_bytes) {
            auto got = read_all(fd, &h, sizeof h, 0);
            header_ok = got && *got == sizeof h && h.magic == segment_magic &&
                        h.checksum == checksum64(&h, offsetof(segment_header, checksum)) &&
                        h.version == format_version && h.stream == _id.value &&
                        h.number == number && h.block_bytes == _block_bytes &&
                        h.segment_chunks == _segment_chunks;
        }
        if (!header_ok) {
            KEYRAIL_LOG(error, "store",
                        "%s offset 0: bad segment magic or header; its blocks"
                        " are lost",
                        path.c_str());
            ::close(fd);
            continue;
        }
        void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            KEYRAIL_LOG(error, "store", "%s offset 0: mmap failed: %s", path.c_str(),
                        std::strerror(errno));
            ::close(fd);
            continue;
        }
        segment& seg = _segments[number % _segments.size()];
        seg = segment{number, fd, static_cast<const std::byte*>(map), size};
        for (std::uint64_t page = 1; page * page_bytes < size; ++page) {
            const std::byte* p = seg.map + page * page_bytes;
            if (all_zero(p, chunk_header_bytes)) {
                continue; // never written
            }
            const std::uint64_t chunk = number * _segment_chunks + (page - 1);
            chunk_header ch{};
            std::memcpy(&ch, p, sizeof ch);
            if (ch.magic != chunk_magic || ch.version != format_version || ch.stream != _id.value ||
                ch.chunk_index != chunk || ch.block_count == 0 ||
                ch.block_count > _blocks_per_chunk) {
                KEYRAIL_LOG(error, "store", "%s offset %" PRIu64 ": bad chunk magic or header",
                            path.c_str(), page * page_bytes);
                continue;
            }
            auto opened = _cipher.open(
                std::span<const std::byte, gcm_nonce_bytes>(p + chunk_nonce_offset, 12),
                std::span<const std::byte>(p, chunk_aad_bytes),
                std::span<const std::byte>(p + chunk_header_bytes,
                                           std::size_t{_blocks_per_chunk} * _block_bytes),
                work.get(), std::span<const std::byte, 16>(p + chunk_tag_offset, 16));
            if (!opened) {
                KEYRAIL_LOG(error, "store", "%s offset %" PRIu64 ": chunk %s", path.c_str(),
                            page * page_bytes, opened.error().message().c_str());
                continue;
            }
            const seq_t first = chunk * _blocks_per_chunk;
            for (std::uint32_t i = 0; i < ch.block_count; ++i) {
                const seq_t seq = first + i;
                const block_state s = state_ref(seq);
                if (s == block_state::absent) {
                    set_state(seq, block_state::available);
                } else if ((s == block_state::delivered || s == block_state::expired) &&
                           !all_zero(work.get() + std::size_t{i} * _block_bytes, _block_bytes)) {
                    _wipe_pending.push_back(seq);
                }
            }
            _ingested = std::max(_ingested, first + ch.block_count);
        }
        secure_wipe(work.get(), chunk_payload_bytes);
    }
}

void stream::set_state(seq_t seq, block_state s) noexcept {
    if (seq < _base || seq >= _base + _capacity) {
        return;
    }
    block_state& ref = state_ref(seq);
    const block_state old = ref;
    if (old == s) {
        return;
    }
    if (old == block_state::available) {
        --_available;
    }
    if (s == block_state::available) {
        ++_available;
    }
    if (consumed(s) && !consumed(old)) {
        ++_segment_consumed[(seq / _blocks_per_segment) % _segments.size()];
    }
    KEYRAIL_DEBUG_ASSERT(!(consumed(old) && !consumed(s)), "seq %" PRIu64 " left state %d", seq,
                         static_cast<int>(old));
    ref = s;
}

block_state stream::state_of(seq_t seq) const noexcept {
    if (seq < _base || seq >= _base + _capacity) {
        return block_state::absent;
    }
    return _state[ring_index(seq)];
}

// --- segments, chunks, cache ---------------------------------------------------------------

result<segment*> stream::segment_for(std::uint64_t chunk, bool create) noexcept {
    const std::uint64_t number = chunk / _segment_chunks;
    if ((number + 1) * _blocks_per_segment <= _base) {
        return fail(errc::block_unavailable);
    }
    segment& seg = _segments[number % _segments.size()];
    if (seg.number == number && seg.fd >= 0) {
        return &seg;
    }
    if (!create) {
        return fail(errc::block_unavailable);
    }
    KEYRAIL_ASSERT(seg.fd < 0, "segment slot %" PRIu64 " busy with %" PRIu64, number, seg.number);
    const std::string path = segment_path(number);
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return fail(errno_error(errno));
    }
    const std::uint64_t full = page_bytes * (std::uint64_t{1} + _segment_chunks);
    segment_header h{};
    h.magic = segment_magic;
    h.version = format_version;
    h.stream = _id.value;
    h.number = number;
    h.block_bytes = _block_bytes;
    h.segment_chunks = _segment_chunks;
    h.checksum = checksum64(&h, offsetof(segment_header, checksum));
    std::byte page[page_bytes] = {};
    std::memcpy(page, &h, sizeof h);
    auto written = write_all(fd, page, sizeof page, 0);
    if (written && ::ftruncate(fd, static_cast<off_t>(full)) != 0) {
        written = fail(errno_error(errno));
    }
    if (written && _mode == durability::power && (::fsync(fd) != 0 || ::fsync(_dir_fd) != 0)) {
        written = fail(errno_error(errno));
    }
    void* map = written ? ::mmap(nullptr, full, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (map == MAP_FAILED) {
        const std::error_code e = written ? errno_error(errno) : written.error();
        ::close(fd);
        return fail(e);
    }
    seg = segment{number, fd, static_cast<const std::byte*>(map), full};
    return &seg;
}

cache_slot* stream::find_cached(std::uint64_t chunk) noexcept {
    // Keys are mostly taken in sequence: the last hit is the likely one.
    cache_slot& last = _cache[_last_hit];
    if (last.used && last.chunk == chunk) {
        last.tick = ++_tick;
        return &last;
    }
    for (std::size_t i = 0; i < _cache.size(); ++i) {
        cache_slot& slot = _cache[i];
        if (slot.used && slot.chunk == chunk) {
            slot.tick = ++_tick;
            _last_hit = i;
            return &slot;
        }
    }
    return nullptr;
}

result<cache_slot*> stream::free_slot() noexcept {
    cache_slot* victim = nullptr;
    for (auto& slot : _cache) {
        if (!slot.used) {
            victim = &slot;
            break;
        }
        if (!slot.pinned && (victim == nullptr || slot.tick < victim->tick)) {
            victim = &slot;
        }
    }
    KEYRAIL_ASSERT(victim != nullptr, "chunk cache of %zu slots all pinned", _cache.size());
    if (victim->used && victim->dirty) {
        if (auto r = seal_and_stage(*victim); !r) {
            return fail(r.error());
        }
    }
    secure_wipe(victim->plain, chunk_payload_bytes);
    victim->used = false;
    victim->dirty = false;
    victim->pinned = false;
    victim->block_count = 0;
    victim->tick = ++_tick;
    return victim;
}

result<cache_slot*> stream::load_chunk(std::uint64_t chunk) noexcept {
    if (cache_slot* hit = find_cached(chunk)) {
        return hit;
    }
    if (!_stage_chunks.empty()) {
        // The read-only map must see every staged page before we read through it.
        if (auto r = flush_stage(); !r) {
            return fail(r.error());
        }
    }
    auto seg = segment_for(chunk, false);
    if (!seg) {
        return fail(seg.error());
    }
    const std::uint64_t offset = (1 + chunk % _segment_chunks) * page_bytes;
    if (offset + page_bytes > (*seg)->map_bytes) {
        return fail(errc::segment_truncated);
    }
    const std::byte* p = (*seg)->map + offset;
    chunk_header ch{};
    std::memcpy(&ch, p, sizeof ch);
    if (ch.magic != chunk_magic || ch.chunk_index != chunk || ch.stream != _id.value ||
        ch.block_count == 0 || ch.block_count > _blocks_per_chunk) {
        KEYRAIL_LOG(error, "store", "%s offset %" PRIu64 ": bad chunk magic or header",
                    segment_path((*seg)->number).c_str(), offset);
        return fail(errc::segment_bad_magic);
    }
    auto slot = free_slot();
    if (!slot) {
        return fail(slot.error());
    }
    auto opened =
        _cipher.open(std::span<const std::byte, gcm_nonce_bytes>(p + chunk_nonce_offset, 12),
                     std::span<const std::byte>(p, chunk_aad_bytes),
                     std::span<const std::byte>(p + chunk_header_bytes,
                                                std::size_t{_blocks_per_chunk} * _block_bytes),
                     (*slot)->plain, std::span<const std::byte, 16>(p + chunk_tag_offset, 16));
    if (!opened) {
        KEYRAIL_LOG(error, "store", "%s offset %" PRIu64 ": chunk %s",
                    segment_path((*seg)->number).c_str(), offset, opened.error().message().c_str());
        return fail(opened.error());
    }
    (*slot)->used = true;
    (*slot)->chunk = chunk;
    (*slot)->block_count = ch.block_count;
    return *slot;
}

result<std::uint64_t> stream::take_nonce() noexcept {
    if (_nonce_next >= _nonce_high) {
        // A nonce is used only below a durable bound, so a crash can never make us reuse one.
        if (auto r = write_meta(_journal_durable, _lease_high, _nonce_next + nonce_headroom); !r) {
            return fail(r.error());
        }
    }
    return _nonce_next++;
}

result<void> stream::seal_and_stage(cache_slot& slot) noexcept {
    KEYRAIL_DEBUG_ASSERT(slot.used, "sealing an unused slot");
    KEYRAIL_ASSERT(slot.block_count > 0 && slot.block_count <= _blocks_per_chunk,
                   "chunk %" PRIu64 " block_count %u", slot.chunk, slot.block_count);
    if (_stage_chunks.size() == stage_pages) {
        if (auto r = flush_stage(); !r) {
            return r;
        }
    }
    auto seg = segment_for(slot.chunk, true);
    if (!seg) {
        return fail(seg.error());
    }
    auto nonce = take_nonce();
    if (!nonce) {
        return fail(nonce.error());
    }
    std::byte* page = _stage.get() + _stage_chunks.size() * page_bytes;
    chunk_header ch{};
    ch.magic = chunk_magic;
    ch.version = format_version;
    ch.stream = _id.value;
    ch.block_count = slot.block_count;
    ch.chunk_index = slot.chunk;
    std::memcpy(ch.nonce, &_id.value, 4);
    std::memcpy(ch.nonce + 4, &*nonce, 8);
    std::memcpy(page, &ch, sizeof ch);
    const std::size_t payload = std::size_t{_blocks_per_chunk} * _block_bytes;
    if (auto r =
            _cipher.seal(std::span<const std::byte, gcm_nonce_bytes>(page + chunk_nonce_offset, 12),
                         std::span<const std::byte>(page, chunk_aad_bytes),
                         std::span<const std::byte>(slot.plain, payload), page + chunk_header_bytes,
                         std::span<std::byte, 16>(page + chunk_tag_offset, 16));
        !r) {
        return r;
    }
    std::memset(page + chunk_header_bytes + payload, 0, page_bytes - chunk_header_bytes - payload);
    _stage_chunks.push_back(slot.chunk);
    slot.dirty = false;
    const seq_t end = slot.chunk * _blocks_per_chunk + slot.block_count;
    if (end > _ingested_written && slot.chunk * _blocks_per_chunk <= _ingested_written) {
        _ingested_written = end;
    }
    if (std::find(_dirty_fds.begin(), _dirty_fds.end(), (*seg)->fd) == _dirty_fds.end()) {
        _dirty_fds.push_back((*seg)->fd);
    }
    return {};
}

result<void> stream::flush_stage() noexcept {
    std::size_t i = 0;
    while (i < _stage_chunks.size()) {
        const std::uint64_t first = _stage_chunks[i];
        std::size_t n = 1;
        while (i + n < _stage_chunks.size() && _stage_chunks[i + n] == first + n &&
               (first + n) / _segment_chunks == first / _segment_chunks) {
            ++n;
        }
        auto seg = segment_for(first, false);
        if (seg) {
            const std::uint64_t offset = (1 + first % _segment_chunks) * page_bytes;
            if (auto r =
                    write_all((*seg)->fd, _stage.get() + i * page_bytes, n * page_bytes, offset);
                !r) {
                KEYRAIL_LOG(error, "store", "%s offset %" PRIu64 ": write failed: %s",
                            segment_path((*seg)->number).c_str(), offset,
                            r.error().message().c_str());
                return r;
            }
        } // else: reclaimed meanwhile; its pages need not reach the disk
        i += n;
    }
    _stage_chunks.clear();
    return {};
}

result<void> stream::sync(int fd) noexcept {
    if (_mode == durability::power && ::fdatasync(fd) != 0) {
        return fail(errno_error(errno));
    }
    return {};
}

result<void> stream::write_meta(std::uint64_t journal_bytes, std::uint64_t lease_high,
                                std::uint64_t nonce_high) noexcept {
    meta_record m{};
    m.magic = meta_magic;
    m.version = meta_version;
    m.block_bytes = _block_bytes;
    m.stream = _id.value;
    m.stride = _own.stride;
    m.offset = _own.offset;
    m.segment_chunks = _segment_chunks;
    m.txn = _meta_txn + 1;
    m.journal_bytes = journal_bytes;
    m.lease_high = lease_high;
    m.nonce_high = nonce_high;
    m.base = _base;
    m.ingested = _ingested_synced;
    m.capacity = _capacity;
    m.journal_gen = _journal_gen;
    m.checksum = checksum64(&m, offsetof(meta_record, checksum));
    std::byte page[page_bytes] = {};
    std::memcpy(page, &m, sizeof m);
    if (auto r = write_all(_meta_fd, page, sizeof page, (m.txn % 2) * page_bytes); !r) {
        KEYRAIL_LOG(error, "store", "%s/meta offset %" PRIu64 ": write failed: %s", _dir.c_str(),
                    (m.txn % 2) * page_bytes, r.error().message().c_str());
        return r;
    }
    if (auto r = sync(_meta_fd); !r) {
        return r;
    }
    _meta_txn = m.txn;
    _lease_high = lease_high;
    _nonce_high = nonce_high;
    _base_durable = _base;
    _meta_dirty = false;
    if (_stale_gen_pending) { // both slots now name a later generation
        // Freeing a journal of hundreds of MB takes ext4 tens of ms: not on this thread.
        // The name is unique to its generation, so nothing else uses it meanwhile.
        try {
            std::thread([path = journal_path(_stale_gen)] { ::unlink(path.c_str()); }).detach();
        } catch (const std::system_error&) {
            ::unlink(journal_path(_stale_gen).c_str());
        }
        _stale_gen_pending = false;
    }
    return {};
}

// --- ingest and leases --------------------------------------------------------------------------

result<seq_t> stream::append(std::span<const std::byte> blocks) noexcept {
    if (blocks.empty() || blocks.size() % _block_bytes != 0) {
        return fail(errc::invalid_argument);
    }
    const std::uint64_t count = blocks.size() / _block_bytes;
    // Only a durable base frees room: the reclaimed segment's slot must be gone on disk too.
    if (_ingested + count > _base_durable + _capacity) {
        return fail(errc::store_full);
    }
    const seq_t first_seq = _ingested;
    std::size_t consumed_bytes = 0;
    while (consumed_bytes < blocks.size()) {
        const std::uint64_t chunk = _ingested / _blocks_per_chunk;
        const auto index = static_cast<std::uint32_t>(_ingested % _blocks_per_chunk);
        cache_slot* slot = nullptr;
        if (index == 0) {
            auto fresh = free_slot();
            if (!fresh) {
                return fail(fresh.error());
            }
            slot = *fresh;
            slot->used = true;
            slot->pinned = true;
            slot->chunk = chunk;
        } else {
            slot = find_cached(chunk);
            KEYRAIL_ASSERT(slot != nullptr && slot->pinned, "tail chunk %" PRIu64 " not pinned",
                           chunk);
        }
        const std::size_t take = std::min<std::size_t>(
            _blocks_per_chunk - index, (blocks.size() - consumed_bytes) / _block_bytes);
        std::byte* dst = slot->plain + std::size_t{index} * _block_bytes;
        std::memcpy(dst, blocks.data() + consumed_bytes, take * _block_bytes);
        for (std::size_t i = 0; i < take; ++i) {
            const seq_t seq = _ingested + i;
            const block_state s = state_ref(seq);
            if (s == block_state::reserved) {
                continue; // a reservation was waiting for this block
            }
            if (s == block_state::expired ||
                (s == block_state::absent && _own.owns(seq) && seq < _skip_below)) {
                // Held then expired, or below the pre-crash lease bound: never served.
                secure_wipe(dst + i * _block_bytes, _block_bytes);
                set_state(seq, block_state::expired);
                continue;
            }
            set_state(seq, block_state::available);
        }
        _ingested += take;
        consumed_bytes += take * _block_bytes;
        slot->block_count = index + static_cast<std::uint32_t>(take);
        slot->dirty = true;
        if (slot->block_count == _blocks_per_chunk) {
            slot->pinned = false;
            if (auto r = seal_and_stage(*slot); !r) {
                return fail(r.error());
            }
        }
    }
    return first_seq;
}

result<lease> stream::grant(std::uint64_t block_count) noexcept {
    if (block_count == 0) {
        return fail(errc::invalid_argument);
    }
    const seq_t first = _own.first_owned_from(std::max(_next_lease, _base));
    if (first >= _ingested) {
        return fail(errc::lease_exhausted);
    }
    const seq_t end = std::min<seq_t>(first + (block_count - 1) * _own.stride + 1, _ingested);
    if (end > _lease_high) {
        if (auto r = write_meta(_journal_durable,
                                end + std::uint64_t{_lease_headroom} * _own.stride, _nonce_high);
            !r) {
            return fail(r.error());
        }
    }
    _next_lease = _own.first_owned_from(end);
    _leased = true;
    return lease{_id, _own.stride, first, end};
}

void stream::release(const lease& l, seq_t from) noexcept {
    for (seq_t seq = _own.first_owned_from(std::max({from, l.first, _base})); seq < l.end;
         seq += _own.stride) {
        if (state_ref(seq) == block_state::available) {
            set_state(seq, block_state::expired);
            _wipe_pending.push_back(seq);
        }
    }
}

// --- reservations -------------------------------------------------------------------------------

void stream::index_prefetch(const key_id& id) const noexcept {
    const std::size_t mask = _index.size() - 1;
    __builtin_prefetch(&_index[index_hash(id) & mask]);
}

std::uint32_t stream::index_find(const key_id& id) const noexcept {
    const std::size_t mask = _index.size() - 1;
    const auto h = index_hash(id);
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
        const std::uint64_t e = _index[i];
        if (e == 0) {
            return 0;
        }
        const auto slot = static_cast<std::uint32_t>(e);
        if (static_cast<std::uint32_t>(e >> 32) == h && _slots[slot - 1].id.equals(id)) {
            return slot;
        }
    }
}

void stream::index_insert(const key_id& id, std::uint32_t slot) noexcept {
    const std::size_t mask = _index.size() - 1;
    const auto h = index_hash(id);
    std::size_t i = h & mask;
    while (_index[i] != 0) {
        i = (i + 1) & mask;
    }
    _index[i] = (std::uint64_t{h} << 32) | (std::uint64_t{slot} + 1);
}

void stream::index_erase(const key_id& id) noexcept {
    const std::size_t mask = _index.size() - 1;
    const auto h = index_hash(id);
    std::size_t i = h & mask;
    while (_index[i] != 0 &&
           !(static_cast<std::uint32_t>(_index[i] >> 32) == h &&
             _slots[static_cast<std::uint32_t>(_index[i]) - 1].id.equals(id))) {
        i = (i + 1) & mask;
    }
    KEYRAIL_ASSERT(_index[i] != 0, "erasing a key ID that is not indexed");
    // Backward-shift deletion keeps every probe chain unbroken without tombstones. The stored
    // hash gives each entry's home slot (the index has at most 2^32 entries).
    std::size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (_index[j] == 0) {
            break;
        }
        const std::size_t home = static_cast<std::size_t>(_index[j] >> 32) & mask;
        const bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!between) {
            _index[i] = _index[j];
            i = j;
        }
    }
    _index[i] = 0;
}

result<std::uint32_t> stream::add_reservation(const key_id& id, const reserve_request& req,
                                              std::span<const seq_t> seqs) noexcept {
    if (req.slaves.empty() || req.slaves.size() > slaves_max) {
        return fail(errc::too_many_slaves);
    }
    if (_free_slots.empty()) {
        return fail(errc::reservations_full);
    }
    reservation r{};
    if (!compress_runs(seqs, _own.stride, r.runs, r.run_count)) {
        return fail(errc::key_too_fragmented);
    }
    const std::uint32_t slot = _free_slots.back();
    _free_slots.pop_back();
    r.id = id;
    r.master = req.master;
    r.key_bits = req.key_bits;
    r.block_count = static_cast<std::uint32_t>(seqs.size());
    r.slave_count = static_cast<std::uint8_t>(req.slaves.size());
    std::copy(req.slaves.begin(), req.slaves.end(), r.slaves.begin());
    r.used = true;
    _slots[slot] = r;
    _slots_high = std::max(_slots_high, slot + 1);
    index_insert(id, slot);
    ++_reservations;
    return slot;
}

void stream::free_reservation(std::uint32_t slot) noexcept {
    index_erase(_slots[slot].id);
    _slots[slot] = reservation{};
    _free_slots.push_back(slot);
    --_reservations;
}

std::uint32_t stream::expand_seqs(const reservation& r) noexcept {
    std::uint32_t n = 0;
    for (std::size_t i = 0; i < r.run_count; ++i) {
        for (std::uint32_t k = 0; k < r.runs[i].count; ++k) {
            KEYRAIL_ASSERT(n < _scratch.size(), "key of %u blocks", r.block_count);
            _scratch[n++] = r.runs[i].first + std::uint64_t{k} * _own.stride;
        }
    }
    return n;
}

void stream::consume_reservation(std::uint32_t slot, block_state final_state, bool wipe) noexcept {
    const std::uint32_t n = expand_seqs(_slots[slot]);
    for (std::uint32_t i = 0; i < n; ++i) {
        set_state(_scratch[i], final_state);
        if (wipe) {
            _wipe_pending.push_back(_scratch[i]);
        }
    }
    free_reservation(slot);
}

std::size_t stream::snapshot_estimate() const noexcept {
    // Bits for the window, and a reserve entry (with a share of its record) per reservation.
    return _capacity / 8 + std::size_t{_reservations} * 48;
}

void stream::maybe_compact() noexcept {
    if (_compact_fd >= 0) {
        if (auto r = continue_compaction(); !r) {
            compaction_failed(r.error());
        }
        return;
    }
    if (_compact_bytes == 0 || _journal_durable < _compact_bytes ||
        _journal_durable < _compact_retry_at || !_journal_pending.empty() ||
        _journal_durable < 4 * static_cast<std::uint64_t>(snapshot_estimate())) {
        return;
    }
    if (auto r = start_compaction(); !r) {
        compaction_failed(r.error());
    }
}

void stream::compaction_failed(const std::error_code& why) noexcept {
    abandon_compaction();
    // The old journal stays in use. Not again on every commit (a full disk would stall each
    // one): once it has grown by another journal_compact_bytes.
    _compact_retry_at = _journal_durable + _compact_bytes;
    KEYRAIL_LOG(warn, "store", "%s: journal compaction failed (%s); next try past %" PRIu64 " bytes",
                _dir.c_str(), why.message().c_str(), _compact_retry_at);
}

void stream::abandon_compaction() noexcept {
    if (_compact_fd >= 0) {
        ::close(_compact_fd);
        _compact_fd = -1;
        // No meta names it. Removed here, not by a background thread: a store reopened in
        // this process takes the same generation number next, and a late unlink would hit it.
        ::unlink(journal_path(_compact_gen).c_str());
    }
    std::vector<std::byte>().swap(_compact_data);
    _compact_written = 0;
    _compact_tail = 0;
}

result<void> stream::start_compaction() noexcept {
    _compact_started = std::chrono::steady_clock::now();
    _compact_from = _journal_durable;
    _compact_commits = 0;
    // The snapshot of the state every committed record made (the end of a commit: nothing is
    // pending), built with the journal writers into a buffer of its own.
    std::vector<std::byte> snapshot;
    snapshot.reserve(snapshot_estimate() + 4096);
    std::swap(snapshot, _journal_pending);
    // 1. The window's consumed blocks, a bit each, in records of at most the batch size. One
    // pass over the state ring in ring order (no modulo per block), then the records.
    std::vector<std::uint8_t> bits((_capacity + 7) / 8, 0);
    std::uint64_t used_bits = 0; // one past the last consumed offset from _base
    {
        const std::size_t start = ring_index(_base);
        for (std::uint64_t off = 0; off < _capacity; ++off) {
            std::size_t i = start + off;
            i = i >= _capacity ? i - _capacity : i;
            if (consumed(_state[i])) {
                bits[off / 8] = static_cast<std::uint8_t>(bits[off / 8] | (1u << (off % 8)));
                used_bits = off + 1;
            }
        }
    }
    // Each record is its own: its [first seq 8][count 4][pad 4] differ from every other's.
    // Only the last is short, and no bit past used_bits is set.
    constexpr std::uint64_t bits_per_record = (journal_batch_body_max - 16) * 8; // whole bytes
    for (std::uint64_t off = 0; off < used_bits; off += bits_per_record) {
        const auto count = static_cast<std::uint32_t>(std::min(bits_per_record, used_bits - off));
        std::byte head[16] = {};
        const seq_t first = _base + off;
        std::memcpy(head, &first, 8);
        std::memcpy(head + 8, &count, 4);
        journal_batch_add(journal_consumed, head, sizeof head, bits.data() + off / 8,
                          (count + 7) / 8);
        journal_close();
    }
    // 2. Every live reservation (slots are reused lowest first: none lies at or above
    // _slots_high), then the slaves that already have a multicast key.
    std::vector<std::uint32_t> partial;
    for (std::uint32_t slot = 0; slot < _slots_high; ++slot) {
        const reservation& r = _slots[slot];
        if (r.used) {
            journal_reservation(r);
            if (r.delivered_mask != 0) {
                partial.push_back(slot);
            }
        }
    }
    for (const std::uint32_t slot : partial) {
        const reservation& r = _slots[slot];
        for (std::uint8_t i = 0; i < r.slave_count; ++i) {
            if ((r.delivered_mask >> i) & 1u) {
                std::byte entry[17];
                std::memcpy(entry, r.id.bytes.data(), 16);
                entry[16] = static_cast<std::byte>(i);
                journal_batch_add(journal_deliver_batch, nullptr, 0, entry, sizeof entry);
            }
        }
    }
    journal_close();
    std::swap(snapshot, _journal_pending); // the commit's buffer (empty) is back
    _compact_data = std::move(snapshot);
    _compact_written = 0;
    _compact_tail = 0;
    _compact_build_us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                              _compact_started)
            .count());

    // 2. The next generation's file. Each attempt takes a fresh number: a failed meta write
    // may still have named the previous attempt's file.
    _compact_gen = _next_gen++;
    _compact_fd = ::open(journal_path(_compact_gen).c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
                         0600);
    if (_compact_fd < 0) {
        return fail(errno_error(errno));
    }
    return continue_compaction();
}

result<void> stream::continue_compaction() noexcept {
    // 3. One step of the snapshot per commit. The records committed since it was cut are
    // already in the file after it (commit() writes each commit's there once the old journal
    // has them).
    ++_compact_commits;
    const std::size_t n = static_cast<std::size_t>(
        std::min<std::uint64_t>(_compact_step, _compact_data.size() - _compact_written));
    if (n > 0) {
        if (auto r = write_all(_compact_fd, _compact_data.data() + _compact_written, n,
                               _compact_written);
            !r) {
            return r;
        }
        if (_mode == durability::power) {
            // Start the writeback now, so the final fdatasync has little left to wait for.
            (void)::sync_file_range(_compact_fd, static_cast<off64_t>(_compact_written),
                                    static_cast<off64_t>(n), SYNC_FILE_RANGE_WRITE);
        }
        _compact_written += n;
    }
    if (_compact_written < _compact_data.size()) {
        return {};
    }
    const std::uint64_t total = _compact_data.size() + _compact_tail;
    // 4. All of it: durable before the meta names it.
    if (auto r = sync(_compact_fd); !r) {
        return r;
    }
    if (_mode == durability::power && ::fsync(_dir_fd) != 0) {
        return fail(errno_error(errno));
    }
    // 5. The commit point: the meta names the new generation and its length. If it fails,
    // the file stays (the page may have reached the disk); open removes whatever the meta it
    // picks does not name.
    const std::uint64_t old_gen = _journal_gen;
    _journal_gen = _compact_gen;
    if (auto r = write_meta(total, _lease_high, _nonce_high); !r) {
        _journal_gen = old_gen;
        ::close(_compact_fd);
        _compact_fd = -1;
        std::vector<std::byte>().swap(_compact_data);
        _compact_tail = 0;
        return r;
    }
    ::close(_journal_fd);
    _journal_fd = _compact_fd;
    _compact_fd = -1;
    // The other meta slot still names the old generation (open falls back to it if this
    // slot tears): remove that file once the next meta has replaced it too.
    _stale_gen = old_gen;
    _stale_gen_pending = true;
    const auto took_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - _compact_started)
                             .count();
    KEYRAIL_LOG(info, "store",
                "%s: journal compacted: %" PRIu64 " bytes -> %zu (generation %" PRIu64
                "; snapshot built in %" PRIu64 " us, written over %u commits, %lld ms)",
                _dir.c_str(), _compact_from, static_cast<std::size_t>(total), _compact_gen,
                _compact_build_us,
                _compact_commits, static_cast<long long>(took_ms));
    _journal_durable = total;
    std::vector<std::byte>().swap(_compact_data);
    _compact_written = 0;
    _compact_tail = 0;
    return {};
}

void stream::journal_reservation(const reservation& r) noexcept {
    // Batch record: common [master 8][bits 4][slave count 1][pad 3][slaves 8 each], entry
    // [key ID 16][run count 1][runs: first 8, count 4].
    std::byte common[journal_reserve_common_max] = {};
    std::memcpy(common, &r.master.value, 8);
    std::memcpy(common + 8, &r.key_bits, 4);
    common[12] = static_cast<std::byte>(r.slave_count);
    std::size_t common_size = 16;
    for (std::size_t i = 0; i < r.slave_count; ++i) {
        std::memcpy(common + common_size, &r.slaves[i].value, 8);
        common_size += 8;
    }
    std::byte entry[journal_reserve_entry_max];
    std::memcpy(entry, r.id.bytes.data(), 16);
    entry[16] = static_cast<std::byte>(r.run_count);
    std::size_t at = 17;
    for (std::size_t i = 0; i < r.run_count; ++i) {
        std::memcpy(entry + at, &r.runs[i].first, 8);
        std::memcpy(entry + at + 8, &r.runs[i].count, 4);
        at += 12;
    }
    journal_batch_add(journal_reserve_batch, common, static_cast<std::uint32_t>(common_size),
                      entry, static_cast<std::uint32_t>(at));
}

void stream::journal_close() noexcept {
    if (_journal_open == static_cast<std::size_t>(-1)) {
        return;
    }
    const std::size_t at = _journal_open;
    const std::size_t end = _journal_pending.size();
    _journal_pending.resize(end + 8);
    const std::uint64_t sum = checksum64(_journal_pending.data() + at, end - at);
    std::memcpy(_journal_pending.data() + end, &sum, 8);
    _journal_open = static_cast<std::size_t>(-1);
}

void stream::journal_batch_add(std::uint32_t type, const void* common, std::uint32_t common_size,
                               const void* entry, std::uint32_t entry_size) noexcept {
    if (_journal_open != static_cast<std::size_t>(-1)) {
        std::byte* p = _journal_pending.data() + _journal_open;
        std::uint32_t open_type = 0;
        std::uint32_t size = 0;
        std::memcpy(&open_type, p, 4);
        std::memcpy(&size, p + 4, 4);
        if (open_type == type && size >= common_size &&
            size + entry_size <= journal_batch_body_max &&
            (common_size == 0 || std::memcmp(p + journal_header_bytes, common, common_size) == 0)) {
            const std::size_t at = _journal_pending.size();
            _journal_pending.resize(at + entry_size);
            p = _journal_pending.data() + _journal_open; // the resize may have moved it
            std::memcpy(_journal_pending.data() + at, entry, entry_size);
            size += entry_size;
            std::memcpy(p + 4, &size, 4);
            return;
        }
        journal_close();
    }
    const std::size_t at = _journal_pending.size();
    const std::uint32_t size = common_size + entry_size;
    _journal_pending.resize(at + journal_header_bytes + size);
    std::byte* p = _journal_pending.data() + at;
    std::memcpy(p, &type, 4);
    std::memcpy(p + 4, &size, 4);
    if (common_size > 0) {
        std::memcpy(p + journal_header_bytes, common, common_size);
    }
    std::memcpy(p + journal_header_bytes + common_size, entry, entry_size);
    _journal_open = at;
}

result<void> stream::copy_key(const reservation& r, std::span<std::byte> out) noexcept {
    const std::size_t key_bytes = r.key_bits / 8;
    KEYRAIL_ASSERT(out.size() >= key_bytes, "out %zu < key %zu", out.size(), key_bytes);
    std::size_t done = 0;
    for (std::size_t i = 0; i < r.run_count; ++i) {
        for (std::uint32_t k = 0; k < r.runs[i].count; ++k) {
            const seq_t seq = r.runs[i].first + std::uint64_t{k} * _own.stride;
            auto slot = load_chunk(seq / _blocks_per_chunk);
            if (!slot) {
                secure_wipe(out.data(), done);
                return fail(slot.error());
            }
            const std::size_t take = std::min<std::size_t>(_block_bytes, key_bytes - done);
            std::memcpy(out.data() + done,
                        (*slot)->plain + (seq % _blocks_per_chunk) * _block_bytes, take);
            done += take;
        }
    }
    KEYRAIL_ASSERT(done == key_bytes, "copied %zu of %zu", done, key_bytes);
    return {};
}

result<std::uint64_t> stream::reserve_specific(const key_id& id, const reserve_request& req,
                                               std::span<const seq_t> seqs,
                                               std::span<std::byte> out) noexcept {
    auto blocks = blocks_for_key(req.key_bits, _block_bytes);
    if (!blocks) {
        return fail(blocks.error());
    }
    if (seqs.size() != *blocks || (!out.empty() && out.size() < req.key_bits / 8)) {
        return fail(errc::invalid_argument);
    }
    if (req.slaves.empty() || req.slaves.size() > slaves_max) {
        return fail(errc::too_many_slaves);
    }
    if (index_find(id) != 0) {
        return fail(errc::key_id_exists);
    }
    if (_free_slots.empty()) {
        return fail(errc::reservations_full);
    }
    std::array<run, key_runs_max> runs{};
    std::uint8_t run_count = 0;
    if (!compress_runs(seqs, _own.stride, runs, run_count)) {
        return fail(errc::key_too_fragmented);
    }
    for (const seq_t seq : seqs) {
        if (seq < _base) {
            return fail(errc::block_unavailable);
        }
        if (seq >= _base_durable + _capacity) {
            return fail(errc::store_full);
        }
        if (_own.owns(seq) && seq >= _next_lease) {
            return fail(errc::not_peer_owned); // our share, never leased: not the peer's
        }
        if (!out.empty() && seq >= _ingested) {
            return fail(errc::key_not_ready);
        }
    }
    // Apply, rolling back on a block that is not free (this also catches duplicate seqs).
    for (std::size_t i = 0; i < seqs.size(); ++i) {
        const block_state s = state_ref(seqs[i]);
        const bool free_block =
            s == block_state::available ||
            (s == block_state::absent && seqs[i] >= _ingested && !_own.owns(seqs[i]));
        if (!free_block) {
            for (std::size_t k = 0; k < i; ++k) {
                state_ref(seqs[k]) =
                    seqs[k] < _ingested ? block_state::available : block_state::absent;
                if (seqs[k] < _ingested) {
                    ++_available;
                }
            }
            return fail(errc::block_unavailable);
        }
        set_state(seqs[i], block_state::reserved);
    }
    auto slot = add_reservation(id, req, seqs);
    KEYRAIL_ASSERT(slot.has_value(), "add_reservation failed after its checks");
    if (!out.empty()) {
        if (auto copied = copy_key(_slots[*slot], out); !copied) {
            // Bytes unreadable (corrupt chunk): the blocks are lost, the key never existed.
            const std::uint32_t n = expand_seqs(_slots[*slot]);
            for (std::uint32_t i = 0; i < n; ++i) {
                set_state(_scratch[i], block_state::lost);
            }
            free_reservation(*slot);
            return fail(copied.error());
        }
    }
    journal_reservation(_slots[*slot]);
    return next_ticket();
}

result<reserved_key> stream::reserve(const reserve_request& req,
                                     std::span<std::byte> out) noexcept {
    auto blocks = blocks_for_key(req.key_bits, _block_bytes);
    if (!blocks) {
        return fail(blocks.error());
    }
    if (out.size() < req.key_bits / 8) {
        return fail(errc::invalid_argument);
    }
    // Pick available blocks of our share above every lease handed out so far.
    std::uint32_t n = 0;
    seq_t seq = _own.first_owned_from(std::max(_next_lease, _base));
    std::array<seq_t, 1024> picked_storage;
    KEYRAIL_ASSERT(*blocks <= picked_storage.size(), "key of %u blocks", *blocks);
    while (n < *blocks) {
        if (seq >= _ingested) {
            return fail(errc::lease_exhausted);
        }
        if (state_ref(seq) == block_state::available) {
            picked_storage[n++] = seq;
        }
        seq += _own.stride;
    }
    // The index slot of a key reserved a few calls from now: by then it is in the cache (a
    // request for many keys would otherwise wait for one cache miss per key, in turn).
    constexpr std::size_t prefetch_ahead = 8;
    if (key_id ahead; _key_ids.peek(prefetch_ahead, ahead)) {
        index_prefetch(ahead); // a copy of an ID the pool holds anyway: no wipe (seal.h)
    }
    // And the reservation slot a few keys on (free slots are reused last freed first: cold
    // after an expiry sweep).
    if (_free_slots.size() > prefetch_ahead) {
        __builtin_prefetch(&_slots[_free_slots[_free_slots.size() - 1 - prefetch_ahead]], 1);
    }
    auto id = _key_ids.next();
    if (!id) {
        return fail(id.error());
    }
    const seq_t saved_next = _next_lease;
    const seq_t end = picked_storage[n - 1] + 1;
    if (end > _lease_high) {
        if (auto r = write_meta(_journal_durable,
                                end + std::uint64_t{_lease_headroom} * _own.stride, _nonce_high);
            !r) {
            return fail(r.error());
        }
    }
    _next_lease = _own.first_owned_from(end);
    auto ticket = reserve_specific(*id, req, std::span<const seq_t>(picked_storage.data(), n), out);
    if (!ticket) {
        _next_lease = saved_next; // nothing was handed out
        return fail(ticket.error());
    }
    _leased = true;
    return reserved_key{*id, *ticket};
}

result<delivered_key> stream::deliver(const key_id& id, sae_id caller,
                                      std::span<std::byte> out) noexcept {
    const std::uint32_t e = index_find(id);
    if (e == 0) {
        return fail(errc::unknown_key);
    }
    reservation& r = _slots[e - 1];
    std::uint8_t slave = 0;
    while (slave < r.slave_count && !(r.slaves[slave] == caller)) {
        ++slave;
    }
    if (slave == r.slave_count) {
        return fail(errc::not_slave);
    }
    if ((r.delivered_mask >> slave) & 1u) {
        return fail(errc::already_delivered);
    }
    if (!out.empty()) {
        if (out.size() < r.key_bits / 8) {
            return fail(errc::invalid_argument);
        }
        for (std::size_t i = 0; i < r.run_count; ++i) {
            if (r.runs[i].first + std::uint64_t{r.runs[i].count - 1} * _own.stride >=
                _ingested) {
                return fail(errc::key_not_ready);
            }
        }
        if (auto copied = copy_key(r, out); !copied) {
            return fail(copied.error());
        }
    }
    const std::uint32_t key_bytes = r.key_bits / 8;
    r.delivered_mask = static_cast<std::uint8_t>(r.delivered_mask | (1u << slave));
    std::byte entry[17];
    std::memcpy(entry, id.bytes.data(), 16);
    entry[16] = static_cast<std::byte>(slave);
    journal_batch_add(journal_deliver_batch, nullptr, 0, entry, sizeof entry);
    if (r.delivered_mask == (1u << r.slave_count) - 1) {
        consume_reservation(e - 1, block_state::delivered, true);
    }
    return delivered_key{key_bytes, next_ticket()};
}

result<std::uint64_t> stream::expire_key(const key_id& id) noexcept {
    const std::uint32_t e = index_find(id);
    if (e == 0) {
        return fail(errc::unknown_key);
    }
    journal_batch_add(journal_expire_batch, nullptr, 0, id.bytes.data(), 16);
    consume_reservation(e - 1, block_state::expired, true);
    return next_ticket();
}

result<std::uint32_t> stream::read_key(const key_id& id, std::span<std::byte> out) noexcept {
    const std::uint32_t e = index_find(id);
    if (e == 0) {
        return fail(errc::unknown_key);
    }
    const reservation& r = _slots[e - 1];
    if (out.size() < r.key_bits / 8) {
        return fail(errc::invalid_argument);
    }
    for (std::size_t i = 0; i < r.run_count; ++i) {
        if (r.runs[i].first + std::uint64_t{r.runs[i].count - 1} * _own.stride >= _ingested) {
            return fail(errc::key_not_ready);
        }
    }
    if (auto copied = copy_key(r, out); !copied) {
        return fail(copied.error());
    }
    return r.key_bits / 8;
}

result<void> stream::read_block(seq_t seq, std::span<std::byte> out) noexcept {
    if (out.size() < _block_bytes || seq < _base || seq >= _ingested) {
        return fail(errc::invalid_argument);
    }
    auto slot = load_chunk(seq / _blocks_per_chunk);
    if (!slot) {
        return fail(slot.error());
    }
    std::memcpy(out.data(), (*slot)->plain + (seq % _blocks_per_chunk) * _block_bytes,
                _block_bytes);
    return {};
}

result<key_view> stream::find_key(const key_id& id) const noexcept {
    const std::uint32_t e = index_find(id);
    if (e == 0) {
        return fail(errc::unknown_key);
    }
    const reservation& r = _slots[e - 1];
    key_view v;
    v.master = r.master;
    v.key_bits = r.key_bits;
    v.slave_count = r.slave_count;
    v.slaves = r.slaves;
    v.delivered_mask = r.delivered_mask;
    return v;
}

bool stream::key_ready(const key_id& id) const noexcept {
    const std::uint32_t e = index_find(id);
    if (e == 0) {
        return false;
    }
    const reservation& r = _slots[e - 1];
    for (std::size_t i = 0; i < r.run_count; ++i) {
        if (r.runs[i].first + std::uint64_t{r.runs[i].count - 1} * _own.stride >= _ingested) {
            return false;
        }
    }
    return true;
}

std::size_t stream::key_ids(std::vector<key_id>& out) const {
    std::size_t n = 0;
    for (const reservation& r : _slots) {
        if (r.used) {
            out.push_back(r.id);
            ++n;
        }
    }
    return n;
}

result<std::uint32_t> stream::key_seqs(const key_id& id, std::span<seq_t> out) const noexcept {
    const std::uint32_t e = index_find(id);
    if (e == 0) {
        return fail(errc::unknown_key);
    }
    const reservation& r = _slots[e - 1];
    std::uint32_t n = 0;
    for (std::size_t i = 0; i < r.run_count; ++i) {
        for (std::uint32_t k = 0; k < r.runs[i].count && n < out.size(); ++k) {
            out[n++] = r.runs[i].first + std::uint64_t{k} * _own.stride;
        }
    }
    return n;
}

// --- commit -------------------------------------------------------------------------------------

bool stream::has_pending() const noexcept {
    // A compaction being written, or a replaced generation the next meta removes: an idle
    // stream's periodic commit finishes them.
    if (_meta_dirty || !_journal_pending.empty() || !_stage_chunks.empty() || _compact_fd >= 0 ||
        _stale_gen_pending || !_wipe_pending.empty() || !_unlink_pending.empty() ||
        _ingested > _ingested_synced) {
        return true;
    }
    return std::any_of(_cache.begin(), _cache.end(),
                       [](const cache_slot& s) { return s.used && s.dirty; });
}

result<void> stream::wipe_block(seq_t seq) noexcept {
    if (seq < _base || seq >= _ingested) {
        return {}; // reclaimed, or never arrived (append wipes it on arrival)
    }
    auto slot = load_chunk(seq / _blocks_per_chunk);
    if (!slot) {
        return fail(slot.error());
    }
    if ((seq % _blocks_per_chunk) >= (*slot)->block_count) {
        return {};
    }
    secure_wipe((*slot)->plain + (seq % _blocks_per_chunk) * _block_bytes, _block_bytes);
    (*slot)->dirty = true;
    return {};
}

void stream::try_reclaim() noexcept {
    for (;;) {
        const std::uint64_t number = _base / _blocks_per_segment;
        const std::size_t ring = number % _segments.size();
        if (_segment_consumed[ring] < _blocks_per_segment ||
            _ingested < _base + _blocks_per_segment) {
            return;
        }
        for (auto& slot : _cache) {
            if (slot.used && slot.chunk / _segment_chunks == number) {
                secure_wipe(slot.plain, chunk_payload_bytes);
                slot.used = false;
                slot.dirty = false;
                slot.pinned = false;
                slot.chunk = ~std::uint64_t{0};
            }
        }
        segment& seg = _segments[ring];
        if (seg.number == number) {
            if (seg.map != nullptr) {
                ::munmap(const_cast<std::byte*>(seg.map), seg.map_bytes);
            }
            if (seg.fd >= 0) {
                std::erase(_dirty_fds, seg.fd);
                ::close(seg.fd);
            }
            seg = segment{};
        }
        for (seq_t seq = _base; seq < _base + _blocks_per_segment; ++seq) {
            state_ref(seq) = block_state::absent;
        }
        _segment_consumed[ring] = 0;
        _unlink_pending.push_back(number);
        _base += _blocks_per_segment;
        _next_lease = std::max(_next_lease, _own.first_owned_from(_base));
        _meta_dirty = true;
    }
}

result<std::uint64_t> stream::commit() noexcept {
    if (!has_pending()) {
        return _commits_done;
    }
    // 1. Data: the tail chunk and every re-sealed chunk, then the journal records.
    for (auto& slot : _cache) {
        if (slot.used && slot.dirty) {
            if (auto r = seal_and_stage(slot); !r) {
                return fail(r.error());
            }
        }
    }
    if (auto r = flush_stage(); !r) {
        return fail(r.error());
    }
    journal_close();
    const std::uint64_t journal_end = _journal_durable + _journal_pending.size();
    if (!_journal_pending.empty()) {
        if (auto r = write_all(_journal_fd, _journal_pending.data(), _journal_pending.size(),
                               _journal_durable);
            !r) {
            KEYRAIL_LOG(error, "store", "%s/journal offset %" PRIu64 ": write failed: %s",
                        _dir.c_str(), _journal_durable, r.error().message().c_str());
            return fail(r.error());
        }
    }
    // 2. fdatasync the data before the meta that makes it reachable (power mode).
    for (const int fd : _dirty_fds) {
        if (auto r = sync(fd); !r) {
            return fail(r.error());
        }
    }
    _dirty_fds.clear();
    if (!_journal_pending.empty()) {
        if (auto r = sync(_journal_fd); !r) {
            return fail(r.error());
        }
    }
    // 3. Meta slot txn % 2, fdatasync: the commit point.
    _ingested_synced = _ingested_written;
    // When half the lease headroom is used, the commit's meta raises the bound for free, so
    // grants under steady load never wait for a meta write of their own. A restart skips at
    // most the headroom beyond the last lease actually handed out.
    const std::uint64_t headroom = std::uint64_t{_lease_headroom} * _own.stride;
    const std::uint64_t lease_high =
        _leased && headroom > 0 && _next_lease + headroom / 2 > _lease_high ? _next_lease + headroom
                                                                            : _lease_high;
    const std::uint64_t nonce_high = std::max(_nonce_high, _nonce_next + nonce_headroom / 2);
    if (auto r = write_meta(journal_end, lease_high, nonce_high); !r) {
        return fail(r.error());
    }
    _journal_durable = journal_end;
    if (_compact_fd >= 0 && !_journal_pending.empty()) {
        // The next generation gets them too, after its snapshot (written there in steps).
        if (auto r = write_all(_compact_fd, _journal_pending.data(), _journal_pending.size(),
                               _compact_data.size() + _compact_tail);
            r) {
            _compact_tail += _journal_pending.size();
        } else {
            compaction_failed(r.error()); // this commit stands: the old journal and meta have it
        }
    }
    _journal_pending.clear();
    ++_commits_done;
    // 4. After the commit point: drop reclaimed segments and wipe delivered and expired
    // blocks in memory. Their re-sealed chunks go to disk with step 1 of the next commit
    // (has_pending() says so, so an idle node's periodic commit writes them soon); a crash
    // before that re-wipes them at open from the journal. One write per commit fewer.
    for (const std::uint64_t number : _unlink_pending) {
        ::unlink(segment_path(number).c_str());
    }
    _unlink_pending.clear();
    for (const seq_t seq : _wipe_pending) {
        if (auto r = wipe_block(seq); !r) {
            KEYRAIL_LOG(warn, "store", "%s: wipe of seq %" PRIu64 " skipped: %s", _dir.c_str(), seq,
                        r.error().message().c_str());
        }
    }
    _wipe_pending.clear();
    try_reclaim();
    maybe_compact();
    return _commits_done;
}

stream_status stream::status() const noexcept {
    stream_status s;
    s.available_blocks = _available;
    const seq_t from = _own.first_owned_from(std::max(_next_lease, _base));
    s.owned_available_blocks =
        from < _ingested ? (_ingested - from + _own.stride - 1) / _own.stride : 0;
    s.capacity_blocks = _capacity;
    s.ingested = _ingested;
    s.next_lease = _next_lease;
    s.reservations = _reservations;
    s.block_bytes = _block_bytes;
    s.compacting = _compact_fd >= 0;
    return s;
}

} // namespace keyrail::dataplane
