// Suite `store`: the key store's throughput against baselines measured in the same run.
//   ingest_encrypted          bytes/s appending blocks (sealed in 4 KiB chunks, written to the
//                             page cache), vs AES-256-GCM bytes/s on 16 KiB buffers.
//   durable_single_key_store  128-bit keys stored and reserved per second in `power` mode with
//                             group commit (the Vault workload), vs serial fdatasync/s on the
//                             same file system.
//   lease_reserve_deliver     keys/s through lease -> reserve -> deliver -> wipe on one shard
//                             (process mode, group commit every 256 keys), vs an in-memory
//                             key table doing the same logical steps with no durability or
//                             encryption (pooled DRBG key ID, hash insert, find, copy, erase,
//                             cleanse): what the store's bookkeeping, journal and re-sealing
//                             cost over the bare minimum.
// Each value is the median of 3 runs. --smoke shrinks every input.
#include "bench/support/report.h"
#include "dataplane/store/key_store.h"
#include "dataplane/store/stream.h"
#include "engine/secure.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <openssl/evp.h>
#include <openssl/rand.h>

namespace {

using namespace keyrail::dataplane;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double median3(double a, double b, double c) {
    std::array<double, 3> v{a, b, c};
    std::sort(v.begin(), v.end());
    return v[1];
}

[[noreturn]] void die(const char* what, const std::error_code& e) {
    std::fprintf(stderr, "store bench: %s: %s\n", what, e.message().c_str());
    std::exit(1);
}

class bench_dir {
public:
    bench_dir() {
        char templ[] = "/tmp/keyrail-store-bench-XXXXXX";
        const char* made = ::mkdtemp(templ);
        if (made == nullptr) {
            std::perror("mkdtemp");
            std::exit(1);
        }
        _path = made;
    }
    ~bench_dir() {
        std::error_code ec;
        std::filesystem::remove_all(_path, ec);
    }
    const std::string& path() const { return _path; }

private:
    std::string _path;
};

struct opened_stream {
    std::unique_ptr<key_store> store;
    stream* s = nullptr;
};

opened_stream open_stream(const std::string& dir, durability mode, std::uint64_t capacity,
                          std::uint32_t reservations) {
    ::setenv("KEYRAIL_BENCH_STORE_MASTER",
             "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0", 1);
    store_config c;
    c.dir = dir + "/store";
    c.master_key = {master_key_source::kind::env, "KEYRAIL_BENCH_STORE_MASTER"};
    c.mode = mode;
    c.capacity_blocks = capacity;
    c.reservations_max = reservations;
    c.segment_chunks = 4096;
    auto store = key_store::open(c);
    if (!store) {
        die("open", store.error());
    }
    auto s = (*store)->create_stream(stream_id{1}, ownership{});
    if (!s) {
        die("create_stream", s.error());
    }
    return {std::move(*store), *s};
}

std::vector<std::byte> random_bytes(std::size_t n) {
    std::vector<std::byte> v(n);
    RAND_bytes(reinterpret_cast<unsigned char*>(v.data()), static_cast<int>(n));
    return v;
}

// --- ingest ------------------------------------------------------------------------------------

double ingest_once(std::uint64_t total_bytes) {
    bench_dir dir;
    const std::uint64_t blocks = total_bytes / 32;
    auto o = open_stream(dir.path(), durability::process, blocks + 65536, 64);
    const auto batch = random_bytes(4096 * 32); // 128 KiB of blocks per append
    const auto t0 = clock_type::now();
    for (std::uint64_t done = 0; done < total_bytes; done += batch.size()) {
        if (auto r = o.s->append(batch); !r) {
            die("append", r.error());
        }
        if ((done / batch.size()) % 64 == 63) {
            if (auto r = o.s->commit(); !r) {
                die("commit", r.error());
            }
        }
    }
    if (auto r = o.s->commit(); !r) {
        die("commit", r.error());
    }
    return static_cast<double>(total_bytes) / seconds_since(t0);
}

double gcm_reference_once(std::uint64_t total_bytes) {
    std::array<unsigned char, 32> key{};
    RAND_bytes(key.data(), key.size());
    auto in = random_bytes(16384);
    std::vector<unsigned char> out(16384);
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), nullptr);
    std::array<unsigned char, 12> iv{};
    std::array<unsigned char, 16> tag{};
    std::uint64_t counter = 0;
    std::uint64_t sink = 0;
    const auto t0 = clock_type::now();
    for (std::uint64_t done = 0; done < total_bytes; done += in.size()) {
        ++counter;
        std::memcpy(iv.data() + 4, &counter, 8);
        int len = 0;
        EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, iv.data());
        EVP_EncryptUpdate(ctx, out.data(), &len, reinterpret_cast<unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
        EVP_EncryptFinal_ex(ctx, out.data() + len, &len);
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag.data());
        sink += tag[0];
    }
    const double rate = static_cast<double>(total_bytes) / seconds_since(t0);
    EVP_CIPHER_CTX_free(ctx);
    if (sink == 0xffffffffffffffffull) {
        std::puts("");
    }
    return rate;
}

