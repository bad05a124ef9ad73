#include "tools/keyrail-bench/etsi.h"

#include <algorithm>
#include <cstring>

#include <openssl/crypto.h>

#include "dataplane/etsi014/uuid.h"

namespace keyrail::bench_client {
namespace json = dataplane::etsi014::json;
namespace {

std::string host_header(const base_url& url) {
    // Appends only: GCC 12 at -O3 reports a false -Wrestrict on `":" + std::to_string(...)`.
    const bool v6 = url.host.find(':') != std::string::npos;
    std::string h;
    if (v6) {
        h.append("[").append(url.host).append("]");
    } else {
        h.append(url.host);
    }
    if (url.port != 443) {
        h.append(":").append(std::to_string(url.port));
    }
    return h;
}

std::string request(std::string_view method, const base_url& url, const std::string& path,
                    std::string_view body) {
    std::string out;
    out.reserve(160 + path.size() + body.size());
    out.append(method).append(" ").append(url.prefix).append(path).append(" HTTP/1.1\r\n");
    out.append("Host: ").append(host_header(url)).append("\r\n");
    out.append("Accept: application/json\r\n");
    if (method == "POST") {
        out.append("Content-Type: application/json\r\n");
        out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
    }
    out.append("\r\n").append(body);
    return out;
}

int base64_value(char c) noexcept {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

// The value token following member `name` of the object at index obj, or 0 if absent.
std::size_t member(const json::document& doc, std::size_t obj, std::string_view name) noexcept {
    std::size_t i = obj + 1;
    for (std::uint32_t m = 0; m < doc.tokens[obj].count; ++m) {
        if (json::string_equals(doc.raw(i), name)) {
            return i + 1;
        }
        i = doc.tokens[i + 1].next;
    }
    return 0;
}

bool only_members(const json::document& doc, std::size_t obj,
                  std::initializer_list<std::string_view> allowed) noexcept {
    std::size_t i = obj + 1;
    for (std::uint32_t m = 0; m < doc.tokens[obj].count; ++m) {
        bool known = false;
        for (auto name : allowed) {
            known = known || json::string_equals(doc.raw(i), name);
        }
        if (!known) {
            return false;
        }
        i = doc.tokens[i + 1].next;
    }
    return true;
}

bool decode(const json::document& doc, std::size_t index, std::string& out) {
    out.resize(doc.tokens[index].end - doc.tokens[index].start + 4);
    std::size_t used = 0;
    if (!json::decode_string(doc.raw(index), out, used)) {
        return false;
    }
    out.resize(used);
    return true;
}

} // namespace

void wipe_keys(std::vector<delivered_key>& keys) noexcept {
    for (auto& k : keys) {
        OPENSSL_cleanse(k.bytes.data(), k.bytes.size());
    }
    keys.clear();
}

std::string status_request(const base_url& url, const std::string& slave_sae_id) {
    return request("GET", url, "/api/v1/keys/" + slave_sae_id + "/status", {});
}

std::string enc_keys_request(const base_url& url, const std::string& slave_sae_id,
                             http_method method, std::uint32_t number, std::uint32_t size_bits) {
    const std::string path = "/api/v1/keys/" + slave_sae_id + "/enc_keys";
    if (method == http_method::get) {
        return request("GET", url,
                       path + "?number=" + std::to_string(number) +
                           "&size=" + std::to_string(size_bits),
                       {});
    }
    const std::string body = "{\"number\":" + std::to_string(number) +
                             ",\"size\":" + std::to_string(size_bits) + "}";
    return request("POST", url, path, body);
}

void append_dec_keys_request(std::string& out, const base_url& url,
                             const std::string& master_sae_id,
                             const std::vector<delivered_key>& keys) {
    std::string body = "{\"key_IDs\":[";
    for (std::size_t i = 0; i < keys.size(); ++i) {
        body.append(i == 0 ? "{\"key_ID\":\"" : ",{\"key_ID\":\"");
        body.append(keys[i].id.data(), keys[i].id.size());
        body.append("\"}");
    }
    body.append("]}");
    out.append(request("POST", url, "/api/v1/keys/" + master_sae_id + "/dec_keys", body));
}

bool base64_decode(std::string_view text, std::string& out) {
    out.clear();
    if (text.size() % 4 != 0) {
        return false;
    }
    out.reserve(text.size() / 4 * 3);
    for (std::size_t i = 0; i < text.size(); i += 4) {
        const bool last = i + 4 == text.size();
        int v[4];
        std::size_t pad = 0;
        for (std::size_t j = 0; j < 4; ++j) {
            const char c = text[i + j];
            if (c == '=' && last && j >= 2) {
                v[j] = 0;
                ++pad;
                continue;
            }
            if (pad != 0) {
                return false; // data after padding
            }
            v[j] = base64_value(c);
            if (v[j] < 0) {
                return false;
            }
        }
        const unsigned triple = static_cast<unsigned>(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
        out.push_back(static_cast<char>(triple >> 16 & 0xff));
        if (pad < 2) {
            out.push_back(static_cast<char>(triple >> 8 & 0xff));
        } else if ((triple & 0xffff) != 0) {
            return false;
        }
        if (pad < 1) {
            out.push_back(static_cast<char>(triple & 0xff));
        } else if ((triple & 0xff) != 0) {
            return false;
        }
    }
    return true;
}

bool verifier::parse(std::string_view body, std::size_t tokens_count) {
    _tokens.resize(tokens_count);
    json::limits lim;
    lim.text_bytes_max = std::max<std::size_t>(body.size(), 1);
    lim.depth_max = 16;
    lim.members_max = 256;
    const json::parse_outcome outcome = json::parse(body, _tokens, lim);
    if (!outcome.ok) {
        return false;
    }
    _doc = outcome.doc;
    return _doc.tokens[0].type == json::kind::object;
}

const char* verifier::check_status(std::string_view body, std::string_view slave_sae_id) {
    if (!parse(body, 256)) {
        return "status: not a JSON object";
    }
    for (auto name : {"source_KME_ID", "target_KME_ID", "master_SAE_ID", "slave_SAE_ID"}) {
        const std::size_t v = member(_doc, 0, name);
        if (v == 0 || _doc.tokens[v].type != json::kind::string) {
            return "status: a *_ID member is missing or not a string";
        }
    }
    for (auto name : {"key_size", "stored_key_count", "max_key_count", "max_key_per_request",
                      "max_key_size", "min_key_size", "max_SAE_ID_count"}) {
        const std::size_t v = member(_doc, 0, name);
        std::uint64_t n = 0;
        if (v == 0 || _doc.tokens[v].type != json::kind::number ||
            json::to_uint(_doc.raw(v), n) != json::integer_status::ok) {
            return "status: a count or size member is missing or not an unsigned integer";
        }
    }
    if (!slave_sae_id.empty() &&
        !json::string_equals(_doc.raw(member(_doc, 0, "slave_SAE_ID")), slave_sae_id)) {
        return "status: slave_SAE_ID is not the one asked for";
    }
    return nullptr;
}

const char* verifier::check_key_container(std::string_view body, std::uint32_t number,
                                          std::uint32_t size_bits,
                                          std::vector<delivered_key>* keys_out) {
    // Tokens: root, "keys" and its array, then per key an object with up to four members
    // (8 tokens) and room for small extensions.
    if (!parse(body, 64 + std::size_t{number} * 24)) {
        return "key container: not a JSON object (or too many tokens)";
    }
    if (!only_members(_doc, 0, {"keys", "key_container_extension"})) {
        return "key container: unknown member";
    }
    const std::size_t keys = member(_doc, 0, "keys");
    if (keys == 0 || _doc.tokens[keys].type != json::kind::array) {
        return "key container: no keys array";
    }
    if (_doc.tokens[keys].count != number) {
        return "key container: wrong number of keys";
    }
    auto& out = keys_out != nullptr ? *keys_out : _scratch;
    wipe_keys(out);
    out.resize(number);
    std::size_t k = keys + 1;
    for (std::uint32_t n = 0; n < number; ++n) {
        if (_doc.tokens[k].type != json::kind::object ||
            !only_members(_doc, k, {"key_ID", "key_ID_extension", "key", "key_extension"})) {
            return "key container: a key is not an object with key_ID and key";
        }
        const std::size_t id = member(_doc, k, "key_ID");
        const std::size_t key = member(_doc, k, "key");
        if (id == 0 || key == 0 || _doc.tokens[id].type != json::kind::string ||
            _doc.tokens[key].type != json::kind::string) {
            return "key container: key_ID or key missing or not a string";
        }
        if (!decode(_doc, id, _text)) {
            return "key container: bad key_ID string";
        }
        const auto uuid = dataplane::etsi014::parse_uuid(_text);
        if (!uuid) {
            return "key container: key_ID is not a UUID";
        }
        dataplane::etsi014::format_uuid(*uuid, std::span<char, 36>(out[n].id));
        if (!decode(_doc, key, _text) || !base64_decode(_text, out[n].bytes)) {
            OPENSSL_cleanse(_text.data(), _text.size());
            return "key container: key is not base64";
        }
        OPENSSL_cleanse(_text.data(), _text.size());
        if (out[n].bytes.size() * 8 != size_bits) {
            return "key container: key length is not size/8 bytes";
        }
        k = _doc.tokens[k].next;
    }
    // Duplicate key_IDs within one container would let two parties use one key twice.
    std::vector<std::array<char, 36>> ids;
    ids.reserve(out.size());
    for (const auto& key : out) {
        ids.push_back(key.id);
    }
    std::sort(ids.begin(), ids.end());
    if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) {
        return "key container: duplicate key_ID";
    }
    if (keys_out == nullptr) {
        wipe_keys(_scratch);
    }
    return nullptr;
}

const char* verifier::check_matches(std::string_view body,
                                    const std::vector<delivered_key>& expected,
                                    std::uint32_t size_bits, bool& mismatch) {
    mismatch = false;
    const char* why = check_key_container(body, static_cast<std::uint32_t>(expected.size()),
                                          size_bits, &_scratch);
    if (why != nullptr) {
        wipe_keys(_scratch);
        return why;
    }
    for (const auto& got : _scratch) {
        const auto it = std::find_if(expected.begin(), expected.end(),
                                     [&](const delivered_key& e) { return e.id == got.id; });
        if (it == expected.end() || it->bytes.size() != got.bytes.size() ||
            CRYPTO_memcmp(it->bytes.data(), got.bytes.data(), got.bytes.size()) != 0) {
            mismatch = true;
        }
    }
    wipe_keys(_scratch);
    return mismatch ? "dec_keys: keys differ from those enc_keys returned" : nullptr;
}

} // namespace keyrail::bench_client
