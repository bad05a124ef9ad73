#include "drivers/sim/sim_link.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <set>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

namespace keyrail::drivers::sim {
namespace {

constexpr std::uint64_t ms = 1'000'000;
constexpr std::uint64_t s = 1'000'000'000;

std::vector<std::uint8_t> secret_of(std::uint8_t fill) {
    std::vector<std::uint8_t> v(32);
    for (std::size_t i = 0; i < v.size(); ++i) {
        v[i] = static_cast<std::uint8_t>(fill + i);
    }
    return v;
}

sim_link_config config_of(const std::vector<std::uint8_t> &secret) {
    sim_link_config c;
    c.link_id = "a-b";
    c.secret = secret;
    c.block_bytes = 32;
    c.rate_bps = 100'000;
    c.burst_blocks = 16;
    c.jitter_percent = 20;
    c.seed = 7;
    return c;
}

sim_link make(const sim_link_config &c) {
    auto link = sim_link::create(c);
    EXPECT_TRUE(link);
    return std::move(*link);
}

// Every block up to t_end, polling every step, in sequence order.
std::vector<std::uint8_t> run(sim_link &link, std::uint64_t t_end, std::uint64_t step) {
    std::vector<std::uint8_t> all;
    std::vector<std::uint8_t> buf(link.block_bytes() * 64);
    for (std::uint64_t t = 0; t <= t_end; t += step) {
        std::size_t n = 0;
        do {
            n = link.produce(t, buf, 64);
            all.insert(all.end(), buf.begin(),
                       buf.begin() + static_cast<std::ptrdiff_t>(n * link.block_bytes()));
        } while (n == 64);
    }
    return all;
}

TEST(sim_link, same_secret_gives_identical_blocks) {
    const auto secret = secret_of(1);
    sim_link a = make(config_of(secret));
    auto other = config_of(secret);
    other.seed = 99; // the two devices deliver with different timing
    sim_link b = make(other);
    const auto blocks_a = run(a, 2 * s, 7 * ms);
    const auto blocks_b = run(b, 2 * s, 3 * ms);
    ASSERT_GT(blocks_a.size(), 0u);
    const std::size_t common = std::min(blocks_a.size(), blocks_b.size());
    EXPECT_TRUE(std::equal(blocks_a.begin(), blocks_a.begin() + static_cast<std::ptrdiff_t>(common),
                           blocks_b.begin()));
    EXPECT_EQ(a.key_confirmation(), b.key_confirmation());
}

TEST(sim_link, different_secret_or_link_id_differs) {
    const auto s1 = secret_of(1);
    const auto s2 = secret_of(2);
    sim_link a = make(config_of(s1));
    sim_link b = make(config_of(s2));
    auto renamed = config_of(s1);
    renamed.link_id = "a-c";
    sim_link c = make(renamed);
    auto resized = config_of(s1);
    resized.block_bytes = 64;
    sim_link d = make(resized);
    EXPECT_NE(a.key_confirmation(), b.key_confirmation());
    EXPECT_NE(a.key_confirmation(), c.key_confirmation());
    EXPECT_NE(a.key_confirmation(), d.key_confirmation());
    const auto blocks_a = run(a, s, 10 * ms);
    const auto blocks_b = run(b, s, 10 * ms);
    const auto blocks_c = run(c, s, 10 * ms);
    ASSERT_EQ(blocks_a.size(), blocks_b.size());
    EXPECT_NE(blocks_a, blocks_b);
    EXPECT_NE(blocks_a, blocks_c);
}

// The documented derivation, computed here through a different OpenSSL interface
// (EVP_PKEY HKDF and one-shot AES-CTR), so the two ends of a link can be written
// independently and still agree.
std::array<std::uint8_t, 64> reference_okm(const std::vector<std::uint8_t> &secret,
                                           const std::string &link_id) {
    std::array<std::uint8_t, 64> okm{};
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
    EXPECT_EQ(EVP_PKEY_derive_init(ctx), 1);
    EXPECT_EQ(EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()), 1);
    EXPECT_EQ(EVP_PKEY_CTX_set1_hkdf_key(ctx, secret.data(), static_cast<int>(secret.size())), 1);
    const std::string info = "keyrail sim link" + link_id;
    EXPECT_EQ(EVP_PKEY_CTX_add1_hkdf_info(ctx, reinterpret_cast<const unsigned char *>(info.data()),
                                          static_cast<int>(info.size())),
              1);
    std::size_t len = okm.size();
    EXPECT_EQ(EVP_PKEY_derive(ctx, okm.data(), &len), 1);
    EVP_PKEY_CTX_free(ctx);
    return okm;
}

std::vector<std::uint8_t> reference_block(const std::array<std::uint8_t, 64> &okm,
                                          std::uint64_t sequence, std::size_t bytes) {
    std::array<std::uint8_t, 16> iv{};
    for (int i = 7; i >= 0; --i) {
        iv[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(sequence >> (8 * (7 - i)));
    }
    std::vector<std::uint8_t> zeros(bytes);
    std::vector<std::uint8_t> out(bytes);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    EXPECT_EQ(EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), nullptr, okm.data(), iv.data()), 1);
    int n = 0;
    EXPECT_EQ(EVP_EncryptUpdate(ctx, out.data(), &n, zeros.data(), static_cast<int>(bytes)), 1);
    EVP_CIPHER_CTX_free(ctx);
    return out;
}

