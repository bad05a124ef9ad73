// The ETSI 014 shim end to end over raw HTTP bytes: routing, every endpoint in both forms,
// every error code and message, exact JSON, with an in-memory key service.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "dataplane/etsi014/fake_key_service.h"
#include "dataplane/etsi014/handler.h"
#include "engine/http/parser.h"

namespace keyrail::dataplane::etsi014 {
namespace {

namespace http = engine::http;

struct reply {
    int status = 0;
    std::string head;
    std::string body;
    std::string content_type;
    std::string allow;
    std::string connection;
};

std::string header_value(std::string_view head, std::string_view name) {
    const std::string needle = "\r\n" + std::string(name) + ": ";
    const auto at = head.find(needle);
    if (at == std::string_view::npos) {
        return {};
    }
    const auto start = at + needle.size();
    return std::string(head.substr(start, head.find("\r\n", start) - start));
}

std::string error_json(std::string_view message) {
    return "{\"message\":\"" + std::string(message) + "\"}";
}

bool is_canonical_uuid_v4(std::string_view s) {
    if (s.size() != 36) {
        return false;
    }
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') {
                return false;
            }
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return s[14] == '4' && (s[19] == '8' || s[19] == '9' || s[19] == 'a' || s[19] == 'b');
}

class etsi014_handler : public ::testing::Test {
protected:
    etsi014_handler() : ws(workspace_limits{}), out(ws.response_bytes_max()) {
        svc.allow("sae-a", "sae-b");
        svc.allow("sae-a", "sae-c");
        svc.allow("sae-a", "sae-d");
        svc.add_known("sae-e");
    }

    reply send(std::string_view caller, const std::string& raw) {
        http::request req;
        const auto pr = http::parse(std::span<const char>(raw.data(), raw.size()), req, {});
        EXPECT_EQ(pr.status, http::parse_status::complete) << pr.reason << "\n" << raw;
        if (pr.status != http::parse_status::complete) {
            return {};
        }
        const auto hr = handle(req, caller, svc, ws, out);
        const std::string_view text(out.data(), hr.response_bytes);
        reply r;
        r.status = hr.http_status;
        const auto end = text.find("\r\n\r\n");
        EXPECT_NE(end, std::string_view::npos);
        r.head = std::string(text.substr(0, end + 2));
        r.body = std::string(text.substr(end + 4));
        EXPECT_EQ(r.head.substr(0, 13), "HTTP/1.1 " + std::to_string(hr.http_status) + " ");
        EXPECT_EQ(header_value(r.head, "Content-Length"), std::to_string(r.body.size()));
        r.content_type = header_value(r.head, "Content-Type");
        r.allow = header_value(r.head, "Allow");
        r.connection = header_value(r.head, "Connection");
        if (!r.body.empty()) {
            EXPECT_EQ(r.content_type, "application/json");
        }
        return r;
    }

    reply request(std::string_view caller, std::string_view method, std::string_view target,
                  std::string_view body = {}, std::string_view extra_headers = {}) {
        std::string raw = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\n" +
                          "Host: kme-a\r\n" + std::string(extra_headers);
        if (!body.empty() || method == "POST") {
            raw +=
                "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\n";
        }
        raw += "\r\n";
        raw += body;
        return send(caller, raw);
    }

    // The (key_ID, key) pairs of a Key container, in order; checks the exact field names.
    static std::vector<std::pair<std::string, std::string>> keys_of(const std::string& body) {
        std::vector<std::pair<std::string, std::string>> keys;
        std::vector<json::token> storage(4096);
        const auto r = json::parse(body, storage, {});
        EXPECT_TRUE(r.ok) << r.error;
        if (!r.ok) {
            return keys;
        }
        const auto& d = r.doc;
        EXPECT_EQ(d.tokens[0].count, 1u);
        EXPECT_TRUE(json::string_equals(d.raw(1), "keys"));
        const auto& arr = d.tokens[2];
        std::size_t e = 3;
        for (std::uint32_t i = 0; i < arr.count; ++i, e = d.tokens[e].next) {
            EXPECT_EQ(d.tokens[e].count, 2u);
            EXPECT_TRUE(json::string_equals(d.raw(e + 1), "key_ID"));
            EXPECT_TRUE(json::string_equals(d.raw(e + 3), "key"));
            keys.emplace_back(std::string(d.raw(e + 2)), std::string(d.raw(e + 4)));
        }
        return keys;
    }

