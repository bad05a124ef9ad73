// UUID, base64, SAE ID policy and the JSON reader/writer of the ETSI 014 shim.
#include <array>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "dataplane/etsi014/base64.h"
#include "dataplane/etsi014/json.h"
#include "dataplane/etsi014/sae_id.h"
#include "dataplane/etsi014/uuid.h"
#include "tests/support/guard_page.h"

namespace keyrail::dataplane::etsi014 {
namespace {

std::string format(const key_id& id) {
    std::array<char, uuid_text_bytes> buf{};
    format_uuid(id, buf);
    return std::string(buf.data(), buf.size());
}

TEST(etsi014_uuid, parse_and_format_round_trip_lowercase) {
    const auto id = parse_uuid("0123ABCD-4567-89ab-CDEF-0123456789ab");
    ASSERT_TRUE(id.has_value());
    EXPECT_EQ(format(*id), "0123abcd-4567-89ab-cdef-0123456789ab");
    EXPECT_EQ(id->bytes[0], 0x01);
    EXPECT_EQ(id->bytes[15], 0xab);
}

TEST(etsi014_uuid, rejects_other_forms) {
    for (std::string_view bad :
         {"", "0123abcd456789abcdef0123456789ab", "{0123abcd-4567-89ab-cdef-0123456789ab}",
          "urn:uuid:0123abcd-4567-89ab-cdef-0123456789ab", "0123abcd-4567-89ab-cdef-0123456789a",
          "0123abcd-4567-89ab-cdef-0123456789abc", "0123abcd_4567-89ab-cdef-0123456789ab",
          "0123abcg-4567-89ab-cdef-0123456789ab", "0123abcd-4567-89ab-cdef-0123456789a "}) {
        EXPECT_FALSE(parse_uuid(bad).has_value()) << bad;
    }
}

TEST(etsi014_uuid, v4_has_version_and_variant_bits_and_differs) {
    std::vector<std::string> seen;
    for (int i = 0; i < 64; ++i) {
        const auto id = generate_uuid_v4();
        ASSERT_TRUE(id.has_value());
        EXPECT_EQ(id->bytes[6] >> 4, 4);
        EXPECT_EQ(id->bytes[8] & 0xc0, 0x80);
        const auto text = format(*id);
        EXPECT_EQ(text[14], '4');
        EXPECT_TRUE(text[19] == '8' || text[19] == '9' || text[19] == 'a' || text[19] == 'b');
        for (const auto& s : seen) {
            EXPECT_NE(s, text);
        }
        seen.push_back(text);
    }
}

std::string b64(std::string_view raw) {
    std::string out(base64_encoded_bytes(raw.size()), '?');
    const auto n = base64_encode(std::as_bytes(std::span(raw.data(), raw.size())),
                                 std::span<char>(out.data(), out.size()));
    EXPECT_EQ(n, out.size());
    return out;
}

TEST(etsi014_base64, rfc4648_vectors_with_padding) {
    EXPECT_EQ(b64(""), "");
    EXPECT_EQ(b64("f"), "Zg==");
    EXPECT_EQ(b64("fo"), "Zm8=");
    EXPECT_EQ(b64("foo"), "Zm9v");
    EXPECT_EQ(b64("foob"), "Zm9vYg==");
    EXPECT_EQ(b64("fooba"), "Zm9vYmE=");
    EXPECT_EQ(b64("foobar"), "Zm9vYmFy");
    EXPECT_EQ(b64(std::string_view("\xfb\xff\xfe", 3)), "+//+");
}

TEST(etsi014_sae_id, policy) {
    EXPECT_TRUE(check_sae_id("sae-1").empty());
    EXPECT_TRUE(check_sae_id("urn:keyrail:sae:A_b.c@site").empty());
    EXPECT_TRUE(check_sae_id(std::string(128, 'a')).empty());
    EXPECT_FALSE(check_sae_id("").empty());
    EXPECT_FALSE(check_sae_id(std::string(129, 'a')).empty());
    EXPECT_FALSE(check_sae_id("a/b").empty());
    EXPECT_FALSE(check_sae_id("..").empty());
    EXPECT_FALSE(check_sae_id(".").empty());
    EXPECT_FALSE(check_sae_id("a..b").empty());
    EXPECT_FALSE(check_sae_id("a b").empty());
    EXPECT_FALSE(check_sae_id(std::string_view("a\0b", 3)).empty());
    EXPECT_FALSE(check_sae_id("a\nb").empty());
    EXPECT_NE(check_sae_id("s\xc3\xa4\x65").find("unicode"), std::string_view::npos);
}

json::parse_outcome parse_json(std::string_view text, std::vector<json::token>& storage,
                               json::limits lim = {}) {
    storage.assign(256, json::token{});
    return json::parse(text, storage, lim);
}

TEST(etsi014_json, accepts_valid_documents) {
    std::vector<json::token> storage;
    for (std::string_view ok :
         {"{}", "[]", " {\"a\" : [1, -2, 3.5e+2, true, false, null, \"x\"]} ", "0", "\"\"",
          "{\"a\":{\"b\":{\"c\":[]}}}", "\"\\u00e9\\ud83d\\ude00\\n\\t\\\"\\\\\\/\\b\\f\\r\"",
          "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "-0", "1E9", "0.5"}) {
        const auto r = parse_json(ok, storage);
        EXPECT_TRUE(r.ok) << ok << ": " << r.error;
    }
}

TEST(etsi014_json, rejects_invalid_documents) {
    std::vector<json::token> storage;
    for (std::string_view bad : {"",
                                 " ",
                                 "{",
                                 "}",
                                 "[1,]",
                                 "[,1]",
                                 "{\"a\"}",
                                 "{\"a\":}",
                                 "{\"a\":1,}",
                                 "{a:1}",
                                 "{'a':1}",
                                 "01",
                                 "1.",
                                 ".5",
                                 "+1",
                                 "1e",
                                 "--1",
                                 "0x10",
                                 "NaN",
                                 "Infinity",
                                 "tru",
                                 "nul",
                                 "\"abc",
                                 "\"\\x\"",
                                 "\"\\u12\"",
                                 "\"\\u12g4\"",
                                 "\"\\ud800\"",
                                 "\"\\udc00\"",
                                 "\"\\ud800\\u0041\"",
                                 "\"a\nb\"",
                                 "\"\xc3\"",
                                 "\"\xc0\xaf\"",
                                 "\"\xed\xa0\x80\"",
                                 "\"\xf4\x90\x80\x80\"",
                                 "\"\xff\"",
                                 "{} {}",
                                 "[1] x",
                                 "{\"a\":1,\"a\":2}",
                                 "{\"a\":1,\"\\u0061\":2}",
                                 "[[[[[[[[[1]]]]]]]]]"}) {
        const auto r = parse_json(bad, storage);
        EXPECT_FALSE(r.ok) << "accepted: " << bad;
        EXPECT_FALSE(r.error.empty());
    }
}

TEST(etsi014_json, limits) {
    std::vector<json::token> storage;
    json::limits lim;
    lim.depth_max = 2;
    EXPECT_TRUE(parse_json("[[1]]", storage, lim).ok);
    EXPECT_FALSE(parse_json("[[[1]]]", storage, lim).ok);
    lim = {};
    lim.text_bytes_max = 4;
    EXPECT_TRUE(parse_json("[12]", storage, lim).ok);
    EXPECT_FALSE(parse_json("[123]", storage, lim).ok);
    lim = {};
    lim.members_max = 2;
    EXPECT_TRUE(parse_json("{\"a\":1,\"b\":2}", storage, lim).ok);
    EXPECT_FALSE(parse_json("{\"a\":1,\"b\":2,\"c\":3}", storage, lim).ok);
    std::vector<json::token> small(3);
    EXPECT_TRUE(json::parse("[1,2]", small, {}).ok);
    EXPECT_FALSE(json::parse("[1,2,3]", small, {}).ok);
}

TEST(etsi014_json, token_tree_and_decoding) {
    std::vector<json::token> storage;
    const auto r =
        parse_json("{\"k\":[\"a\\u00e9\",{\"x\":1}],\"n\":18446744073709551615}", storage);
    ASSERT_TRUE(r.ok) << r.error;
    const auto& d = r.doc;
    ASSERT_EQ(d.tokens[0].type, json::kind::object);
    EXPECT_EQ(d.tokens[0].count, 2u);
    EXPECT_TRUE(json::string_equals(d.raw(1), "k"));
    EXPECT_EQ(d.tokens[2].type, json::kind::array);
    EXPECT_EQ(d.tokens[2].count, 2u);
    char buf[16];
    std::size_t n = 0;
    ASSERT_TRUE(json::decode_string(d.raw(3), buf, n));
    EXPECT_EQ(std::string_view(buf, n), "a\xc3\xa9");
    EXPECT_FALSE(json::decode_string(d.raw(3), std::span<char>(buf, 2), n));
    const auto n_key = d.tokens[2].next;
    EXPECT_TRUE(json::string_equals(d.raw(n_key), "n"));
    std::uint64_t v = 0;
    EXPECT_EQ(json::to_uint(d.raw(n_key + 1), v), json::integer_status::ok);
    EXPECT_EQ(v, UINT64_MAX);
}

TEST(etsi014_json, integers_are_exact) {
    std::uint64_t v = 0;
    EXPECT_EQ(json::to_uint("0", v), json::integer_status::ok);
    EXPECT_EQ(json::to_uint("18446744073709551616", v), json::integer_status::overflow);
    EXPECT_EQ(json::to_uint("-1", v), json::integer_status::negative);
    EXPECT_EQ(json::to_uint("1.0", v), json::integer_status::not_integer);
    EXPECT_EQ(json::to_uint("1e3", v), json::integer_status::not_integer);
}

TEST(etsi014_json, surrogate_pair_decodes_to_four_byte_utf8) {
    std::vector<json::token> storage;
    const auto r = parse_json("\"\\uD83D\\uDE00\"", storage);
    ASSERT_TRUE(r.ok);
    EXPECT_TRUE(json::string_equals(r.doc.raw(0), "\xf0\x9f\x98\x80"));
    EXPECT_FALSE(json::string_equals(r.doc.raw(0), "\xf0\x9f\x98"));
}

TEST(etsi014_json, writer_escapes_and_stops_at_the_end) {
    std::array<char, 64> buf{};
    json::writer w(buf);
    w.string("a\"b\\c\n\x01");
    w.raw(",");
    w.uint(1234567890123ull);
    ASSERT_FALSE(w.overflow());
    EXPECT_EQ(std::string_view(buf.data(), w.size()),
              "\"a\\\"b\\\\c\\u000a\\u0001\",1234567890123");
    std::array<char, 4> tiny{};
    json::writer t(tiny);
    t.raw("abcde");
    EXPECT_TRUE(t.overflow());
}

TEST(etsi014_json, never_reads_past_the_input) {
    test::guard_page page;
    std::vector<json::token> storage(64);
    for (std::string_view text : {"{\"a\":1", "\"abc", "\"\\u00", "\"\\ud83d\\ude0", "[1,", "tru",
                                  "-", "1e", "1.", "\"\xf0\x9f", "{\"a\"", "{\"a\":"}) {
        const auto placed = page.place(text);
        const auto r = json::parse(std::string_view(placed.data(), placed.size()), storage, {});
        EXPECT_FALSE(r.ok) << text;
    }
}

} // namespace
} // namespace keyrail::dataplane::etsi014