TEST(sim_link, blocks_follow_the_documented_derivation) {
    const auto secret = secret_of(5);
    auto c = config_of(secret);
    c.block_bytes = 40; // not a multiple of the AES block: the counter runs on inside a block
    c.first_sequence = 1000;
    sim_link link = make(c);
    std::vector<std::uint8_t> buf(40 * 16);
    std::size_t n = 0;
    std::uint64_t t = 0;
    while (n == 0) {
        t += ms;
        n = link.produce(t, buf, 16);
    }
    const auto okm = reference_okm(secret, "a-b");
    for (std::size_t i = 0; i < n; ++i) {
        const auto expect = reference_block(okm, 1000 + i, 40);
        EXPECT_TRUE(std::equal(expect.begin(), expect.end(),
                               buf.begin() + static_cast<std::ptrdiff_t>(i * 40)))
            << "block " << i;
    }
    EXPECT_EQ(link.next_sequence(), 1000 + n);
}

TEST(sim_link, many_blocks_per_call_follow_the_derivation_at_every_block_size) {
    // produce() derives blocks in batches of cipher calls: the batch edges must not show.
    for (const std::uint32_t bytes : {8u, 16u, 24u, 1024u}) {
        const auto secret = secret_of(6);
        auto c = config_of(secret);
        c.block_bytes = bytes;
        c.first_sequence = 77;
        sim_link link = make(c);
        constexpr std::size_t want = 300;
        std::vector<std::uint8_t> buf(std::size_t{bytes} * want);
        std::size_t n = 0;
        std::uint64_t t = 0;
        while (n < want) {
            t += ms;
            const std::size_t got = link.produce(
                t, std::span(buf).subspan(n * bytes), want - n);
            n += got;
        }
        const auto okm = reference_okm(secret, "a-b");
        for (std::size_t i = 0; i < want; ++i) {
            const auto expect = reference_block(okm, 77 + i, bytes);
            ASSERT_TRUE(std::equal(expect.begin(), expect.end(),
                                   buf.begin() + static_cast<std::ptrdiff_t>(i * bytes)))
                << bytes << "-byte block " << i;
        }
    }
}

TEST(sim_link, rate_is_respected_over_a_simulated_minute_in_bursts) {
    const auto secret = secret_of(1);
    sim_link link = make(config_of(secret)); // 100 kbit/s, 256-bit blocks, bursts of 16
    std::vector<std::uint8_t> buf(32 * 4096);
    std::uint64_t blocks = 0;
    std::set<std::size_t> sizes;
    std::uint64_t last_arrival = 0;
    std::set<std::uint64_t> gaps_ms;
    for (std::uint64_t t = 0; t <= 60 * s; t += ms) {
        const std::size_t n = link.produce(t, buf, 4096);
        sizes.insert(n);
        if (n > 0) {
            if (last_arrival != 0) {
                gaps_ms.insert((t - last_arrival) / ms);
            }
            last_arrival = t;
        }
        blocks += n;
    }
    const double bits = static_cast<double>(blocks) * 256;
    EXPECT_NEAR(bits / 60.0, 100'000.0, 100'000.0 * 0.01);
    // Blocks come only in whole bursts, and most milliseconds bring none.
    EXPECT_EQ(sizes, (std::set<std::size_t>{0, 16}));
    // The mean interval is 40.96 ms; 20 % jitter spreads arrivals over about +-4 ms.
    EXPECT_EQ(link.burst_interval_ns(), 40'960'000u);
    EXPECT_GE(gaps_ms.size(), 5u);
    EXPECT_GE(*gaps_ms.begin(), 32u);
    EXPECT_LE(*gaps_ms.rbegin(), 50u);
}

