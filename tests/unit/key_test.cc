// Key IDs, key sizes, the master key formats and the keyring wrap: pure functions.
#include "dataplane/errc.h"
#include "dataplane/store/seal.h"
#include "dataplane/store/stream.h"

#include <array>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include <gtest/gtest.h>

namespace keyrail::dataplane {
namespace {

TEST(key_test, uuid_v4_format) {
    key_id id;
    for (std::size_t i = 0; i < 16; ++i) {
        id.bytes[i] = static_cast<std::byte>(i * 17);
    }
    char text[37];
    id.format(text);
    EXPECT_STREQ(text, "00112233-4455-6677-8899-aabbccddeeff");
    auto r = random_key_id();
    ASSERT_TRUE(r.has_value());
    r->format(text);
    EXPECT_EQ(text[14], '4');
    EXPECT_TRUE(text[19] == '8' || text[19] == '9' || text[19] == 'a' || text[19] == 'b');
}

TEST(key_test, pool_ids_are_distinct_v4_across_refills) {
    key_id_pool pool;
    std::set<std::string> seen;
    for (int i = 0; i < 1000; ++i) {
        auto id = pool.next();
        ASSERT_TRUE(id.has_value());
        EXPECT_EQ(static_cast<unsigned>(id->bytes[6]) >> 4, 4u);
        EXPECT_EQ(static_cast<unsigned>(id->bytes[8]) >> 6, 2u);
        char text[37];
        id->format(text);
        EXPECT_TRUE(seen.insert(text).second);
    }
}

TEST(key_test, key_sizes) {
    EXPECT_EQ(blocks_for_key(8, 32).value(), 1u);
    EXPECT_EQ(blocks_for_key(256, 32).value(), 1u);
    EXPECT_EQ(blocks_for_key(264, 32).value(), 2u);
    EXPECT_EQ(blocks_for_key(65536, 32).value(), 256u);
    EXPECT_EQ(blocks_for_key(65536, 8).value(), 1024u);
    EXPECT_EQ(blocks_for_key(0, 32).error(), errc::key_size_invalid);
    EXPECT_EQ(blocks_for_key(7, 32).error(), errc::key_size_invalid);
    EXPECT_EQ(blocks_for_key(100, 32).error(), errc::key_size_invalid);
    EXPECT_EQ(blocks_for_key(65544, 32).error(), errc::key_size_invalid);
}

TEST(key_test, key_id_equality) {
    key_id a;
    key_id b;
    EXPECT_TRUE(a.equals(b));
    b.bytes[15] = std::byte{1};
    EXPECT_FALSE(a.equals(b));
}

TEST(key_test, checksum_detects_changes) {
    std::array<unsigned char, 100> data{};
    const auto base = checksum64(data.data(), data.size());
    for (std::size_t i = 0; i < data.size(); ++i) {
        data[i] ^= 1;
        EXPECT_NE(checksum64(data.data(), data.size()), base) << i;
        data[i] ^= 1;
    }
    EXPECT_NE(checksum64(data.data(), 99), base);
}

TEST(key_test, master_key_formats_and_keyring) {
    ::setenv("KEYRAIL_KEY_TEST_MASTER",
             "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 1);
    auto master = load_master_key({master_key_source::kind::env, "KEYRAIL_KEY_TEST_MASTER"});
    ASSERT_TRUE(master.has_value());
    EXPECT_EQ(master->bytes()[31], std::byte{0x1f});
    ::setenv("KEYRAIL_KEY_TEST_MASTER",
             "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 1);
    EXPECT_EQ(load_master_key({master_key_source::kind::env, "KEYRAIL_KEY_TEST_MASTER"}).error(),
              errc::master_key_invalid);
    auto data = random_secret_key();
    ASSERT_TRUE(data.has_value());
    std::array<std::byte, keyring_file_bytes> file{};
    ASSERT_TRUE(wrap_data_key(*master, *data, file).has_value());
    auto back = unwrap_data_key(*master, file);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(std::memcmp(back->bytes().data(), data->bytes().data(), 32), 0);
    secret_key other;
    EXPECT_EQ(unwrap_data_key(other, file).error(), errc::wrong_master_key);
    file[40] ^= std::byte{1};
    EXPECT_EQ(unwrap_data_key(*master, file).error(), errc::keyring_corrupt);
    EXPECT_EQ(unwrap_data_key(*master, std::span<const std::byte>(file.data(), 10)).error(),
              errc::keyring_corrupt);
}

} // namespace
} // namespace keyrail::dataplane
