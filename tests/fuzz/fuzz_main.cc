// Standalone driver for fuzz targets when libFuzzer is not in the build (g++ presets).
// It replays every file under the given corpus paths, then feeds seeded random inputs and
// mutations of the corpus (bit flips, truncations, splices, inserted bytes). The seed comes
// from KEYRAIL_SEED (printed), the count from KEYRAIL_FUZZ_RUNS (default 20000), so a failing
// run replays exactly. The clang `fuzz` preset links libFuzzer instead of this file.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::vector<std::vector<std::uint8_t>> load_corpus(int argc, char** argv) {
    std::vector<std::vector<std::uint8_t>> corpus;
    for (int i = 1; i < argc; ++i) {
        std::filesystem::path root(argv[i]);
        std::error_code ec;
        std::vector<std::filesystem::path> files;
        if (std::filesystem::is_directory(root, ec)) {
            for (const auto& entry : std::filesystem::recursive_directory_iterator(root, ec)) {
                if (entry.is_regular_file()) {
                    files.push_back(entry.path());
                }
            }
        } else if (std::filesystem::is_regular_file(root, ec)) {
            files.push_back(root);
        }
        for (const auto& file : files) {
            std::ifstream in(file, std::ios::binary);
            corpus.emplace_back(std::istreambuf_iterator<char>(in),
                                std::istreambuf_iterator<char>());
        }
    }
    return corpus;
}

std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
    const char* v = std::getenv(name);
    return v != nullptr ? std::strtoull(v, nullptr, 10) : fallback;
}

} // namespace

int main(int argc, char** argv) {
    auto corpus = load_corpus(argc, argv);
    std::random_device rd;
    const std::uint64_t seed = env_u64("KEYRAIL_SEED", (std::uint64_t{rd()} << 32) | rd());
    const std::uint64_t runs = env_u64("KEYRAIL_FUZZ_RUNS", 20000);
    std::printf("fuzz: %zu corpus inputs, %llu generated runs, KEYRAIL_SEED=%llu\n",
                corpus.size(), static_cast<unsigned long long>(runs),
                static_cast<unsigned long long>(seed));
    std::fflush(stdout);
    for (const auto& input : corpus) {
        LLVMFuzzerTestOneInput(input.data(), input.size());
    }
    std::mt19937_64 rng(seed);
    std::vector<std::uint8_t> buf;
    for (std::uint64_t run = 0; run < runs; ++run) {
        if (!corpus.empty() && rng() % 4 != 0) {
            buf = corpus[rng() % corpus.size()];
            const auto mutations = 1 + rng() % 8;
            for (std::uint64_t m = 0; m < mutations; ++m) {
                switch (rng() % 5) {
                case 0: // flip a bit
                    if (!buf.empty()) {
                        buf[rng() % buf.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
                    }
                    break;
                case 1: // truncate
                    if (!buf.empty()) {
                        buf.resize(rng() % buf.size());
                    }
                    break;
                case 2: // insert a random byte
                    buf.insert(buf.begin() + static_cast<std::ptrdiff_t>(rng() % (buf.size() + 1)),
                               static_cast<std::uint8_t>(rng()));
                    break;
                case 3: // overwrite with an interesting byte
                    if (!buf.empty()) {
                        static constexpr std::uint8_t interesting[] = {0,    0xff, 0x7f, 0x80,
                                                                       '\r', '\n', ':',  '"',
                                                                       '{',  '}',  '0',  '9'};
                        buf[rng() % buf.size()] = interesting[rng() % sizeof interesting];
                    }
                    break;
                default: // splice another corpus entry
                {
                    const auto& other = corpus[rng() % corpus.size()];
                    const auto cut = buf.empty() ? 0 : rng() % buf.size();
                    buf.resize(cut);
                    buf.insert(buf.end(), other.begin(), other.end());
                    break;
                }
                }
            }
        } else {
            buf.resize(rng() % 4096);
            for (auto& b : buf) {
                b = static_cast<std::uint8_t>(rng());
            }
        }
        LLVMFuzzerTestOneInput(buf.data(), buf.size());
    }
    std::printf("fuzz: done\n");
    return 0;
}