TEST(sim_link, no_jitter_is_exactly_periodic_and_start_is_honoured) {
    const auto secret = secret_of(1);
    auto c = config_of(secret);
    c.jitter_percent = 0;
    c.burst_blocks = 1;
    c.rate_bps = 256'000; // 1000 blocks per second: one per ms
    c.start_ns = 10 * s;
    sim_link link = make(c);
    std::vector<std::uint8_t> buf(32 * 2000);
    EXPECT_EQ(link.produce(10 * s, buf, 2000), 0u);
    EXPECT_EQ(link.produce(10 * s + ms - 1, buf, 2000), 0u);
    EXPECT_EQ(link.produce(10 * s + ms, buf, 2000), 1u);
    EXPECT_EQ(link.produce(11 * s, buf, 2000), 999u);
}

TEST(sim_link, blocks_beyond_max_stay_pending) {
    const auto secret = secret_of(1);
    sim_link whole = make(config_of(secret));
    sim_link parts = make(config_of(secret));
    std::vector<std::uint8_t> all(32 * 1000);
    const std::size_t n = whole.produce(s, all, 1000);
    ASSERT_GT(n, 100u);
    std::vector<std::uint8_t> got;
    std::vector<std::uint8_t> buf(32 * 7);
    EXPECT_EQ(parts.produce(s, buf, 7), 7u);
    got.insert(got.end(), buf.begin(), buf.end());
    EXPECT_EQ(parts.pending_blocks(), n - 7);
    while (parts.pending_blocks() > 0) {
        const std::size_t k = parts.produce(s, buf, 7); // same time: nothing new arrives
        got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(k * 32));
    }
    all.resize(n * 32);
    EXPECT_EQ(got, all);
}

TEST(sim_link, jitter_timing_is_reproducible_from_the_seed) {
    const auto secret = secret_of(1);
    sim_link a = make(config_of(secret));
    sim_link b = make(config_of(secret));
    auto other = config_of(secret);
    other.seed = 8;
    sim_link c = make(other);
    std::vector<std::uint8_t> buf(32 * 64);
    bool timing_differs = false;
    for (std::uint64_t t = 0; t < 5 * s; t += ms) {
        const std::size_t na = a.produce(t, buf, 64);
        EXPECT_EQ(na, b.produce(t, buf, 64));
        timing_differs = timing_differs || na != c.produce(t, buf, 64);
    }
    EXPECT_TRUE(timing_differs);
}

bool contains(const std::uint8_t *hay, std::size_t hay_bytes, const std::uint8_t *needle,
              std::size_t needle_bytes) {
    return std::search(hay, hay + hay_bytes, needle, needle + needle_bytes) != hay + hay_bytes;
}

TEST(sim_link, key_material_is_wiped_on_destruction_and_move) {
    const auto secret = secret_of(9);
    const auto okm = reference_okm(secret, "a-b");
    alignas(sim_link) std::uint8_t storage[sizeof(sim_link)];
    auto created = sim_link::create(config_of(secret));
    ASSERT_TRUE(created);
    auto *link = new (storage) sim_link(std::move(*created));
    // The moved-from object no longer holds the keys.
    const auto *moved_from = reinterpret_cast<const std::uint8_t *>(&*created);
    EXPECT_FALSE(contains(moved_from, sizeof(sim_link), okm.data(), 32));
    EXPECT_TRUE(contains(storage, sizeof(storage), okm.data(), 32));      // enc key
    EXPECT_TRUE(contains(storage, sizeof(storage), okm.data() + 32, 32)); // mac key
    link->~sim_link();
    EXPECT_FALSE(contains(storage, sizeof(storage), okm.data(), 32));
    EXPECT_FALSE(contains(storage, sizeof(storage), okm.data() + 32, 32));
    // Nothing of the secret itself was ever kept.
    EXPECT_FALSE(contains(storage, sizeof(storage), secret.data(), secret.size()));
}

} // namespace
} // namespace keyrail::drivers::sim
