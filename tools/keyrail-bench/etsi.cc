#include "tools/keyrail-bench/etsi.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include <openssl/crypto.h>

#include "dataplane/etsi014/base64.h"
#include "dataplane/etsi014/uuid.h"
#include "engine/assert.h"

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

std::uint64_t id_hash(const dataplane::etsi014::key_id& id) noexcept {
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    std::memcpy(&a, id.bytes.data(), 8);
    std::memcpy(&b, id.bytes.data() + 8, 8);
    // IDs are random UUIDv4s, but a faulty server's need not be: mix both halves.
    return (a ^ (b * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
}

void append_decimal(std::string& out, std::uint64_t v) {
    char digits[20];
    const auto end = std::to_chars(digits, digits + sizeof digits, v).ptr;
    out.append(digits, end);
}

} // namespace

key_set::~key_set() { clear(); }

void key_set::clear() noexcept {
    // Only the keys in use: the rest of the buffer was wiped when its keys were.
    if (_count != 0) {
        OPENSSL_cleanse(_bytes.get(), _count * _each_bytes);
    }
    _count = 0;
}

void key_set::reset(std::size_t count, std::size_t each_bytes) {
    clear();
    if (_ids.size() < count) {
        _ids.resize(count);
    }
    const std::size_t total = count * each_bytes;
    if (total > _bytes_capacity) {
        _bytes.reset(new std::byte[total]); // the old buffer was wiped by clear()
        _bytes_capacity = total;
    }
    _count = count;
    _each_bytes = each_bytes;
}

bool key_id_index::build(const key_set& keys) {
    std::size_t slots = 16;
    while (slots < 2 * keys.size()) {
        slots *= 2;
    }
    if (_slots.size() < slots) {
        _slots.resize(slots);
    }
    _mask = slots - 1;
    std::fill_n(_slots.begin(), slots, 0u);
    for (std::size_t i = 0; i < keys.size(); ++i) {
        std::size_t s = static_cast<std::size_t>(id_hash(keys.id(i)) >> 40) & _mask;
        while (_slots[s] != 0) {
            if (keys.id(_slots[s] - 1) == keys.id(i)) {
                return false;
            }
            s = (s + 1) & _mask;
        }
        _slots[s] = static_cast<std::uint32_t>(i + 1);
    }
    return true;
}

std::size_t key_id_index::find(const key_set& keys,
                               const dataplane::etsi014::key_id& id) const noexcept {
    std::size_t s = static_cast<std::size_t>(id_hash(id) >> 40) & _mask;
    while (_slots[s] != 0) {
        if (keys.id(_slots[s] - 1) == id) {
            return _slots[s] - 1;
        }
        s = (s + 1) & _mask;
    }
    return keys.size();
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
                             const std::string& master_sae_id, const key_set& keys) {
    static constexpr std::string_view body_open = "{\"key_IDs\":[";
    static constexpr std::string_view entry_open = "{\"key_ID\":\"";
    static constexpr std::string_view entry_close = "\"}";
    static constexpr std::string_view body_close = "]}";
    const std::size_t body_bytes =
        body_open.size() + body_close.size() +
        keys.size() *
            (entry_open.size() + dataplane::etsi014::uuid_text_bytes + entry_close.size()) +
        (keys.empty() ? 0 : keys.size() - 1);
    out.append("POST ").append(url.prefix).append("/api/v1/keys/").append(master_sae_id);
    out.append("/dec_keys HTTP/1.1\r\nHost: ");
    if (url.host.find(':') != std::string::npos) {
        out.append("[").append(url.host).append("]");
    } else {
        out.append(url.host);
    }
    if (url.port != 443) {
        out.append(":");
        append_decimal(out, url.port);
    }
    out.append("\r\nAccept: application/json\r\nContent-Type: application/json\r\n");
    out.append("Content-Length: ");
    append_decimal(out, body_bytes);
    out.append("\r\n\r\n");
    const std::size_t start = out.size();
    out.resize(start + body_bytes);
    char* o = out.data() + start;
    auto put = [&o](std::string_view text) {
        std::memcpy(o, text.data(), text.size());
        o += text.size();
    };
    put(body_open);
    for (std::size_t i = 0; i < keys.size(); ++i) {
        if (i != 0) {
            *o++ = ',';
        }
        put(entry_open);
        dataplane::etsi014::format_uuid(keys.id(i),
                                        std::span<char, dataplane::etsi014::uuid_text_bytes>(
                                            o, dataplane::etsi014::uuid_text_bytes));
        o += dataplane::etsi014::uuid_text_bytes;
        put(entry_close);
    }
    put(body_close);
    KEYRAIL_ASSERT(o == out.data() + out.size(), "dec_keys body sized %zu", body_bytes);
}

bool verifier::parse(std::string_view body, std::size_t tokens_count) {
    // Grows only: resizing down and up again would zero the tokens on every request.
    if (_tokens.size() < tokens_count) {
        _tokens.resize(tokens_count);
    }
    json::limits lim;
    lim.text_bytes_max = std::max<std::size_t>(body.size(), 1);
    lim.depth_max = 16;
    lim.members_max = 256;
    const json::parse_outcome outcome =
        json::parse(body, std::span(_tokens).first(tokens_count), lim);
    if (!outcome.ok) {
        return false;
    }
    _doc = outcome.doc;
    return _doc.tokens[0].type == json::kind::object;
}

bool verifier::text_of(std::size_t index, std::string& scratch, std::string_view& out) {
    const std::string_view raw = _doc.raw(index);
    if (raw.find('\\') == std::string_view::npos) {
        out = raw; // validated, and without escapes its own text
        return true;
    }
    // The size never shrinks while a container is checked, so the final cleanse covers every
    // byte written; before a reallocation frees the old buffer, it is wiped.
    if (scratch.capacity() < raw.size()) {
        OPENSSL_cleanse(scratch.data(), scratch.size());
    }
    scratch.resize(std::max(scratch.size(), raw.size()));
    std::size_t used = 0;
    if (!json::decode_string(raw, scratch, used)) {
        return false;
    }
    out = std::string_view(scratch.data(), used);
    return true;
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
            return "status: a count or size member is missing or not an unsigned "
                   "integer";
        }
    }
    if (!slave_sae_id.empty() &&
        !json::string_equals(_doc.raw(member(_doc, 0, "slave_SAE_ID")), slave_sae_id)) {
        return "status: slave_SAE_ID is not the one asked for";
    }
    return nullptr;
}