    testing::fake_key_service svc;
    workspace ws;
    std::vector<char> out;
};

TEST_F(etsi014_handler, status_has_exact_fields) {
    const auto r = request("sae-a", "GET", "/api/v1/keys/sae-b/status");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "{\"source_KME_ID\":\"kme-a\",\"target_KME_ID\":\"kme-b\","
                      "\"master_SAE_ID\":\"sae-a\",\"slave_SAE_ID\":\"sae-b\",\"key_size\":256,"
                      "\"stored_key_count\":1000,\"max_key_count\":100000,"
                      "\"max_key_per_request\":128,\"max_key_size\":8192,\"min_key_size\":64,"
                      "\"max_SAE_ID_count\":2}");
    EXPECT_EQ(r.connection, "keep-alive");
}

TEST_F(etsi014_handler, enc_keys_get_defaults_then_dec_keys_get_returns_same_bytes_once) {
    const auto enc = request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys");
    ASSERT_EQ(enc.status, 200) << enc.body;
    const auto keys = keys_of(enc.body);
    ASSERT_EQ(keys.size(), 1u);
    EXPECT_TRUE(is_canonical_uuid_v4(keys[0].first)) << keys[0].first;
    EXPECT_EQ(keys[0].second.size(), 44u); // 32 bytes in base64 with padding
    EXPECT_EQ(keys[0].second.back(), '=');
    EXPECT_EQ(svc.available, 999u);

    const auto dec = request("sae-b", "GET", "/api/v1/keys/sae-a/dec_keys?key_ID=" + keys[0].first);
    ASSERT_EQ(dec.status, 200) << dec.body;
    EXPECT_EQ(keys_of(dec.body), keys);

    const auto again =
        request("sae-b", "GET", "/api/v1/keys/sae-a/dec_keys?key_ID=" + keys[0].first);
    EXPECT_EQ(again.status, 400);
    EXPECT_EQ(again.body, error_json("one or more keys specified are not found on KME"));
}

