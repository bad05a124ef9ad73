// UUID, base64, SAE ID policy and the JSON reader/writer of the ETSI 014 shim.
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "dataplane/etsi014/base64.h"
#include "dataplane/etsi014/json.h"
#include "dataplane/etsi014/sae_id.h"
#include "dataplane/etsi014/uuid.h"
#include "engine/hex.h"
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

// RFC 4648 section 10, plus the two characters that differ from base64url.
const std::pair<std::string_view, std::string_view> rfc4648_vectors[] = {
    {"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},
    {"foo", "Zm9v"},   {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"}, {std::string_view("\xfb\xff\xfe", 3), "+//+"},
};

TEST(etsi014_base64, rfc4648_vectors_with_padding) {
    for (const auto& [plain, text] : rfc4648_vectors) {
        EXPECT_EQ(b64(plain), text);
    }
}

// A plain reference: one character at a time, straight from RFC 4648.
std::string reference_b64(std::string_view raw) {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t bits = 0;
    std::uint32_t acc = 0;
    for (char ch : raw) {
        acc = (acc << 8) | static_cast<unsigned char>(ch);
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out += alphabet[(acc >> bits) & 0x3f];
        }
    }
    if (bits > 0) {
        out += alphabet[(acc << (6 - bits)) & 0x3f];
    }
    while (out.size() % 4 != 0) {
        out += '=';
    }
    return out;
}

std::optional<std::string> unb64(std::string_view text) {
    std::string out(text.size(),
                    '\x5a'); // room to spare: nothing past the result may change
    const auto n = base64_decode(text, std::as_writable_bytes(std::span(out.data(), out.size())));
    if (!n) {
        return std::nullopt;
    }
    EXPECT_EQ(n, base64_decoded_bytes(text));
    for (std::size_t i = *n; i < out.size(); ++i) {
        EXPECT_EQ(out[i], '\x5a') << "wrote past the result at " << i;
    }
    out.resize(*n);
    return out;
}

TEST(etsi014_base64, every_length_0_to_64_matches_the_reference_and_round_trips) {
    std::uint32_t seed = 12345;
    for (std::size_t len = 0; len <= 64; ++len) {
        for (int trial = 0; trial < 20; ++trial) {
            std::string raw(len, '\0');
            for (auto& c : raw) {
                seed = seed * 1103515245u + 12345u;
                c = static_cast<char>(seed >> 16);
            }
            if (trial == 1) {
                raw.assign(len, '\xff');
            } else if (trial == 2) {
                raw.assign(len, '\0');
            }
            const std::string text = b64(raw);
            ASSERT_EQ(text, reference_b64(raw)) << "length " << len;
            const auto back = unb64(text);
            ASSERT_TRUE(back.has_value()) << text;
            EXPECT_EQ(*back, raw) << text;
        }
    }
}

TEST(etsi014_base64, encode_never_writes_past_its_output) {
    for (std::size_t len = 0; len <= 64; ++len) {
        const std::string raw(len, '\x7f');
        std::string out(base64_encoded_bytes(len) + 8, '#');
        const auto n = base64_encode(std::as_bytes(std::span(raw.data(), raw.size())),
                                     std::span<char>(out.data(), out.size()));
        EXPECT_EQ(n, base64_encoded_bytes(len));
        EXPECT_EQ(out.substr(n), std::string(8, '#'));
    }
}

TEST(etsi014_base64, decode_rfc4648_vectors) {
    for (const auto& [plain, text] : rfc4648_vectors) {
        EXPECT_EQ(unb64(text), plain);
    }
}

TEST(etsi014_base64, decode_refuses_every_byte_outside_the_alphabet_in_every_position) {
    const std::string good = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZn"; // 44 characters
    ASSERT_TRUE(unb64(good).has_value());
    const std::string_view alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (std::size_t pos = 0; pos < good.size(); ++pos) {
        for (int c = 0; c < 256; ++c) {
            std::string bad = good;
            bad[pos] = static_cast<char>(c);
            const bool in_alphabet = alphabet.find(static_cast<char>(c)) != std::string_view::npos;
            if (in_alphabet) {
                continue;
            }
            // '=' is valid only as padding at the end, and these are not.
            if (c == '=' && pos >= good.size() - 2) {
                continue;
            }
            EXPECT_FALSE(unb64(bad).has_value()) << "byte " << c << " at " << pos;
        }
    }
}

TEST(etsi014_base64, decode_refuses_bad_length_and_bad_padding) {
    for (std::string_view bad :
         {"Z", "Zg", "Zg=", "Zm9vY", "Zm9vYg", "Zm9vYg=", "====", "Z===", "Zg=a",
          "=Zg=", "Zg==Zg==", "Zm8=Zm9v", "Zg==\n", " Zg=", "Zm9v Zm9v", "Zh==", "Zm9=", "Zg=A"}) {
        EXPECT_FALSE(unb64(bad).has_value()) << bad;
    }
    // Non-zero bits before padding: "Zh==" and "Zm9=" would decode to "f" and "fo" again.
    EXPECT_FALSE(unb64("Zh==").has_value());
    EXPECT_FALSE(unb64("Zm9=").has_value());
    EXPECT_EQ(unb64("Zm8B"), std::string("fo\x01"));
    EXPECT_EQ(base64_decoded_bytes("Zg="), std::nullopt);
    EXPECT_EQ(base64_decoded_bytes("Zg=="), 1u);
    EXPECT_EQ(base64_decoded_bytes("Zm8="), 2u);
}

TEST(etsi014_base64, decode_accepts_exactly_one_text_per_byte_string) {
    // For one and two bytes, every 4-character text that decodes is the encoding of its bytes.
    const std::string_view alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (char a : alphabet) {
        for (char b : alphabet) {
            const std::string one = std::string{a, b} + "==";
            if (const auto r = unb64(one)) {
                EXPECT_EQ(b64(*r), one);
            }
            for (char c : alphabet) {
                const std::string two = std::string{a, b, c} + "=";
                if (const auto r = unb64(two)) {
                    EXPECT_EQ(b64(*r), two);
                }
            }
        }
    }
}

TEST(etsi014_base64, decode_never_reads_past_the_input) {
    test::guard_page page;
    for (std::string_view text : {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYmFy", "Zm9vYg==", "Zm9v!",
                                  "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZn"}) {
        const auto placed = page.place(text);
        std::array<std::byte, 64> out{};
        const auto r = base64_decode(std::string_view(placed.data(), placed.size()), out);
        EXPECT_EQ(r.has_value(), text != "Zm9v!") << text;
    }
}

TEST(etsi014_uuid, format_and_parse_round_trip_every_byte_value_in_every_position) {
    for (std::size_t pos = 0; pos < 16; ++pos) {
        for (int v = 0; v < 256; ++v) {
            key_id id;
            for (std::size_t i = 0; i < 16; ++i) {
                id.bytes[i] = static_cast<std::uint8_t>(i * 17 + 3);
            }
            id.bytes[pos] = static_cast<std::uint8_t>(v);
            const std::string text = format(id);
            ASSERT_EQ(text[8], '-');
            ASSERT_EQ(text[13], '-');
            ASSERT_EQ(text[18], '-');
            ASSERT_EQ(text[23], '-');
            const auto back = parse_uuid(text);
            ASSERT_TRUE(back.has_value()) << text;
            EXPECT_EQ(*back, id) << text;
        }
    }
    EXPECT_EQ(format(*parse_uuid("00000000-0000-0000-0000-000000000000")),
              "00000000-0000-0000-0000-000000000000");
    EXPECT_EQ(format(*parse_uuid("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF")),
              "ffffffff-ffff-ffff-ffff-ffffffffffff");
}

TEST(etsi014_uuid, parse_refuses_any_non_hex_byte_in_any_digit_position) {
    const std::string good = "0123abcd-4567-89ab-cdef-0123456789ab";
    for (std::size_t pos = 0; pos < good.size(); ++pos) {
        for (int c = 0; c < 256; ++c) {
            std::string bad = good;
            bad[pos] = static_cast<char>(c);
            const bool dash_position = pos == 8 || pos == 13 || pos == 18 || pos == 23;
            const bool ok = dash_position ? c == '-' : hex_value(static_cast<char>(c)) >= 0;
            EXPECT_EQ(parse_uuid(bad).has_value(), ok) << "byte " << c << " at " << pos;
        }
    }
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

TEST(etsi014_json, strings_with_a_special_byte_at_every_offset) {
    // The scanner skips eight plain bytes at a time: put each kind of byte at every offset.
    std::vector<json::token> storage;
    for (std::size_t len = 0; len <= 40; ++len) {
        for (std::size_t at = 0; at < len; ++at) {
            const std::string plain(len, 'a');
            struct variant {
                std::string_view insert;
                bool ok;
                std::string_view decoded;
            };
            for (const variant& v : {variant{"\\n", true, "\n"}, variant{"\\\"", true, "\""},
                                     variant{"\xc3\xa9", true, "\xc3\xa9"},
                                     variant{"\x1f", false, ""}, variant{"\xff", false, ""},
                                     variant{"\"", false, ""}, variant{"\x7f", true, "\x7f"}}) {
                const std::string text =
                    "\"" + plain.substr(0, at) + std::string(v.insert) + plain.substr(at) + "\"";
                const auto r = parse_json(text, storage);
                EXPECT_EQ(r.ok, v.ok) << text;
                if (r.ok && v.ok) {
                    std::string out(text.size(), '\0');
                    std::size_t n = 0;
                    ASSERT_TRUE(json::decode_string(r.doc.raw(0), out, n));
                    EXPECT_EQ(std::string_view(out.data(), n),
                              plain.substr(0, at) + std::string(v.decoded) + plain.substr(at));
                }
            }
        }
    }
}

TEST(etsi014_json, decode_string_without_escapes_checks_room) {
    std::vector<json::token> storage;
    const auto r = parse_json("\"abcdef\"", storage);
    ASSERT_TRUE(r.ok);
    char buf[8];
    std::size_t n = 99;
    EXPECT_FALSE(json::decode_string(r.doc.raw(0), std::span<char>(buf, 5), n));
    ASSERT_TRUE(json::decode_string(r.doc.raw(0), std::span<char>(buf, 6), n));
    EXPECT_EQ(std::string_view(buf, n), "abcdef");
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