const char* verifier::check_key_container(std::string_view body, std::uint32_t number,
                                          std::uint32_t size_bits, key_set* keys_out) {
    // Tokens: root, "keys" and its array, then per key an object with up to four members
    // (8 tokens) and room for small extensions.
    if (!parse(body, 64 + std::size_t{number} * 24)) {
        return "key container: not a JSON object (or too many tokens)";
    }
    std::size_t keys = 0;
    std::size_t i = 1;
    for (std::uint32_t m = 0; m < _doc.tokens[0].count; ++m, i = _doc.tokens[i + 1].next) {
        if (json::string_equals(_doc.raw(i), "keys")) {
            keys = i + 1;
        } else if (!json::string_equals(_doc.raw(i), "key_container_extension")) {
            return "key container: unknown member";
        }
    }
    if (keys == 0 || _doc.tokens[keys].type != json::kind::array) {
        return "key container: no keys array";
    }
    if (_doc.tokens[keys].count != number) {
        return "key container: wrong number of keys";
    }
    auto& out = keys_out != nullptr ? *keys_out : _scratch;
    const std::size_t each_bytes = size_bits / 8;
    out.reset(number, each_bytes);
    const char* why = nullptr;
    std::size_t k = keys + 1;
    for (std::uint32_t n = 0; n < number && why == nullptr; ++n, k = _doc.tokens[k].next) {
        if (_doc.tokens[k].type != json::kind::object) {
            why = "key container: a key is not an object with key_ID and key";
            break;
        }
        // One pass over the members: the parser already refused duplicate names.
        std::size_t id = 0;
        std::size_t key = 0;
        std::size_t j = k + 1;
        for (std::uint32_t m = 0; m < _doc.tokens[k].count; ++m, j = _doc.tokens[j + 1].next) {
            const std::string_view name = _doc.raw(j);
            if (json::string_equals(name, "key_ID")) {
                id = j + 1;
            } else if (json::string_equals(name, "key")) {
                key = j + 1;
            } else if (!json::string_equals(name, "key_ID_extension") &&
                       !json::string_equals(name, "key_extension")) {
                why = "key container: a key is not an object with key_ID and key";
                break;
            }
        }
        if (why != nullptr) {
            break;
        }
        if (id == 0 || key == 0 || _doc.tokens[id].type != json::kind::string ||
            _doc.tokens[key].type != json::kind::string) {
            why = "key container: key_ID or key missing or not a string";
            break;
        }
        std::string_view text;
        if (!text_of(id, _text, text)) {
            why = "key container: bad key_ID string";
            break;
        }
        const auto uuid = dataplane::etsi014::parse_uuid(text);
        if (!uuid) {
            why = "key container: key_ID is not a UUID";
            break;
        }
        out._ids[n] = *uuid;
        if (!text_of(key, _text, text)) {
            why = "key container: key is not base64";
            break;
        }
        const auto decoded_bytes = dataplane::etsi014::base64_decoded_bytes(text);
        if (decoded_bytes && (*decoded_bytes != each_bytes || size_bits % 8 != 0)) {
            why = "key container: key length is not size/8 bytes";
            break;
        }
        if (!dataplane::etsi014::base64_decode(text, out.writable_bytes(n))) {
            why = "key container: key is not base64";
            break;
        }
    }
    if (!_text.empty()) {
        OPENSSL_cleanse(_text.data(),
                        _text.size()); // decoded key text, only with escapes
        _text.clear();
    }
    // Duplicate key_IDs within one container would let two parties use one key twice.
    if (why == nullptr && !_index.build(out)) {
        why = "key container: duplicate key_ID";
    }
    if (why != nullptr || keys_out == nullptr) {
        out.clear();
    }
    return why;
}