// --- durable single keys (Vault workload) ------------------------------------------------------

double durable_keys_once(std::uint64_t keys, std::uint32_t group) {
    bench_dir dir;
    auto o = open_stream(dir.path(), durability::power, keys + 65536,
                         static_cast<std::uint32_t>(keys + 16));
    const auto material = random_bytes(std::size_t{group} * 32);
    const std::array<sae_id, 1> slaves{sae_id{2}};
    std::array<std::byte, 16> key{};
    const auto t0 = clock_type::now();
    for (std::uint64_t done = 0; done < keys; done += group) {
        // One group commit: `group` keys stored (one 256-bit block each, the tail wiped on
        // delivery) and reserved, acknowledged together after one set of fdatasyncs.
        if (auto r = o.s->append(material); !r) {
            die("append", r.error());
        }
        for (std::uint32_t i = 0; i < group; ++i) {
            auto r = o.s->reserve({128, sae_id{1}, slaves}, key);
            if (!r) {
                die("reserve", r.error());
            }
        }
        if (auto r = o.s->commit(); !r) {
            die("commit", r.error());
        }
    }
    keyrail::secure_wipe(key.data(), key.size());
    return static_cast<double>(keys) / seconds_since(t0);
}

double fdatasync_reference_once(std::uint64_t syncs) {
    bench_dir dir;
    const std::string path = dir.path() + "/sync";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    std::array<char, 4096> page{};
    const auto t0 = clock_type::now();
    for (std::uint64_t i = 0; i < syncs; ++i) {
        page[0] = static_cast<char>(i);
        if (::pwrite(fd, page.data(), page.size(), 0) != static_cast<ssize_t>(page.size()) ||
            ::fdatasync(fd) != 0) {
            std::perror("fdatasync");
            std::exit(1);
        }
    }
    const double rate = static_cast<double>(syncs) / seconds_since(t0);
    ::close(fd);
    return rate;
}

// --- lease -> reserve -> deliver -> wipe ------------------------------------------------------

double lease_path_once(std::uint64_t keys) {
    bench_dir dir;
    auto o = open_stream(dir.path(), durability::process, keys + 65536, 4096);
    const auto material = random_bytes(keys * 32);
    if (auto r = o.s->append(material); !r) {
        die("append", r.error());
    }
    if (auto r = o.s->commit(); !r) {
        die("commit", r.error());
    }
    const std::array<sae_id, 1> slaves{sae_id{2}};
    std::array<std::byte, 32> out{};
    std::array<std::byte, 32> got{};
    std::uint64_t sink = 0;
    const auto t0 = clock_type::now();
    std::uint64_t done = 0;
    key_id_pool ids; // the serving shard's key ID source
    while (done < keys) {
        auto l = o.s->grant(64);
        if (!l) {
            die("grant", l.error());
        }
        for (seq_t seq = l->first; seq < l->end; ++seq) {
            auto id = ids.next();
            auto t = o.s->reserve_specific(*id, {256, sae_id{1}, slaves},
                                           std::span<const seq_t>(&seq, 1), out);
            if (!t) {
                die("reserve_specific", t.error());
            }
            auto d = o.s->deliver(*id, sae_id{2}, got);
            if (!d) {
                die("deliver", d.error());
            }
            sink += static_cast<unsigned>(got[0]);
            keyrail::secure_wipe(out.data(), out.size());
            keyrail::secure_wipe(got.data(), got.size());
            if (++done % 256 == 0) {
                if (auto r = o.s->commit(); !r) {
                    die("commit", r.error());
                }
            }
        }
    }
    if (auto r = o.s->commit(); !r) {
        die("commit", r.error());
    }
    const double rate = static_cast<double>(keys) / seconds_since(t0);
    if (sink == 1) {
        std::puts("");
    }
    return rate;
}