TEST_F(etsi014_handler, enc_keys_get_query_and_post_body) {
    auto r = request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys?number=3&size=128");
    ASSERT_EQ(r.status, 200) << r.body;
    auto keys = keys_of(r.body);
    ASSERT_EQ(keys.size(), 3u);
    for (const auto& k : keys) {
        EXPECT_EQ(k.second.size(), 24u); // 16 bytes
    }
    r = request("sae-a", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"number\":2,\"size\":520}");
    ASSERT_EQ(r.status, 200) << r.body;
    keys = keys_of(r.body);
    ASSERT_EQ(keys.size(), 2u);
    EXPECT_EQ(keys[0].second.size(), 88u); // 65 bytes: base64 of 65 = 88 with one '='
    EXPECT_NE(keys[0].first, keys[1].first);
    EXPECT_NE(keys[0].second, keys[1].second);
    r = request("sae-a", "POST", "/api/v1/keys/sae-b/enc_keys", "");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(keys_of(r.body).size(), 1u);
    r = request("sae-a", "POST", "/api/v1/keys/sae-b/enc_keys",
                "{\"extension_optional\":[{\"vendor_x\":1}],\"extension_mandatory\":[{}]}");
    EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(etsi014_handler, dec_keys_post_with_many_ids_and_extensions) {
    const auto enc = request("sae-a", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"number\":4}");
    const auto keys = keys_of(enc.body);
    ASSERT_EQ(keys.size(), 4u);
    std::string body = "{\"key_IDs\":[";
    for (std::size_t i = 0; i < keys.size(); ++i) {
        body += (i ? "," : "");
        body += "{\"key_ID\":\"" + keys[i].first + "\"" +
                (i == 1 ? ",\"key_ID_extension\":{\"a\":1}" : "") + "}";
    }
    body += "],\"key_IDs_extension\":{}}";
    const auto dec = request("sae-b", "POST", "/api/v1/keys/sae-a/dec_keys", body);
    ASSERT_EQ(dec.status, 200) << dec.body;
    EXPECT_EQ(keys_of(dec.body), keys);
    EXPECT_TRUE(svc.records.empty());
}

TEST_F(etsi014_handler, uppercase_key_id_is_accepted_and_answered_lowercase) {
    const auto keys = keys_of(request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys").body);
    ASSERT_EQ(keys.size(), 1u);
    std::string upper = keys[0].first;
    for (auto& c : upper) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    const auto dec = request("sae-b", "GET", "/api/v1/keys/sae-a/dec_keys?key_ID=" + upper);
    ASSERT_EQ(dec.status, 200);
    EXPECT_EQ(keys_of(dec.body), keys);
}

TEST_F(etsi014_handler, slave_not_named_gets_401_without_body) {
    const auto keys = keys_of(request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys").body);
    ASSERT_EQ(keys.size(), 1u);
    const auto r = request("sae-c", "GET", "/api/v1/keys/sae-a/dec_keys?key_ID=" + keys[0].first);
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.body, "");
    EXPECT_EQ(r.content_type, "");
    // The named slave still gets it.
    EXPECT_EQ(request("sae-b", "GET", "/api/v1/keys/sae-a/dec_keys?key_ID=" + keys[0].first).status,
              200);
}

TEST_F(etsi014_handler, multicast_gives_the_same_key_to_every_slave) {
    const auto enc = request("sae-a", "POST", "/api/v1/keys/sae-b/enc_keys",
                             "{\"additional_slave_SAE_IDs\":[\"sae-c\",\"sae-d\"]}");
    ASSERT_EQ(enc.status, 200) << enc.body;
    const auto keys = keys_of(enc.body);
    for (auto slave : {"sae-b", "sae-c", "sae-d"}) {
        const auto dec =
            request(slave, "GET", "/api/v1/keys/sae-a/dec_keys?key_ID=" + keys[0].first);
        ASSERT_EQ(dec.status, 200) << slave;
        EXPECT_EQ(keys_of(dec.body), keys);
    }
}

TEST_F(etsi014_handler, mandated_messages) {
    auto r = request("sae-a", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"size\":100}");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.body, error_json("size shall be a multiple of 8"));
    r = request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys?size=12");
    EXPECT_EQ(r.body, error_json("size shall be a multiple of 8"));
    r = request("sae-a", "POST", "/api/v1/keys/sae-b/enc_keys",
                "{\"extension_mandatory\":[{\"abc_route_type\":\"direct\"}]}");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.body, error_json("not all extension_mandatory parameters are supported"));
    r = request("sae-b", "GET",
                "/api/v1/keys/sae-a/dec_keys?key_ID=00000000-0000-4000-8000-000000000000");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.body, error_json("one or more keys specified are not found on KME"));
}

TEST_F(etsi014_handler, exhausted_is_503_with_counts_and_rate) {
    svc.available = 12;
    const auto r = request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys?number=100");
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.body, error_json("insufficient key material: requested 100 keys, 12 available, "
                                 "refill rate 1000 keys/s"));
    // Nothing was reserved.
    EXPECT_EQ(svc.available, 12u);
    EXPECT_TRUE(svc.records.empty());
}

TEST_F(etsi014_handler, service_errors_map_to_codes) {
    EXPECT_EQ(request("sae-e", "GET", "/api/v1/keys/sae-b/status").status, 401);
    EXPECT_EQ(request("sae-a", "GET", "/api/v1/keys/sae-zz/status").body,
              error_json("unknown SAE ID"));
    svc.force_error = make_error_code(errc::unavailable);
    auto r = request("sae-a", "GET", "/api/v1/keys/sae-b/status");
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.body, error_json("Error on server side"));
    svc.force_error = std::make_error_code(std::errc::io_error);
    EXPECT_EQ(request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys").status, 503);
    svc.force_error = make_error_code(errc::unauthorized);
    r = request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys");
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.body, "");
}

TEST_F(etsi014_handler, limits_from_status) {
    auto r = request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys?number=129");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.body, error_json("number exceeds max_key_per_request (128)"));
    r = request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys?size=8200");
    EXPECT_EQ(r.body, error_json("size out of range: min_key_size 64, max_key_size 8192"));
    r = request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys?size=56");
    EXPECT_EQ(r.status, 400);
    svc.info.max_sae_id_count = 1;
    r = request("sae-a", "POST", "/api/v1/keys/sae-b/enc_keys",
                "{\"additional_slave_SAE_IDs\":[\"sae-c\",\"sae-d\"]}");
    EXPECT_EQ(r.body, error_json("too many additional_slave_SAE_IDs: max_SAE_ID_count is 1"));
    EXPECT_TRUE(svc.records.empty());
}

