#pragma once
// Shared by the store's tests: a temporary store directory (mkdtemp under /tmp, removed
// afterwards), a master key in an environment variable, deterministic block contents.
#include "dataplane/store/key_store.h"
#include "dataplane/store/stream.h"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace keyrail::test {

inline constexpr const char* store_master_env = "KEYRAIL_TEST_STORE_MASTER";
inline constexpr const char* store_master_hex =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

class temp_dir {
public:
    temp_dir() {
        char templ[] = "/tmp/keyrail-store-XXXXXX";
        const char* made = ::mkdtemp(templ);
        _path = made != nullptr ? made : "";
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(_path, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    [[nodiscard]] const std::string& path() const { return _path; }

private:
    std::string _path;
};

inline dataplane::store_config small_config(const std::string& dir) {
    ::setenv(store_master_env, store_master_hex, 1);
    dataplane::store_config c;
    c.dir = dir + "/store";
    c.master_key = {dataplane::master_key_source::kind::env, store_master_env};
    c.mode = dataplane::durability::process;
    c.block_bytes = 32;
    c.segment_chunks = 2;     // 252 blocks per segment: boundaries come quickly
    c.capacity_blocks = 1000; // rounded up to 4 segments = 1008 blocks
    c.reservations_max = 256;
    c.lease_headroom = 0; // exact lease bounds: a restart skips nothing (tested separately)
    c.chunk_cache = 8;
    return c;
}

// Block i of a test stream: bytes derived from the seq, so any block is checkable.
inline void fill_block(std::uint64_t seq, std::byte* out, std::size_t block_bytes) {
    for (std::size_t i = 0; i < block_bytes; ++i) {
        out[i] = static_cast<std::byte>((seq * 131 + i * 7 + 1) & 0xff);
    }
}

inline std::vector<std::byte> make_blocks(std::uint64_t first, std::uint64_t count,
                                          std::size_t block_bytes) {
    std::vector<std::byte> v(count * block_bytes);
    for (std::uint64_t k = 0; k < count; ++k) {
        fill_block(first + k, v.data() + k * block_bytes, block_bytes);
    }
    return v;
}

} // namespace keyrail::test