struct id_hash {
    std::size_t operator()(const std::array<std::byte, 16>& k) const noexcept {
        std::size_t h = 0;
        std::memcpy(&h, k.data() + 8, sizeof h);
        return h;
    }
};

double in_memory_reference_once(std::uint64_t keys) {
    const auto material = random_bytes(keys * 32);
    std::unordered_map<std::array<std::byte, 16>, std::array<std::byte, 32>, id_hash> table;
    table.reserve(4096);
    std::array<std::byte, 32> got{};
    std::uint64_t sink = 0;
    key_id_pool ids;
    const auto t0 = clock_type::now();
    for (std::uint64_t i = 0; i < keys; ++i) {
        const std::array<std::byte, 16> id = ids.next()->bytes;
        std::array<std::byte, 32> block{};
        std::memcpy(block.data(), material.data() + i * 32, 32);
        auto [it, inserted] = table.emplace(id, block);
        (void)inserted;
        auto found = table.find(id);
        std::memcpy(got.data(), found->second.data(), 32);
        keyrail::secure_wipe(found->second.data(), 32);
        table.erase(found);
        sink += static_cast<unsigned>(got[0]);
        keyrail::secure_wipe(got.data(), got.size());
        keyrail::secure_wipe(block.data(), block.size());
        (void)it;
    }
    const double rate = static_cast<double>(keys) / seconds_since(t0);
    if (sink == 1) {
        std::puts("");
    }
    return rate;
}

void pin_cpu0() {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    (void)sched_setaffinity(0, sizeof set, &set);
}

} // namespace

int main(int argc, char** argv) {
    const auto args = keyrail::bench::parse_suite_args(argc, argv);
    // --only NAME runs one metric (profiling); the JSON then holds just that row.
    std::string only;
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::string(argv[i]) == "--only") {
            only = argv[i + 1];
        }
    }
    auto wanted = [&](const char* name) { return only.empty() || only == name; };
    pin_cpu0();
    const char* commit = std::getenv("KEYRAIL_COMMIT");
    std::printf("store bench: commit %s, %s, 1 shard pinned to cpu 0%s\n",
                commit != nullptr ? commit : "unknown", keyrail::bench::cpu_model().c_str(),
                args.smoke ? ", smoke" : "");
    keyrail::bench::report report("store");

    const std::uint64_t ingest_bytes = args.smoke ? (1u << 20) : (256u << 20);
    if (wanted("ingest_encrypted")) {
        const double value = median3(ingest_once(ingest_bytes), ingest_once(ingest_bytes),
                                     ingest_once(ingest_bytes));
        const double reference =
            median3(gcm_reference_once(ingest_bytes), gcm_reference_once(ingest_bytes),
                    gcm_reference_once(ingest_bytes));
        report.add({"ingest_encrypted", value, "bytes/s"},
                   {"aes_256_gcm_16k", reference, "bytes/s"});
    }

    // Group commit size: the keys acknowledged per set of fdatasyncs (the home shard commits
    // whatever arrived while the previous commit was syncing; 4096 is a loaded shard).
    const std::uint64_t durable_keys = args.smoke ? 4096 : 1u << 20;
    const std::uint32_t group = 4096;
    const std::uint64_t syncs = args.smoke ? 20 : 500;
    if (wanted("durable_single_key_store")) {
        const double value =
            median3(durable_keys_once(durable_keys, group), durable_keys_once(durable_keys, group),
                    durable_keys_once(durable_keys, group));
        const double reference =
            median3(fdatasync_reference_once(syncs), fdatasync_reference_once(syncs),
                    fdatasync_reference_once(syncs));
        report.add({"durable_single_key_store", value, "keys/s"},
                   {"serial_fdatasync", reference, "syncs/s"});
    }

    const std::uint64_t path_keys = args.smoke ? 4096 : 1u << 20;
    if (wanted("lease_reserve_deliver")) {
        const double value = median3(lease_path_once(path_keys), lease_path_once(path_keys),
                                     lease_path_once(path_keys));
        const double reference =
            median3(in_memory_reference_once(path_keys), in_memory_reference_once(path_keys),
                    in_memory_reference_once(path_keys));
        report.add({"lease_reserve_deliver", value, "keys/s"},
                   {"in_memory_key_table", reference, "keys/s"});
    }
    if (!args.out.empty() && !report.write(args.out)) {
        return 1;
    }
    return 0;
}