TEST_F(etsi014_handler, methods_and_paths) {
    auto r = request("sae-a", "POST", "/api/v1/keys/sae-b/status", "{}");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.allow, "GET");
    r = request("sae-a", "DELETE", "/api/v1/keys/sae-b/enc_keys");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.allow, "GET, POST");
    r = request("sae-a", "PUT", "/api/v1/keys/sae-b/dec_keys", "{}");
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.allow, "GET, POST");
    for (std::string_view path :
         {"/", "/api/v1/keys", "/api/v1/keys/", "/api/v1/keys/sae-b", "/api/v1/keys/sae-b/",
          "/api/v1/keys//status", "/api/v1/keys/sae-b/status/", "/api/v1/keys/sae-b/keys",
          "/api/v2/keys/sae-b/status", "/api/v1/keys/a/b/status", "/API/v1/keys/sae-b/status",
          "/api/v1/keys/sae-b/Status"}) {
        EXPECT_EQ(request("sae-a", "GET", path).status, 404) << path;
    }
}

TEST_F(etsi014_handler, sae_ids_in_the_path) {
    EXPECT_EQ(request("sae-a", "GET", "/api/v1/keys/sae%2Db/status").status, 200);
    EXPECT_EQ(request("sae-a", "GET", "/api/v1/keys/sae%2db/status").status, 200);
    auto r = request("sae-a", "GET", "/api/v1/keys/sae%C3%A4/status");
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.body, error_json("SAE ID shall be ASCII: unicode SAE IDs are not supported"));
    r = request("sae-a", "GET", "/api/v1/keys/%2E%2E/status");
    EXPECT_EQ(r.body, error_json("SAE ID shall not be '.' or contain '..'"));
    EXPECT_EQ(request("sae-a", "GET", "/api/v1/keys/../status").status, 400);
    EXPECT_EQ(request("sae-a", "GET", "/api/v1/keys/a%2Fb/status").status, 400);
    EXPECT_EQ(request("sae-a", "GET", "/api/v1/keys/a%00b/status").status, 400);
    EXPECT_EQ(request("sae-a", "GET", "/api/v1/keys/a%0Ab/status").status, 400);
    EXPECT_EQ(request("sae-a", "GET", "/api/v1/keys/a%zzb/status").body,
              error_json("invalid percent-encoding in SAE ID"));
    EXPECT_EQ(request("sae-a", "GET", "/api/v1/keys/a%2/status").status, 400);
    EXPECT_EQ(request("sae-a", "GET", "/api/v1/keys/" + std::string(129, 'x') + "/status").body,
              error_json("SAE ID too long (at most 128 bytes)"));
    EXPECT_EQ(request("sae-a", "GET", "/api/v1/keys/sae-a/status").body,
              error_json("master and slave SAE IDs shall differ"));
    // The caller's identity comes only from the certificate.
    EXPECT_EQ(request("", "GET", "/api/v1/keys/sae-b/status").status, 401);
    EXPECT_EQ(request("bad/caller", "GET", "/api/v1/keys/sae-b/status").status, 401);
}

TEST_F(etsi014_handler, connection_close_is_mirrored) {
    const auto r =
        request("sae-a", "GET", "/api/v1/keys/sae-b/status", {}, "Connection: close\r\n");
    EXPECT_EQ(r.connection, "close");
}

