// Writes the seed corpus of proto_frame_fuzz: one valid frame of every message type (from
// tests/support/proto_frames.h) plus two frames back to back, each file named by the SHA-256
// of its contents. Run by hand after a schema change:
//   build/<preset>/tests/fuzz/proto_corpus_gen tests/fuzz/corpus/proto_frame_fuzz
#include <openssl/sha.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/support/proto_frames.h"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
        return 2;
    }
    const std::filesystem::path dir(argv[1]);
    std::filesystem::create_directories(dir);
    auto frames = keyrail::test::sample_frames();
    keyrail::test::bytes pair = frames[2];
    pair.insert(pair.end(), frames[6].begin(), frames[6].end());
    frames.push_back(pair);
    for (const auto& f : frames) {
        unsigned char digest[SHA256_DIGEST_LENGTH];
        SHA256(reinterpret_cast<const unsigned char*>(f.data()), f.size(), digest);
        char name[2 * SHA256_DIGEST_LENGTH + 1];
        for (int i = 0; i < SHA256_DIGEST_LENGTH; ++i) {
            std::snprintf(name + 2 * i, 3, "%02x", digest[i]);
        }
        std::ofstream out(dir / name, std::ios::binary);
        out.write(reinterpret_cast<const char*>(f.data()), static_cast<std::streamsize>(f.size()));
        std::printf("%s %zu bytes\n", name, f.size());
    }
    return 0;
}
