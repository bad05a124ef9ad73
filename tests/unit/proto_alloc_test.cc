// dataplane/proto: decoding never allocates, and encoding stops allocating once the builder
// has reached its size. Its own binary, because it replaces the global operator new.
#include <gtest/gtest.h>

#include <cstdlib>
#include <new>

#include "tests/support/proto_frames.h"

namespace {
std::size_t allocations = 0;
}

// These are the replacement allocation functions themselves, so pairing malloc with free is
// right; GCC 12 at -O2 inlines them into callers and then misreads it as a new/free mismatch.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t size) {
    ++allocations;
    if (void* p = std::malloc(size == 0 ? 1 : size)) {
        return p;
    }
    throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace proto = keyrail::proto;

TEST(proto_alloc, decode_and_warm_encode_do_not_allocate) {
    const auto frames = keyrail::test::sample_frames();
    flatbuffers::FlatBufferBuilder fbb(proto::builder_bytes);

    const std::array<std::string_view, 1> slaves{"sae-b"};
    const std::array<proto::seq_run, 1> runs{proto::seq_run{0, 2, 2}};
    std::vector<proto::key_reservation_in> keys(proto::limits::reserve_keys_max);
    for (auto& k : keys) {
        k = {keyrail::test::key_id_of(1), "sae-a", slaves, runs, 256, 1};
    }
    const proto::reserve_in batch{"a-b", 1, 1, keys};
    ASSERT_TRUE(proto::encode(fbb, batch).has_value()); // warm-up

    const std::size_t before = allocations;
    for (int round = 0; round < 3; ++round) {
        for (const auto& f : frames) {
            const auto d = proto::decode(f);
            ASSERT_EQ(d.status, proto::decode_status::frame);
        }
        ASSERT_TRUE(proto::encode(fbb, batch).has_value());
        ASSERT_TRUE(proto::encode(fbb, proto::ping_in{1, 2}).has_value());
    }
    EXPECT_EQ(allocations, before);
}