TEST_F(etsi014_handler, workspace_holds_no_key_bytes_after_a_response) {
    ASSERT_EQ(request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys?number=8&size=1024").status,
              200);
    for (auto b : ws.key_bytes()) {
        ASSERT_EQ(b, std::byte{0});
    }
    // Nor does the reserved area before the moved body.
    const auto keys = keys_of(request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys").body);
    ASSERT_EQ(keys.size(), 1u);
    const auto dec = request("sae-b", "GET", "/api/v1/keys/sae-a/dec_keys?key_ID=" + keys[0].first);
    ASSERT_EQ(dec.status, 200);
    const std::string_view all(out.data(), out.size());
    EXPECT_EQ(all.find(keys[0].second), all.rfind(keys[0].second));
    for (auto b : ws.key_bytes()) {
        ASSERT_EQ(b, std::byte{0});
    }
}

TEST_F(etsi014_handler, small_output_buffer_refuses_before_reserving) {
    std::vector<char> small(response_bytes_min);
    http::request req;
    const std::string raw =
        "GET /api/v1/keys/sae-b/enc_keys?number=128&size=8192 HTTP/1.1\r\nHost: h\r\n\r\n";
    ASSERT_EQ(http::parse(std::span<const char>(raw.data(), raw.size()), req, {}).status,
              http::parse_status::complete);
    const auto hr = handle(req, "sae-a", svc, ws, small);
    EXPECT_EQ(hr.http_status, 400);
    EXPECT_EQ(svc.available, 1000u);
    EXPECT_TRUE(svc.records.empty());
}

TEST_F(etsi014_handler, dec_keys_that_do_not_fit_the_buffer_stay_in_the_pool) {
    const auto enc = request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys?number=8&size=8192");
    ASSERT_EQ(enc.status, 200) << enc.body;
    const auto keys = keys_of(enc.body);
    ASSERT_EQ(keys.size(), 8u);
    std::string body = "{\"key_IDs\":[";
    for (std::size_t i = 0; i < keys.size(); ++i) {
        body += (i ? "," : "");
        body += "{\"key_ID\":\"" + keys[i].first + "\"}";
    }
    body += "]}";
    const std::string raw = "POST /api/v1/keys/sae-a/dec_keys HTTP/1.1\r\nHost: h\r\n"
                            "Content-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    http::request req;
    ASSERT_EQ(http::parse(std::span<const char>(raw.data(), raw.size()), req, {}).status,
              http::parse_status::complete);
    std::vector<char> small(response_bytes_min);
    const auto hr = handle(req, "sae-b", svc, ws, small);
    EXPECT_EQ(hr.http_status, 400);
    EXPECT_EQ(svc.records.size(), 8u);
    for (auto b : ws.key_bytes()) {
        ASSERT_EQ(b, std::byte{0});
    }
    // With a full-size buffer the same request delivers all eight.
    const auto dec = send("sae-b", raw);
    ASSERT_EQ(dec.status, 200);
    EXPECT_EQ(keys_of(dec.body), keys);
}

struct bad_request {
    const char* name;
    std::string_view method;
    std::string_view target;
    std::string_view body;
    int status;
    std::string_view message; // empty: any
};

TEST_F(etsi014_handler, malformed_request_corpus) {
    const bad_request cases[] = {
        {"truncated json", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"number\":", 400, {}},
        {"not json", "POST", "/api/v1/keys/sae-b/enc_keys", "number=1", 400, {}},
        {"json array", "POST", "/api/v1/keys/sae-b/enc_keys", "[1]", 400,
         "Key request shall be a JSON object"},
        {"number string", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"number\":\"1\"}", 400,
         "number shall be a positive integer"},
        {"number negative", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"number\":-1}", 400,
         "number shall be a positive integer"},
        {"number zero", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"number\":0}", 400,
         "number shall be a positive integer"},
        {"number fraction", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"number\":1.5}", 400,
         "number shall be a positive integer"},
        {"number huge", "POST", "/api/v1/keys/sae-b/enc_keys",
         "{\"number\":99999999999999999999999}", 400, "number too large"},
        {"number 2^64-1", "POST", "/api/v1/keys/sae-b/enc_keys",
         "{\"number\":18446744073709551615}", 400, "number exceeds max_key_per_request (128)"},
        {"size negative", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"size\":-256}", 400,
         "size shall be a positive integer"},
        {"size zero", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"size\":0}", 400,
         "size shall be a positive integer"},
        {"size null", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"size\":null}", 400,
         "size shall be a positive integer"},
        {"size exp", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"size\":2.56e2}", 400,
         "size shall be a positive integer"},
        {"duplicate member", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"number\":1,\"number\":2}",
         400, "duplicate member name in JSON object"},
        {"unknown member", "POST", "/api/v1/keys/sae-b/enc_keys", "{\"sizes\":256}", 400,
         "unknown field in Key request"},
        {"slaves not array", "POST", "/api/v1/keys/sae-b/enc_keys",
         "{\"additional_slave_SAE_IDs\":\"sae-c\"}", 400,
         "additional_slave_SAE_IDs shall be an array of strings"},
        {"unicode slave", "POST", "/api/v1/keys/sae-b/enc_keys",
         "{\"additional_slave_SAE_IDs\":[\"s\\u00e4e\"]}", 400,
         "SAE ID shall be ASCII: unicode SAE IDs are not supported"},
        {"traversal slave",
         "POST",
         "/api/v1/keys/sae-b/enc_keys",
         "{\"additional_slave_SAE_IDs\":[\"../etc\"]}",
         400,
         {}},
        {"slave repeats slave", "POST", "/api/v1/keys/sae-b/enc_keys",
         "{\"additional_slave_SAE_IDs\":[\"sae-b\"]}", 400,
         "additional_slave_SAE_IDs shall differ from master and slave"},
        {"slave twice", "POST", "/api/v1/keys/sae-b/enc_keys",
         "{\"additional_slave_SAE_IDs\":[\"sae-c\",\"sae-c\"]}", 400,
         "duplicate SAE ID in additional_slave_SAE_IDs"},
        {"mandatory not objects", "POST", "/api/v1/keys/sae-b/enc_keys",
         "{\"extension_mandatory\":[\"x\"]}", 400,
         "extension_mandatory shall be an array of objects"},
        {"deep json", "POST", "/api/v1/keys/sae-b/enc_keys",
         "{\"extension_optional\":[{\"a\":[[[[[[[[[]]]]]]]]]}]}", 400, "JSON nested too deeply"},
        {"bad utf8", "POST", "/api/v1/keys/sae-b/enc_keys",
         "{\"extension_optional\":[{\"\xff\":1}]}", 400, "invalid UTF-8 in JSON string"},
        {"lone surrogate", "POST", "/api/v1/keys/sae-b/enc_keys",
         "{\"extension_optional\":[{\"\\ud800\":1}]}", 400, "unpaired surrogate in JSON string"},
        {"get body", "GET", "/api/v1/keys/sae-b/enc_keys", "{}", 400, {}},
        {"get unknown param",
         "GET",
         "/api/v1/keys/sae-b/enc_keys?count=1",
         {},
         400,
         "unknown query parameter: GET enc_keys accepts only number and size"},
        {"get dup param",
         "GET",
         "/api/v1/keys/sae-b/enc_keys?number=1&number=2",
         {},
         400,
         "duplicate query parameter"},
        {"get negative",
         "GET",
         "/api/v1/keys/sae-b/enc_keys?number=-1",
         {},
         400,
         "number shall be a positive integer"},
        {"get huge",
         "GET",
         "/api/v1/keys/sae-b/enc_keys?size=184467440737095516160",
         {},
         400,
         "size too large"},
        {"get empty value",
         "GET",
         "/api/v1/keys/sae-b/enc_keys?number=",
         {},
         400,
         "number shall be a positive integer"},
        {"post query", "POST", "/api/v1/keys/sae-b/enc_keys?number=1", "{}", 400,
         "POST takes no query parameters"},
        {"status query",
         "GET",
         "/api/v1/keys/sae-b/status?x=1",
         {},
         400,
         "status takes no query parameters"},
        {"dec bare strings", "POST", "/api/v1/keys/sae-a/dec_keys",
         "{\"key_IDs\":[\"00000000-0000-4000-8000-000000000000\"]}", 400,
         "key_IDs entries shall be objects {\\\"key_ID\\\": \\\"<UUID>\\\"}, not bare strings"},
        {"dec empty list", "POST", "/api/v1/keys/sae-a/dec_keys", "{\"key_IDs\":[]}", 400,
         "key_IDs shall not be empty"},
        {"dec missing list", "POST", "/api/v1/keys/sae-a/dec_keys", "{}", 400, "key_IDs required"},
        {"dec empty body", "POST", "/api/v1/keys/sae-a/dec_keys", "", 400, "Key IDs body required"},
        {"dec bad uuid", "POST", "/api/v1/keys/sae-a/dec_keys",
         "{\"key_IDs\":[{\"key_ID\":\"not-a-uuid\"}]}", 400, "key_ID shall be a UUID"},
        {"dec uuid number", "POST", "/api/v1/keys/sae-a/dec_keys", "{\"key_IDs\":[{\"key_ID\":5}]}",
         400, "key_ID shall be a UUID"},
        {"dec entry unknown", "POST", "/api/v1/keys/sae-a/dec_keys",
         "{\"key_IDs\":[{\"key_ID\":\"00000000-0000-4000-8000-000000000000\",\"x\":1}]}", 400,
         "unknown field in key_IDs entry"},
        {"dec entry no id", "POST", "/api/v1/keys/sae-a/dec_keys", "{\"key_IDs\":[{}]}", 400,
         "key_ID required in every key_IDs entry"},
        {"dec duplicate id", "POST", "/api/v1/keys/sae-a/dec_keys",
         "{\"key_IDs\":[{\"key_ID\":\"00000000-0000-4000-8000-000000000000\"},"
         "{\"key_ID\":\"00000000-0000-4000-8000-000000000000\"}]}",
         400, "duplicate key_ID"},
        {"dec get no id",
         "GET",
         "/api/v1/keys/sae-a/dec_keys",
         {},
         400,
         "key_ID query parameter required"},
        {"dec get two ids",
         "GET",
         "/api/v1/keys/sae-a/dec_keys?key_ID=00000000-0000-4000-8000-000000000000&key_ID="
         "00000000-0000-4000-8000-000000000001",
         {},
         400,
         "duplicate query parameter: GET dec_keys takes one key_ID"},
        {"dec get bad id",
         "GET",
         "/api/v1/keys/sae-a/dec_keys?key_ID=1234",
         {},
         400,
         "key_ID shall be a UUID"},
        {"dec get other",
         "GET",
         "/api/v1/keys/sae-a/dec_keys?number=1",
         {},
         400,
         "unknown query parameter: GET dec_keys accepts only key_ID"},
        {"dec unknown top", "POST", "/api/v1/keys/sae-a/dec_keys",
         "{\"key_IDs\":[{\"key_ID\":\"00000000-0000-4000-8000-000000000000\"}],\"k\":1}", 400,
         "unknown field in Key IDs"},
        {"unicode path",
         "GET",
         "/api/v1/keys/%E2%80%AEsae/status",
         {},
         400,
         "SAE ID shall be ASCII: unicode SAE IDs are not supported"},
        {"traversal path", "GET", "/api/v1/keys/..%2F..%2Fetc/status", {}, 400, {}},
        {"wrong method", "PATCH", "/api/v1/keys/sae-b/enc_keys", {}, 405, "method not allowed"},
        {"head", "HEAD", "/api/v1/keys/sae-b/status", {}, 405, "method not allowed"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        const auto caller = std::string_view(c.target).find("/sae-a/") != std::string_view::npos
                                ? "sae-b"
                                : "sae-a";
        const auto r = request(caller, c.method, c.target, c.body);
        EXPECT_EQ(r.status, c.status) << r.body;
        if (!c.message.empty()) {
            EXPECT_EQ(r.body, error_json(c.message));
        }
    }
    EXPECT_TRUE(svc.records.empty());
    EXPECT_EQ(svc.available, 1000u);
}

TEST_F(etsi014_handler, oversized_body_is_refused) {
    workspace_limits lim;
    lim.body_bytes_max = 64;
    workspace small_ws(lim);
    const std::string body = "{\"extension_optional\":[{\"a\":\"" + std::string(100, 'x') + "\"}]}";
    const std::string raw = "POST /api/v1/keys/sae-b/enc_keys HTTP/1.1\r\nHost: h\r\n"
                            "Content-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    http::request req;
    ASSERT_EQ(http::parse(std::span<const char>(raw.data(), raw.size()), req, {}).status,
              http::parse_status::complete);
    const auto hr = handle(req, "sae-a", svc, small_ws, out);
    EXPECT_EQ(hr.http_status, 400);
    EXPECT_NE(std::string_view(out.data(), hr.response_bytes).find("JSON text too large"),
              std::string_view::npos);
}

TEST_F(etsi014_handler, reservations_full_is_503_with_table_size_and_expiry) {
    svc.force_error = make_error_code(errc::reservations_full);
    auto r = request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys");
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.body, error_json("reservation table full: too many keys reserved and not yet "
                                 "fetched"));
    set_reservation_limits({16384, 300});
    r = request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys");
    set_reservation_limits({});
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.body, error_json("reservation table full: 16384 keys reserved and not yet "
                                 "fetched; they expire after 300 s"));
    // The mandated server-side message is untouched.
    svc.force_error = make_error_code(errc::unavailable);
    EXPECT_EQ(request("sae-a", "GET", "/api/v1/keys/sae-b/enc_keys").body,
              error_json("Error on server side"));
}

} // namespace
} // namespace keyrail::dataplane::etsi014
