#include "engine/http/response.h"

#include <array>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace keyrail::engine::http {
namespace {

TEST(http_response, writes_status_headers_and_body) {
    std::array<char, 512> buf{};
    response_head head;
    head.status = 200;
    head.content_type = "application/json";
    const auto n = write_response(buf, head, "{\"keys\":[]}");
    ASSERT_TRUE(n.has_value());
    EXPECT_EQ(std::string_view(buf.data(), *n), "HTTP/1.1 200 OK\r\n"
                                                "Content-Type: application/json\r\n"
                                                "Content-Length: 11\r\n"
                                                "Connection: keep-alive\r\n"
                                                "\r\n"
                                                "{\"keys\":[]}");
}

TEST(http_response, no_body_and_extra_headers) {
    std::array<char, 512> buf{};
    const header allow[] = {{"Allow", "GET, POST"}};
    response_head head;
    head.status = 405;
    head.conn = connection::close;
    head.extra_headers = allow;
    const auto n = write_response(buf, head, "");
    ASSERT_TRUE(n.has_value());
    EXPECT_EQ(std::string_view(buf.data(), *n), "HTTP/1.1 405 Method Not Allowed\r\n"
                                                "Content-Length: 0\r\n"
                                                "Connection: close\r\n"
                                                "Allow: GET, POST\r\n"
                                                "\r\n");
}

TEST(http_response, every_too_small_buffer_fails_without_overrun) {
    response_head head;
    head.status = 503;
    head.content_type = "application/json";
    const std::string_view body = "{\"message\":\"Error on server side\"}";
    std::array<char, 512> full{};
    const auto total = write_response(full, head, body);
    ASSERT_TRUE(total.has_value());
    for (std::size_t size = 0; size < *total; ++size) {
        std::array<char, 512> buf{};
        buf.fill('#');
        const auto n = write_response(std::span<char>(buf.data(), size), head, body);
        ASSERT_FALSE(n.has_value()) << size;
        EXPECT_EQ(n.error(), make_error_code(errc::buffer_too_small));
        for (std::size_t i = size; i < buf.size(); ++i) {
            ASSERT_EQ(buf[i], '#') << "wrote past the end at size " << size;
        }
    }
    std::array<char, 512> exact{};
    EXPECT_TRUE(write_response(std::span<char>(exact.data(), *total), head, body).has_value());
}

TEST(http_response, refuses_header_injection) {
    std::array<char, 512> buf{};
    const header evil[] = {{"X", "a\r\nSet-Cookie: y"}};
    response_head head;
    head.extra_headers = evil;
    const auto n = write_response(buf, head, "");
    ASSERT_FALSE(n.has_value());
    EXPECT_EQ(n.error(), make_error_code(errc::invalid_field));
    const header bad_name[] = {{"X Y", "a"}};
    head.extra_headers = bad_name;
    EXPECT_FALSE(write_response(buf, head, "").has_value());
}

TEST(http_response, continue_and_parse_error) {
    std::array<char, 256> buf{};
    auto n = write_continue(buf);
    ASSERT_TRUE(n.has_value());
    EXPECT_EQ(std::string_view(buf.data(), *n), "HTTP/1.1 100 Continue\r\n\r\n");
    parse_result err;
    err.status = parse_status::error;
    err.http_status = 431;
    err.reason = "too many header fields";
    n = write_parse_error(buf, err);
    ASSERT_TRUE(n.has_value());
    EXPECT_EQ(std::string_view(buf.data(), *n), "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                                "Content-Type: text/plain\r\n"
                                                "Content-Length: 22\r\n"
                                                "Connection: close\r\n"
                                                "\r\n"
                                                "too many header fields");
    EXPECT_EQ(reason_phrase(999), "Unknown");
    EXPECT_EQ(write_continue(std::span<char>(buf.data(), 5)).error(),
              make_error_code(errc::buffer_too_small));
}

} // namespace
} // namespace keyrail::engine::http
