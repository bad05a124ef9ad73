// Store recovery from arbitrary bytes: a small valid stream is built once; each input replaces
// one of its files (first byte: 0 meta, 1 journal, 2 segment 0, 3 segment header only, else
// patches bytes at an offset of segment 1) and the store is reopened. Opening must fail with a
// result or succeed and serve; it must never crash, hang or read out of bounds.
#include "dataplane/store/key_store.h"
#include "dataplane/store/stream.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

using namespace keyrail::dataplane;

struct fixture {
    std::string root;
    store_config config;
    std::vector<std::pair<std::string, std::vector<char>>> files; // relative path, bytes
};

void remove_root(const std::string& root) {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
}

fixture* g_fixture = nullptr;

void cleanup() {
    if (g_fixture != nullptr) {
        remove_root(g_fixture->root);
    }
}

fixture& get_fixture() {
    if (g_fixture != nullptr) {
        return *g_fixture;
    }
    static fixture f;
    char templ[] = "/tmp/keyrail-store-fuzz-XXXXXX";
    const char* made = ::mkdtemp(templ);
    if (made == nullptr) {
        std::abort();
    }
    f.root = made;
    ::setenv("KEYRAIL_FUZZ_STORE_MASTER",
             "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100", 1);
    f.config.dir = f.root + "/store";
    f.config.master_key = {master_key_source::kind::env, "KEYRAIL_FUZZ_STORE_MASTER"};
    f.config.mode = durability::process;
    f.config.segment_chunks = 2;
    f.config.capacity_blocks = 1000;
    f.config.reservations_max = 64;
    f.config.lease_headroom = 4;
    f.config.chunk_cache = 4;
    {
        auto store = key_store::open(f.config);
        if (!store) {
            std::abort();
        }
        stream* s = *(*store)->create_stream(stream_id{1}, ownership{});
        std::vector<std::byte> blocks(300 * 32, std::byte{0x5a});
        (void)s->append(blocks);
        const std::array<sae_id, 1> slaves{sae_id{2}};
        std::array<std::byte, 64> key{};
        for (int i = 0; i < 5; ++i) {
            (void)s->reserve({512, sae_id{1}, slaves}, key);
        }
        (void)s->commit();
        auto r = s->reserve({256, sae_id{1}, slaves}, key);
        (void)s->commit();
        (void)s->deliver(r->id, sae_id{2}, key);
        (void)s->commit();
    }
    const std::string sdir = "store/stream-00000001/";
    for (const char* name : {"meta", "journal", "seg-0000000000000000", "seg-0000000000000001"}) {
        std::ifstream in(f.root + "/" + sdir + name, std::ios::binary);
        f.files.emplace_back(sdir + name, std::vector<char>(std::istreambuf_iterator<char>(in),
                                                            std::istreambuf_iterator<char>()));
    }
    g_fixture = &f;
    std::atexit(cleanup);
    return f;
}

// Overwrites in place and then sets the length: truncating to zero first would make ext4
// (auto_da_alloc) start writeback on close, which costs milliseconds per run.
void write_file(const std::string& path, const char* data, std::size_t size) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0600);
    if (fd < 0) {
        std::abort();
    }
    if (size > 0 && ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) {
        std::abort();
    }
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
        std::abort();
    }
    ::close(fd);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fixture& f = get_fixture();
    for (const auto& [rel, bytes] : f.files) {
        write_file(f.root + "/" + rel, bytes.data(), bytes.size());
    }
    if (size == 0) {
        return 0;
    }
    const auto* input = reinterpret_cast<const char*>(data + 1);
    const std::size_t input_size = std::min<std::size_t>(size - 1, 64 * 1024);
    const unsigned which = data[0] % 5;
    if (which < 3) {
        write_file(f.root + "/" + f.files[which].first, input, input_size);
    } else if (which == 3) {
        std::vector<char> seg = f.files[2].second;
        std::memcpy(seg.data(), input, std::min(input_size, seg.size()));
        write_file(f.root + "/" + f.files[2].first, seg.data(), seg.size());
    } else {
        std::vector<char> seg = f.files[3].second;
        if (input_size >= 2 && !seg.empty()) {
            std::size_t at =
                (static_cast<std::uint8_t>(input[0]) * 256u + static_cast<std::uint8_t>(input[1])) %
                seg.size();
            for (std::size_t i = 2; i < input_size && at < seg.size(); ++i, ++at) {
                seg[at] = input[i];
            }
        }
        write_file(f.root + "/" + f.files[3].first, seg.data(), seg.size());
    }
    auto store = key_store::open(f.config);
    if (store) {
        auto s = (*store)->find(stream_id{1});
        if (s) {
            // Serve what is left: status, a reservation, a commit.
            (void)(*s)->status();
            const std::array<sae_id, 1> slaves{sae_id{2}};
            std::array<std::byte, 32> key{};
            (void)(*s)->reserve({256, sae_id{1}, slaves}, key);
            (void)(*s)->commit();
        }
    }
    return 0;
}