const char* verifier::check_matches(std::string_view body, const key_set& expected,
                                    std::uint32_t size_bits, bool& mismatch) {
    mismatch = false;
    const char* why = check_key_container(body, static_cast<std::uint32_t>(expected.size()),
                                          size_bits, &_scratch);
    if (why != nullptr) {
        return why; // _scratch is wiped
    }
    // A KME answers in request order: then one constant-time comparison covers every key.
    bool same_order = _scratch.key_bytes_each() == expected.key_bytes_each();
    for (std::size_t i = 0; same_order && i < _scratch.size(); ++i) {
        same_order = _scratch.id(i) == expected.id(i);
    }
    if (same_order) {
        const auto got = _scratch.all_bytes();
        mismatch = CRYPTO_memcmp(got.data(), expected.all_bytes().data(), got.size()) != 0;
    } else if (!_expected_index.build(expected)) {
        mismatch = true; // enc_keys' own check refuses duplicates; never here
    } else {
        // The IDs are distinct and as many as expected: finding each one is a bijection.
        for (std::size_t i = 0; i < _scratch.size(); ++i) {
            const std::size_t e = _expected_index.find(expected, _scratch.id(i));
            if (e == expected.size() || expected.bytes(e).size() != _scratch.bytes(i).size() ||
                CRYPTO_memcmp(expected.bytes(e).data(), _scratch.bytes(i).data(),
                              _scratch.bytes(i).size()) != 0) {
                mismatch = true;
            }
        }
    }
    _scratch.clear();
    return mismatch ? "dec_keys: keys differ from those enc_keys returned" : nullptr;
}

} // namespace keyrail::bench_client
