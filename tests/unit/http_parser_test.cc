#include "engine/http/parser.h"

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/guard_page.h"

namespace keyrail::engine::http {
namespace {

const limits default_limits{};

parse_result parse_on_guard(test::guard_page& page, std::string_view data, request& out,
                            const limits& lim = default_limits) {
    return parse(page.place(data), out, lim);
}

// Every prefix of a valid request is need_more; the whole (and anything longer) is complete
// with the same fields. Each prefix sits against a guard page.
void expect_complete_at_every_split(std::string_view full, std::size_t consumed,
                                    const limits& lim = default_limits) {
    test::guard_page page;
    request whole;
    const auto r = parse_on_guard(page, full, whole, lim);
    ASSERT_EQ(r.status, parse_status::complete) << r.reason;
    ASSERT_EQ(r.consumed_bytes, consumed);
    const std::string method(whole.method);
    const std::string target(whole.target);
    const std::string body(whole.body);
    for (std::size_t k = 0; k < full.size(); ++k) {
        request part;
        const auto pr = parse_on_guard(page, full.substr(0, k), part, lim);
        if (k < consumed) {
            ASSERT_EQ(pr.status, parse_status::need_more) << "split " << k << " " << pr.reason;
        } else {
            ASSERT_EQ(pr.status, parse_status::complete) << "split " << k;
            ASSERT_EQ(pr.consumed_bytes, consumed);
            EXPECT_EQ(part.method, method);
            EXPECT_EQ(part.target, target);
            EXPECT_EQ(part.body, body);
        }
    }
}

// Every prefix is need_more or the same error; the whole input is that error.
void expect_error_at_every_split(std::string_view full, int status,
                                 const limits& lim = default_limits) {
    test::guard_page page;
    request out;
    const auto r = parse_on_guard(page, full, out, lim);
    ASSERT_EQ(r.status, parse_status::error) << "input: " << full;
    EXPECT_EQ(r.http_status, status) << r.reason << " input: " << full;
    EXPECT_FALSE(r.reason.empty());
    for (std::size_t k = 0; k < full.size(); ++k) {
        const auto pr = parse_on_guard(page, full.substr(0, k), out, lim);
        if (pr.status == parse_status::error) {
            ASSERT_EQ(pr.http_status, status) << "split " << k << " " << pr.reason;
        } else {
            ASSERT_EQ(pr.status, parse_status::need_more) << "split " << k;
        }
    }
}

constexpr std::string_view get_status = "GET /api/v1/keys/sae-b/status HTTP/1.1\r\n"
                                        "Host: kme-a\r\n"
                                        "Accept: */*\r\n"
                                        "\r\n";

constexpr std::string_view post_enc = "POST /api/v1/keys/sae-b/enc_keys HTTP/1.1\r\n"
                                      "Host: kme-a:443\r\n"
                                      "User-Agent: curl/7.88.1\r\n"
                                      "Content-Type: application/json\r\n"
                                      "Content-Length: 25\r\n"
                                      "\r\n"
                                      "{\"number\":2,\"size\":256}\n\n";

TEST(http_parser, parses_get_fields) {
    request req;
    const auto r =
        parse(std::span<const char>(get_status.data(), get_status.size()), req, default_limits);
    ASSERT_EQ(r.status, parse_status::complete);
    EXPECT_EQ(r.consumed_bytes, get_status.size());
    EXPECT_EQ(req.method, "GET");
    EXPECT_EQ(req.target, "/api/v1/keys/sae-b/status");
    EXPECT_EQ(req.path, "/api/v1/keys/sae-b/status");
    EXPECT_EQ(req.query, "");
    EXPECT_EQ(req.version, "HTTP/1.1");
    EXPECT_EQ(req.version_minor, 1);
    EXPECT_EQ(req.header_count, 2u);
    EXPECT_EQ(req.find_header("HOST"), "kme-a");
    EXPECT_EQ(req.find_header("accept"), "*/*");
    EXPECT_EQ(req.find_header("missing"), "");
    EXPECT_FALSE(req.has_content_length);
    EXPECT_EQ(req.body, "");
    EXPECT_EQ(req.conn, connection::keep_alive);
}

TEST(http_parser, parses_post_body_and_query) {
    request req;
    const std::string_view get_q = "GET /api/v1/keys/b/enc_keys?number=3&size=128 HTTP/1.1\r\n"
                                   "Host: x\r\n\r\n";
    auto r = parse(std::span<const char>(get_q.data(), get_q.size()), req, default_limits);
    ASSERT_EQ(r.status, parse_status::complete);
    EXPECT_EQ(req.path, "/api/v1/keys/b/enc_keys");
    EXPECT_EQ(req.query, "number=3&size=128");

    r = parse(std::span<const char>(post_enc.data(), post_enc.size()), req, default_limits);
    ASSERT_EQ(r.status, parse_status::complete);
    EXPECT_TRUE(req.has_content_length);
    EXPECT_EQ(req.content_length_bytes, 25u);
    EXPECT_EQ(req.body, "{\"number\":2,\"size\":256}\n\n");
}

TEST(http_parser, every_split_point_of_several_requests) {
    expect_complete_at_every_split(get_status, get_status.size());
    expect_complete_at_every_split(post_enc, post_enc.size());
    const std::string_view http10 = "GET / HTTP/1.0\r\n\r\n";
    expect_complete_at_every_split(http10, http10.size());
    const std::string_view leading_crlf = "\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n";
    expect_complete_at_every_split(leading_crlf, leading_crlf.size());
    const std::string_view dec =
        "POST /api/v1/keys/a/dec_keys HTTP/1.1\r\nHost: h\r\n"
        "Content-Length: 63\r\nConnection: close\r\n\r\n"
        "{\"key_IDs\":[{\"key_ID\":\"00000000-0000-4000-8000-000000000000\"}]}";
    expect_complete_at_every_split(dec, dec.size());
}

TEST(http_parser, pipelined_requests_parse_one_after_another) {
    std::string buf;
    buf += get_status;
    buf += post_enc;
    buf += "\r\n"; // a stray CRLF after a body is tolerated
    buf += get_status;
    std::vector<std::string> methods;
    std::size_t offset = 0;
    while (offset < buf.size()) {
        request req;
        const auto r = parse(std::span<const char>(buf.data() + offset, buf.size() - offset), req,
                             default_limits);
        ASSERT_EQ(r.status, parse_status::complete) << offset;
        methods.emplace_back(req.method);
        offset += r.consumed_bytes;
    }
    EXPECT_EQ(offset, buf.size());
    EXPECT_EQ(methods, (std::vector<std::string>{"GET", "POST", "GET"}));
}

TEST(http_parser, connection_semantics) {
    request req;
    auto parse_str = [&](std::string_view s) {
        return parse(std::span<const char>(s.data(), s.size()), req, default_limits);
    };
    ASSERT_EQ(parse_str("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").status,
              parse_status::complete);
    EXPECT_EQ(req.conn, connection::close);
    ASSERT_EQ(
        parse_str("GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, Close\r\n\r\n").status,
        parse_status::complete);
    EXPECT_EQ(req.conn, connection::close);
    ASSERT_EQ(parse_str("GET / HTTP/1.0\r\n\r\n").status, parse_status::complete);
    EXPECT_EQ(req.conn, connection::close);
    EXPECT_EQ(req.version_minor, 0);
    ASSERT_EQ(parse_str("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").status,
              parse_status::complete);
    EXPECT_EQ(req.conn, connection::keep_alive);
    ASSERT_EQ(parse_str("GET / HTTP/1.9\r\nHost: h\r\n\r\n").status, parse_status::complete);
    EXPECT_EQ(req.version_minor, 1);
}

TEST(http_parser, expect_continue_is_reported_before_the_body) {
    const std::string_view s = "POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                               "Content-Length: 4\r\n\r\nabcd";
    request req;
    const auto headers_only = s.substr(0, s.size() - 4);
    auto r =
        parse(std::span<const char>(headers_only.data(), headers_only.size()), req, default_limits);
    EXPECT_EQ(r.status, parse_status::need_more);
    EXPECT_TRUE(r.send_continue);
    r = parse(std::span<const char>(s.data(), s.size()), req, default_limits);
    ASSERT_EQ(r.status, parse_status::complete);
    EXPECT_TRUE(req.expect_continue);
    expect_error_at_every_split("POST /x HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n", 417);
}

TEST(http_parser, request_line_limit_is_414) {
    limits lim;
    lim.request_line_bytes_max = 32;
    const std::string at_limit = "GET /" + std::string(32 - 14, 'a') + " HTTP/1.1";
    ASSERT_EQ(at_limit.size(), 32u);
    const std::string ok = at_limit + "\r\nHost: h\r\n\r\n";
    expect_complete_at_every_split(ok, ok.size(), lim);
    const std::string over = "GET /" + std::string(32 - 13, 'a') + " HTTP/1.1\r\nHost: h\r\n\r\n";
    expect_error_at_every_split(over, 414, lim);
    // Without any CR at all the parser must not wait forever.
    test::guard_page page;
    request req;
    const auto r = parse(page.place(std::string(100, 'G')), req, lim);
    ASSERT_EQ(r.status, parse_status::error);
    EXPECT_EQ(r.http_status, 414);
}

TEST(http_parser, header_count_limit_is_431) {
    limits lim;
    lim.header_count_max = 3;
    const std::string ok = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    expect_complete_at_every_split(ok, ok.size(), lim);
    const std::string over = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    expect_error_at_every_split(over, 431, lim);
}

TEST(http_parser, header_bytes_limit_is_431) {
    limits lim;
    const std::string head = "GET / HTTP/1.1\r\n";
    const std::string fields = "Host: h\r\nX: " + std::string(20, 'v') + "\r\n\r\n";
    lim.header_bytes_max = fields.size();
    expect_complete_at_every_split(head + fields, head.size() + fields.size(), lim);
    lim.header_bytes_max = fields.size() - 1;
    expect_error_at_every_split(head + fields, 431, lim);
    lim.header_bytes_max = fields.size() - 2;
    expect_error_at_every_split(head + fields, 431, lim);
    lim.header_bytes_max = 5;
    expect_error_at_every_split(head + fields, 431, lim);
}

TEST(http_parser, body_limit_is_413) {
    limits lim;
    lim.body_bytes_max = 10;
    const std::string ok = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789";
    expect_complete_at_every_split(ok, ok.size(), lim);
    // Rejected as soon as the headers are complete, before the body arrives.
    expect_error_at_every_split("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", 413,
                                lim);
    expect_error_at_every_split(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413, lim);
}

struct bad_case {
    const char* name;
    std::string_view input;
    int status;
};

TEST(http_parser, malformed_inputs_get_the_right_status) {
    const bad_case cases[] = {
        {"bare LF", "GET / HTTP/1.1\nHost: h\n\n", 400},
        {"bare CR in line", "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"bare CR in value", "GET / HTTP/1.1\r\nHost: h\rx\r\n\r\n", 400},
        {"obs fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400},
        {"space before first header", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400},
        {"space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
        {"no colon", "GET / HTTP/1.1\r\nHost h\r\n\r\n", 400},
        {"empty name", "GET / HTTP/1.1\r\n: h\r\n\r\n", 400},
        {"bad name char", "GET / HTTP/1.1\r\nHo(st: h\r\n\r\n", 400},
        {"NUL in value", std::string_view("GET / HTTP/1.1\r\nHost: h\0x\r\n\r\n", 29), 400},
        {"DEL in value", "GET / HTTP/1.1\r\nHost: h\x7f\r\n\r\n", 400},
        {"bad method char", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"unknown method", "BREW / HTTP/1.1\r\nHost: h\r\n\r\n", 501},
        {"lowercase method", "get / HTTP/1.1\r\nHost: h\r\n\r\n", 501},
        {"double space", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"no version", "GET /\r\nHost: h\r\n\r\n", 400},
        {"bad version", "GET / HTTX/1.1\r\nHost: h\r\n\r\n", 400},
        {"version trailing", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400},
        {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
        {"HTTP/0.9", "GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505},
        {"absolute form", "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"fragment", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"high byte in target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"missing host", "GET / HTTP/1.1\r\n\r\n", 400},
        {"duplicate host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"duplicate CL",
         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
         "Content-Length: 1\r\n\r\nx",
         400},
        {"conflicting CL",
         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
         "Content-Length: 2\r\n\r\nxy",
         400},
        {"CL list", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\nx", 400},
        {"CL sign", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\nx", 400},
        {"CL negative", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
        {"CL empty", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400},
        {"CL hex", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", 400},
        {"TE and CL",
         "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
         "Content-Length: 3\r\n\r\n0\r\n\r\n",
         400},
        {"CL and TE",
         "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         400},
        {"chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         501},
        {"leading bare CR", "\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"leading LF", "\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        expect_error_at_every_split(c.input, c.status);
    }
}

TEST(http_parser, tls_hello_without_crlf_waits_then_hits_the_line_limit) {
    // A TLS ClientHello sent to a plain port has no CR for a while: need_more until the budget.
    limits lim;
    lim.request_line_bytes_max = 16;
    test::guard_page page;
    request req;
    const auto r = parse(page.place(std::string_view("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03"
                                                     "\x03"
                                                     "abcdefghijk",
                                                     21)),
                         req, lim);
    ASSERT_EQ(r.status, parse_status::error);
}

TEST(http_parser, empty_input_needs_more) {
    request req;
    const auto r = parse(std::span<const char>(), req, default_limits);
    EXPECT_EQ(r.status, parse_status::need_more);
}

TEST(http_parser, iequals_is_ascii_case_insensitive) {
    EXPECT_TRUE(iequals("Content-Length", "content-length"));
    EXPECT_FALSE(iequals("Content-Length", "content-lengt"));
    EXPECT_FALSE(iequals("a", "b"));
}

} // namespace
} // namespace keyrail::engine::http
