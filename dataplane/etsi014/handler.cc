#include "dataplane/etsi014/handler.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>

#include "dataplane/etsi014/base64.h"
#include "engine/assert.h"
#include "engine/hex.h"
#include "engine/http/response.h"
#include "engine/secure.h"

namespace keyrail::dataplane::etsi014 {
namespace {

namespace http = engine::http;

// The body is written at this offset, then moved down behind the head once its length is
// known, so a response needs no second buffer.
constexpr std::size_t head_reserve_bytes = 256;
// {"key_ID":"<36>","key":""}, in the key container, rounded up.
constexpr std::size_t key_entry_overhead_bytes = 64;
// {"keys":[]}, rounded up.
constexpr std::size_t container_overhead_bytes = 16;

constexpr std::string_view api_prefix = "/api/v1/keys/";
constexpr std::string_view msg_not_found = "one or more keys specified are not found on KME";
constexpr std::string_view msg_size_multiple = "size shall be a multiple of 8";
constexpr std::string_view msg_extension_mandatory =
    "not all extension_mandatory parameters are supported";
constexpr std::string_view msg_server = "Error on server side";

enum class endpoint : std::uint8_t { status, enc_keys, dec_keys };

enum class decode_status : std::uint8_t { ok, malformed, too_long };

// RFC 3986 percent-decoding ('+' is not a space here: these are paths and plain queries).
decode_status percent_decode(std::string_view in, std::span<char> out,
                             std::size_t& out_bytes) noexcept {
    out_bytes = 0;
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '%') {
            if (i + 2 >= in.size()) {
                return decode_status::malformed;
            }
            const int hi = hex_value(in[i + 1]);
            const int lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0) {
                return decode_status::malformed;
            }
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
        }
        if (out_bytes == out.size()) {
            return decode_status::too_long;
        }
        out[out_bytes++] = c;
    }
    return decode_status::ok;
}

enum class uint_status : std::uint8_t { ok, invalid, overflow };

uint_status parse_decimal(std::string_view s, std::uint64_t& out) noexcept {
    if (s.empty()) {
        return uint_status::invalid;
    }
    std::uint64_t v = 0;
    for (char ch : s) {
        if (ch < '0' || ch > '9') {
            return uint_status::invalid;
        }
        const auto digit = static_cast<std::uint64_t>(ch - '0');
        if (v > (UINT64_MAX - digit) / 10) {
            return uint_status::overflow;
        }
        v = v * 10 + digit;
    }
    out = v;
    return uint_status::ok;
}

// Splits "a=1&b=2" into name/value pairs, skipping empty items.
struct query_param {
    std::string_view name;
    std::string_view value;
};

bool next_param(std::string_view& query, query_param& out) noexcept {
    while (!query.empty()) {
        const auto amp = query.find('&');
        const auto item = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (item.empty()) {
            continue;
        }
        const auto eq = item.find('=');
        out.name = item.substr(0, eq);
        out.value = eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
        return true;
    }
    return false;
}

std::size_t container_bytes_bound(std::size_t key_count, std::size_t key_bytes_total) noexcept {
    // Each key's base64 rounds up by at most 2 raw bytes.
    return container_overhead_bytes + key_count * key_entry_overhead_bytes +
           base64_encoded_bytes(key_bytes_total + 2 * key_count);
}

bool is_blank(std::string_view s) noexcept {
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

// One call of handle(): the request, the caller and where the answer goes.
class call {
public:
    call(const http::request& req, std::string_view caller, key_service& service, workspace& ws,
         std::span<char> out) noexcept
        : _req(req), _caller(caller), _service(service), _ws(ws), _out(out),
          _body(out.subspan(head_reserve_bytes)) {}

    handle_result run() noexcept {
        if (!_req.path.starts_with(api_prefix)) {
            return error(404, "unknown path");
        }
        const auto rest = _req.path.substr(api_prefix.size());
        const auto slash = rest.find('/');
        if (slash == std::string_view::npos || slash == 0) {
            return error(404, "unknown path");
        }
        const auto id_raw = rest.substr(0, slash);
        const auto op = rest.substr(slash + 1);
        endpoint ep{};
        if (op == "status") {
            ep = endpoint::status;
        } else if (op == "enc_keys") {
            ep = endpoint::enc_keys;
        } else if (op == "dec_keys") {
            ep = endpoint::dec_keys;
        } else {
            return error(404, "unknown path");
        }
        const bool is_get = _req.method == "GET";
        const bool is_post = _req.method == "POST";
        if (ep == endpoint::status && !is_get) {
            return method_not_allowed("GET");
        }
        if (!is_get && !is_post) {
            return method_not_allowed("GET, POST");
        }
        // No identity from the certificate: nothing may be served.
        if (!check_sae_id(_caller).empty()) {
            return unauthorized();
        }
        auto id_text = _ws.sae_text(0);
        std::size_t id_bytes = 0;
        switch (percent_decode(id_raw, id_text, id_bytes)) {
        case decode_status::malformed:
            return error(400, "invalid percent-encoding in SAE ID");
        case decode_status::too_long:
            return error(400, "SAE ID too long (at most 128 bytes)");
        case decode_status::ok:
            break;
        }
        const std::string_view id(id_text.data(), id_bytes);
        if (const auto why = check_sae_id(id); !why.empty()) {
            return error(400, why);
        }
        if (id == _caller) {
            return error(400, "master and slave SAE IDs shall differ");
        }
        switch (ep) {
        case endpoint::status:
            return status(id);
        case endpoint::enc_keys:
            return enc_keys(id, is_get);
        case endpoint::dec_keys:
            return dec_keys(id, is_get);
        }
        return error(404, "unknown path");
    }

private:
    // --- status ---------------------------------------------------------------------------

    handle_result status(std::string_view slave) noexcept {
        if (!_req.query.empty()) {
            return error(400, "status takes no query parameters");
        }
        if (!_req.body.empty()) {
            return error(400, "status takes no request body");
        }
        auto st = _service.status(_caller, slave);
        if (!st) {
            if (st.error() == errc::pending) {
                return retry();
            }
            return service_error(st.error());
        }
        _body.raw("{\"source_KME_ID\":");
        _body.string(st->source_kme_id);
        _body.raw(",\"target_KME_ID\":");
        _body.string(st->target_kme_id);
        _body.raw(",\"master_SAE_ID\":");
        _body.string(st->master_sae_id);
        _body.raw(",\"slave_SAE_ID\":");
        _body.string(st->slave_sae_id);
        _body.raw(",\"key_size\":");
        _body.uint(st->key_size_bits);
        _body.raw(",\"stored_key_count\":");
        _body.uint(st->stored_key_count);
        _body.raw(",\"max_key_count\":");
        _body.uint(st->max_key_count);
        _body.raw(",\"max_key_per_request\":");
        _body.uint(st->max_key_per_request);
        _body.raw(",\"max_key_size\":");
        _body.uint(st->max_key_size_bits);
        _body.raw(",\"min_key_size\":");
        _body.uint(st->min_key_size_bits);
        _body.raw(",\"max_SAE_ID_count\":");
        _body.uint(st->max_sae_id_count);
        _body.raw("}");
        return finish(200, true, {});
    }

    // --- enc_keys -------------------------------------------------------------------------

    struct key_request {
        std::uint64_t number = 1;
        bool has_size = false;
        std::uint64_t size_bits = 0;
        std::array<std::string_view, additional_slaves_max> slaves{};
        std::size_t slave_count = 0;
        bool mandatory_unsupported = false;
    };

    // A message for a bad count or size, or empty. `what` is "number" or "size".
    static std::string_view integer_message(json::integer_status s, bool is_size) noexcept {
        switch (s) {
        case json::integer_status::ok:
            return {};
        case json::integer_status::overflow:
            return is_size ? "size too large" : "number too large";
        case json::integer_status::negative:
        case json::integer_status::not_integer:
            break;
        }
        return is_size ? "size shall be a positive integer" : "number shall be a positive integer";
    }

    // Reads number and size from a GET query. Empty view on success.
    std::string_view read_enc_query(key_request& kr) noexcept {
        bool seen_number = false;
        std::string_view q = _req.query;
        query_param p;
        while (next_param(q, p)) {
            std::array<char, 16> name_buf{};
            std::array<char, 32> value_buf{};
            std::size_t name_bytes = 0;
            std::size_t value_bytes = 0;
            if (percent_decode(p.name, name_buf, name_bytes) != decode_status::ok) {
                return "unknown query parameter: GET enc_keys accepts only number and size";
            }
            const std::string_view name(name_buf.data(), name_bytes);
            const bool is_size = name == "size";
            if (name != "number" && !is_size) {
                return "unknown query parameter: GET enc_keys accepts only number and size";
            }
            if ((is_size && kr.has_size) || (!is_size && seen_number)) {
                return "duplicate query parameter";
            }
            std::uint64_t v = 0;
            const auto ds = percent_decode(p.value, value_buf, value_bytes);
            const auto us = ds == decode_status::ok
                                ? parse_decimal(std::string_view(value_buf.data(), value_bytes), v)
                                : (ds == decode_status::too_long ? uint_status::overflow
                                                                 : uint_status::invalid);
            if (us == uint_status::overflow) {
                return is_size ? "size too large" : "number too large";
            }
            if (us == uint_status::invalid) {
                return is_size ? "size shall be a positive integer"
                               : "number shall be a positive integer";
            }
            if (is_size) {
                kr.has_size = true;
                kr.size_bits = v;
            } else {
                seen_number = true;
                kr.number = v;
            }
        }
        return {};
    }

    // Reads a Key request body. Empty view on success.
    std::string_view read_key_request(key_request& kr) noexcept {
        const auto parsed = parse_json();
        if (!parsed.ok) {
            return parsed.error;
        }
        const auto& doc = parsed.doc;
        const auto& root = doc.tokens[0];
        if (root.type != json::kind::object) {
            return "Key request shall be a JSON object";
        }
        std::size_t k = 1;
        for (std::uint32_t m = 0; m < root.count; ++m, k = doc.tokens[k + 1].next) {
            const auto key = doc.raw(k);
            const std::size_t v = k + 1;
            const auto& val = doc.tokens[v];
            if (json::string_equals(key, "number") || json::string_equals(key, "size")) {
                const bool is_size = json::string_equals(key, "size");
                if (val.type != json::kind::number) {
                    return is_size ? "size shall be a positive integer"
                                   : "number shall be a positive integer";
                }
                std::uint64_t n = 0;
                if (auto why = integer_message(json::to_uint(doc.raw(v), n), is_size);
                    !why.empty()) {
                    return why;
                }
                if (is_size) {
                    kr.has_size = true;
                    kr.size_bits = n;
                } else {
                    kr.number = n;
                }
            } else if (json::string_equals(key, "additional_slave_SAE_IDs")) {
                if (val.type != json::kind::array) {
                    return "additional_slave_SAE_IDs shall be an array of strings";
                }
                if (val.count > additional_slaves_max) {
                    return "too many additional_slave_SAE_IDs";
                }
                std::size_t e = v + 1;
                for (std::uint32_t i = 0; i < val.count; ++i, e = doc.tokens[e].next) {
                    if (doc.tokens[e].type != json::kind::string) {
                        return "additional_slave_SAE_IDs shall be an array of strings";
                    }
                    auto buf = _ws.sae_text(1 + i);
                    std::size_t bytes = 0;
                    if (!json::decode_string(doc.raw(e), buf, bytes)) {
                        return "SAE ID too long (at most 128 bytes)";
                    }
                    const std::string_view id(buf.data(), bytes);
                    if (auto why = check_sae_id(id); !why.empty()) {
                        return why;
                    }
                    kr.slaves[kr.slave_count++] = id;
                }
            } else if (json::string_equals(key, "extension_mandatory") ||
                       json::string_equals(key, "extension_optional")) {
                const bool mandatory = json::string_equals(key, "extension_mandatory");
                if (val.type != json::kind::array) {
                    return mandatory ? "extension_mandatory shall be an array of objects"
                                     : "extension_optional shall be an array of objects";
                }
                std::size_t e = v + 1;
                for (std::uint32_t i = 0; i < val.count; ++i, e = doc.tokens[e].next) {
                    if (doc.tokens[e].type != json::kind::object) {
                        return mandatory ? "extension_mandatory shall be an array of objects"
                                         : "extension_optional shall be an array of objects";
                    }
                    // We implement no extension: any named mandatory parameter fails.
                    if (mandatory && doc.tokens[e].count > 0) {
                        kr.mandatory_unsupported = true;
                    }
                }
            } else {
                // ETSI 014 puts vendor parameters inside extension_mandatory/optional; an
                // unknown top-level member is a typo or a misunderstanding, so we say so.
                return "unknown field in Key request";
            }
        }
        return {};
    }

    handle_result enc_keys(std::string_view slave, bool is_get) noexcept {
        key_request kr;
        if (is_get) {
            if (!_req.body.empty()) {
                return error(400, "GET enc_keys takes no body: use POST for a Key request");
            }
            if (auto why = read_enc_query(kr); !why.empty()) {
                return error(400, why);
            }
        } else {
            if (!_req.query.empty()) {
                return error(400, "POST takes no query parameters");
            }
            // All Key request members are optional, so an empty body asks for the defaults.
            if (!is_blank(_req.body)) {
                if (auto why = read_key_request(kr); !why.empty()) {
                    return error(400, why);
                }
            }
        }
        if (kr.number == 0) {
            return error(400, "number shall be a positive integer");
        }
        if (kr.has_size && kr.size_bits == 0) {
            return error(400, "size shall be a positive integer");
        }
        if (kr.has_size && kr.size_bits % 8 != 0) {
            return error(400, msg_size_multiple);
        }
        if (kr.mandatory_unsupported) {
            return error(400, msg_extension_mandatory);
        }
        for (std::size_t i = 0; i < kr.slave_count; ++i) {
            if (kr.slaves[i] == _caller || kr.slaves[i] == slave) {
                return error(400, "additional_slave_SAE_IDs shall differ from master and slave");
            }
            for (std::size_t j = 0; j < i; ++j) {
                if (kr.slaves[i] == kr.slaves[j]) {
                    return error(400, "duplicate SAE ID in additional_slave_SAE_IDs");
                }
            }
        }
        auto st = _service.limits(_caller, slave);
        if (!st) {
            return service_error(st.error());
        }
        const std::uint64_t size_bits = kr.has_size ? kr.size_bits : st->key_size_bits;
        if (size_bits % 8 != 0 || size_bits == 0) {
            return error(503, msg_server); // a configuration error, not the client's
        }
        if (kr.slave_count > st->max_sae_id_count) {
            return error_fmt(400, "too many additional_slave_SAE_IDs: max_SAE_ID_count is %llu",
                             st->max_sae_id_count);
        }
        if (kr.number > st->max_key_per_request) {
            return error_fmt(400, "number exceeds max_key_per_request (%llu)",
                             st->max_key_per_request);
        }
        if (size_bits > st->max_key_size_bits || size_bits < st->min_key_size_bits) {
            return error_fmt2(400, "size out of range: min_key_size %llu, max_key_size %llu",
                              st->min_key_size_bits, st->max_key_size_bits);
        }
        const std::size_t each_bytes = static_cast<std::size_t>(size_bits / 8);
        const std::size_t number = static_cast<std::size_t>(kr.number);
        // Refuse before reserving anything if the answer could not be delivered whole.
        if (number > _ws.limits().keys_max || number > _ws.limits().key_bytes_max / each_bytes ||
            container_bytes_bound(number, number * each_bytes) > _out.size() - head_reserve_bytes) {
            return error(400, "requested keys exceed one response: ask for fewer or smaller keys");
        }
        enc_request er;
        er.master_sae_id = _caller;
        er.slave_sae_id = slave;
        er.additional_slave_sae_ids =
            std::span<const std::string_view>(kr.slaves.data(), kr.slave_count);
        er.number = static_cast<std::uint32_t>(number);
        er.size_bits = static_cast<std::uint32_t>(size_bits);
        const auto ids = _ws.ids().first(number);
        const auto keys = _ws.key_bytes().first(number * each_bytes);
        auto r = _service.enc_keys(er, ids, keys);
        if (!r) {
            secure_wipe(keys);
            if (r.error() == errc::pending) {
                return retry();
            }
            if (r.error() == make_error_code(errc::exhausted)) {
                // Quote fresh numbers so the client can pace itself.
                auto now = _service.status(_caller, slave);
                if (!now) {
                    if (now.error() == errc::pending) {
                        return retry();
                    }
                    return service_error(now.error()); // no counts to quote
                }
                return exhausted(kr.number, now->stored_key_count, now->key_rate_per_s);
            }
            return service_error(r.error());
        }
        write_container(ids, keys, [each_bytes](std::size_t) { return each_bytes; });
        secure_wipe(keys);
        return finish(200, true, {});
    }

    // --- dec_keys -------------------------------------------------------------------------

    // Reads the key IDs from a GET query or a POST body into the workspace.
    std::string_view read_dec_ids(bool is_get, std::size_t& count) noexcept {
        count = 0;
        const auto ids = _ws.ids();
        if (is_get) {
            if (!_req.body.empty()) {
                return "GET dec_keys takes no body: use POST for Key IDs";
            }
            std::string_view q = _req.query;
            query_param p;
            while (next_param(q, p)) {
                std::array<char, 16> name_buf{};
                std::array<char, 64> value_buf{};
                std::size_t name_bytes = 0;
                std::size_t value_bytes = 0;
                if (percent_decode(p.name, name_buf, name_bytes) != decode_status::ok ||
                    std::string_view(name_buf.data(), name_bytes) != "key_ID") {
                    return "unknown query parameter: GET dec_keys accepts only key_ID";
                }
                if (count != 0) {
                    return "duplicate query parameter: GET dec_keys takes one key_ID";
                }
                if (percent_decode(p.value, value_buf, value_bytes) != decode_status::ok) {
                    return "key_ID shall be a UUID";
                }
                const auto id = parse_uuid(std::string_view(value_buf.data(), value_bytes));
                if (!id) {
                    return "key_ID shall be a UUID";
                }
                ids[count++] = *id;
            }
            if (count == 0) {
                return "key_ID query parameter required";
            }
            return {};
        }
        if (!_req.query.empty()) {
            return "POST takes no query parameters";
        }
        if (is_blank(_req.body)) {
            return "Key IDs body required";
        }
        const auto parsed = parse_json();
        if (!parsed.ok) {
            return parsed.error;
        }
        const auto& doc = parsed.doc;
        const auto& root = doc.tokens[0];
        if (root.type != json::kind::object) {
            return "Key IDs shall be a JSON object";
        }
        bool seen_ids = false;
        std::size_t k = 1;
        for (std::uint32_t m = 0; m < root.count; ++m, k = doc.tokens[k + 1].next) {
            const auto key = doc.raw(k);
            const std::size_t v = k + 1;
            const auto& val = doc.tokens[v];
            if (json::string_equals(key, "key_IDs_extension")) {
                if (val.type != json::kind::object) {
                    return "key_IDs_extension shall be an object";
                }
                continue;
            }
            if (!json::string_equals(key, "key_IDs")) {
                return "unknown field in Key IDs";
            }
            seen_ids = true;
            if (val.type != json::kind::array) {
                return "key_IDs shall be an array of objects";
            }
            if (val.count == 0) {
                return "key_IDs shall not be empty";
            }
            if (val.count > ids.size()) {
                return "too many key_IDs in one request";
            }
            std::size_t e = v + 1;
            for (std::uint32_t i = 0; i < val.count; ++i, e = doc.tokens[e].next) {
                if (auto why = read_key_id_entry(doc, e, ids[count]); !why.empty()) {
                    return why;
                }
                for (std::size_t j = 0; j < count; ++j) {
                    if (ids[j] == ids[count]) {
                        return "duplicate key_ID";
                    }
                }
                ++count;
            }
        }
        if (!seen_ids) {
            return "key_IDs required";
        }
        return {};
    }

    static std::string_view read_key_id_entry(const json::document& doc, std::size_t e,
                                              key_id& out) noexcept {
        const auto& entry = doc.tokens[e];
        if (entry.type == json::kind::string) {
            return "key_IDs entries shall be objects {\"key_ID\": \"<UUID>\"}, not bare strings";
        }
        if (entry.type != json::kind::object) {
            return "key_IDs entries shall be objects {\"key_ID\": \"<UUID>\"}";
        }
        bool seen = false;
        std::size_t k = e + 1;
        for (std::uint32_t m = 0; m < entry.count; ++m, k = doc.tokens[k + 1].next) {
            const auto key = doc.raw(k);
            const auto& val = doc.tokens[k + 1];
            if (json::string_equals(key, "key_ID_extension")) {
                if (val.type != json::kind::object) {
                    return "key_ID_extension shall be an object";
                }
                continue;
            }
            if (!json::string_equals(key, "key_ID")) {
                return "unknown field in key_IDs entry";
            }
            if (val.type != json::kind::string) {
                return "key_ID shall be a UUID";
            }
            std::array<char, 64> buf{};
            std::size_t bytes = 0;
            if (!json::decode_string(doc.raw(k + 1), buf, bytes)) {
                return "key_ID shall be a UUID";
            }
            const auto id = parse_uuid(std::string_view(buf.data(), bytes));
            if (!id) {
                return "key_ID shall be a UUID";
            }
            out = *id;
            seen = true;
        }
        if (!seen) {
            return "key_ID required in every key_IDs entry";
        }
        return {};
    }

    handle_result dec_keys(std::string_view master, bool is_get) noexcept {
        std::size_t count = 0;
        if (auto why = read_dec_ids(is_get, count); !why.empty()) {
            return error(400, why);
        }
        // Offer the service only as many key bytes as the response can carry in base64.
        const std::size_t body_room = _out.size() - head_reserve_bytes;
        const std::size_t fixed = container_overhead_bytes + count * key_entry_overhead_bytes;
        if (fixed >= body_room) {
            return error(400, "too many key_IDs for one response");
        }
        const std::size_t room_raw = (body_room - fixed) / 4 * 3;
        const std::size_t slack = 2 * count;
        const std::size_t key_room =
            std::min(_ws.limits().key_bytes_max, room_raw > slack ? room_raw - slack : 0);
        dec_request dr;
        dr.slave_sae_id = _caller;
        dr.master_sae_id = master;
        dr.ids = _ws.ids().first(count);
        const auto keys = _ws.key_bytes().first(key_room);
        const auto sizes = _ws.key_sizes().first(count);
        auto r = _service.dec_keys(dr, keys, sizes);
        if (!r) {
            secure_wipe(keys);
            if (r.error() == errc::pending) {
                return retry();
            }
            return service_error(r.error());
        }
        std::size_t total = 0;
        for (auto s : sizes) {
            total += s;
        }
        KEYRAIL_ASSERT(total <= keys.size(), "service wrote %zu of %zu key bytes", total,
                       keys.size());
        write_container(dr.ids, keys.first(total),
                        [&sizes](std::size_t i) { return static_cast<std::size_t>(sizes[i]); });
        secure_wipe(keys.first(total));
        return finish(200, true, {});
    }

    // --- shared -------------------------------------------------------------------------

    // The service answers later (errc::pending): nothing is written, ask again.
    static handle_result retry() noexcept {
        handle_result later;
        later.retry = true;
        return later;
    }

    json::parse_outcome parse_json() noexcept {
        json::limits lim;
        lim.text_bytes_max = _ws.limits().body_bytes_max;
        auto parsed = json::parse(_req.body, _ws.tokens(), lim);
        if (!parsed.ok && parsed.error.empty()) {
            parsed.error = "Bad request format";
        }
        return parsed;
    }

    // The key container, straight into the body: its exact length first, then every byte in
    // place, with no bounds check per piece and no copy of the key bytes or their base64.
    template <class SizeOf>
    void write_container(std::span<const key_id> ids, std::span<const std::byte> keys,
                         SizeOf size_of) noexcept {
        static constexpr std::string_view container_open = "{\"keys\":[";
        static constexpr std::string_view id_open = "{\"key_ID\":\"";
        static constexpr std::string_view key_open = "\",\"key\":\"";
        static constexpr std::string_view entry_close = "\"}";
        static constexpr std::string_view container_close = "]}";
        constexpr std::size_t entry_fixed_bytes =
            id_open.size() + uuid_text_bytes + key_open.size() + entry_close.size();
        std::size_t total = container_open.size() + container_close.size();
        for (std::size_t i = 0; i < ids.size(); ++i) {
            total += (i != 0 ? 1 : 0) + entry_fixed_bytes + base64_encoded_bytes(size_of(i));
        }
        const auto dst = _body.reserve(total);
        if (dst.empty()) {
            return; // overflow: finish() answers 503 instead
        }
        char* o = dst.data();
        auto put = [&o](std::string_view text) {
            std::memcpy(o, text.data(), text.size());
            o += text.size();
        };
        put(container_open);
        std::size_t offset = 0;
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (i != 0) {
                *o++ = ',';
            }
            put(id_open);
            format_uuid(ids[i], std::span<char, uuid_text_bytes>(o, uuid_text_bytes));
            o += uuid_text_bytes;
            put(key_open);
            const std::size_t each = size_of(i);
            o += base64_encode(keys.subspan(offset, each),
                               std::span<char>(o, base64_encoded_bytes(each)));
            offset += each;
            put(entry_close);
        }
        put(container_close);
        KEYRAIL_ASSERT(o == dst.data() + dst.size(), "key container %zu bytes, sized %zu",
                       static_cast<std::size_t>(o - dst.data()), dst.size());
    }

    handle_result service_error(std::error_code ec) noexcept {
        if (ec.category() != etsi014_category()) {
            return error(503, msg_server);
        }
        switch (static_cast<errc>(ec.value())) {
        case errc::unauthorized:
            return unauthorized();
        case errc::not_found:
            return error(400, msg_not_found);
        case errc::unknown_sae:
            return error(400, "unknown SAE ID");
        case errc::size_unsupported:
            return error(400, "requested key size is not supported");
        case errc::number_unsupported:
            return error(400, "requested number of keys is not supported");
        case errc::too_many_slaves:
            return error(400, "too many additional_slave_SAE_IDs");
        case errc::buffer_too_small:
            return error(400, "requested keys exceed one response: ask for fewer keys");
        case errc::exhausted:
            return error(503, "insufficient key material");
        case errc::reservations_full:
            return reservations_full();
        case errc::link_unconfirmed:
            return error(503, "the key link to the slave SAE's KME is not confirmed: wrong "
                              "link secret, or the peer KME was never reached");
        case errc::pending: // answered by retry() before it gets here
        case errc::unavailable:
            break;
        }
        return error(503, msg_server);
    }

    // 503 that says why: keys were reserved and never fetched, and when they free up.
    handle_result reservations_full() noexcept {
        const reservation_limits lim = current_reservation_limits();
        char msg[192];
        if (lim.reservations_max != 0 && lim.key_expiry_s != 0) {
            std::snprintf(msg, sizeof msg,
                          "reservation table full: %llu keys reserved and not yet fetched; "
                          "they expire after %llu s",
                          static_cast<unsigned long long>(lim.reservations_max),
                          static_cast<unsigned long long>(lim.key_expiry_s));
        } else {
            std::snprintf(msg, sizeof msg,
                          "reservation table full: too many keys reserved and not yet fetched");
        }
        return error(503, msg);
    }

    // 503 that says how much there is and how fast it comes back, so clients back off well.
    handle_result exhausted(std::uint64_t requested, std::uint64_t available,
                            std::uint64_t rate) noexcept {
        char msg[192];
        std::snprintf(msg, sizeof msg,
                      "insufficient key material: requested %llu keys, %llu available, "
                      "refill rate %llu keys/s",
                      static_cast<unsigned long long>(requested),
                      static_cast<unsigned long long>(available),
                      static_cast<unsigned long long>(rate));
        return error(503, msg);
    }

    handle_result error_fmt(int code, const char* fmt, std::uint64_t a) noexcept {
        char msg[192];
        std::snprintf(msg, sizeof msg, fmt, static_cast<unsigned long long>(a));
        return error(code, msg);
    }

    handle_result error_fmt2(int code, const char* fmt, std::uint64_t a, std::uint64_t b) noexcept {
        char msg[192];
        std::snprintf(msg, sizeof msg, fmt, static_cast<unsigned long long>(a),
                      static_cast<unsigned long long>(b));
        return error(code, msg);
    }

    handle_result error(int code, std::string_view message) noexcept {
        reset_body();
        _body.raw("{\"message\":");
        _body.string(message);
        _body.raw("}");
        return finish(code, true, {});
    }

    handle_result unauthorized() noexcept {
        reset_body();
        return finish(401, false, {});
    }

    handle_result method_not_allowed(std::string_view allow) noexcept {
        reset_body();
        _body.raw("{\"message\":\"method not allowed\"}");
        const http::header allow_header[] = {{"Allow", allow}};
        return finish(405, true, allow_header);
    }

    void reset_body() noexcept {
        secure_wipe(_out.data() + head_reserve_bytes, _body.size());
        _body = json::writer(_out.subspan(head_reserve_bytes));
    }

    handle_result finish(int code, bool json_body, std::span<const http::header> extra) noexcept {
        if (_body.overflow()) {
            // Only a status with oversized configured IDs gets here: key responses are sized
            // before any key is reserved.
            secure_wipe(_out.data() + head_reserve_bytes, _out.size() - head_reserve_bytes);
            _body = json::writer(_out.subspan(head_reserve_bytes));
            _body.raw("{\"message\":\"Error on server side: response too large\"}");
            code = 503;
            json_body = true;
            extra = {};
        }
        http::response_head head;
        head.status = code;
        head.content_type = json_body ? "application/json" : "";
        head.content_length_bytes = _body.size();
        head.conn = _req.conn;
        head.extra_headers = extra;
        std::array<char, head_reserve_bytes> head_buf{};
        const auto head_bytes = http::write_head(head_buf, head);
        KEYRAIL_ASSERT(head_bytes.has_value(), "response head does not fit %zu bytes",
                       head_reserve_bytes);
        const std::size_t body_bytes = _body.size();
        std::memmove(_out.data() + *head_bytes, _out.data() + head_reserve_bytes, body_bytes);
        std::memcpy(_out.data(), head_buf.data(), *head_bytes);
        // The tail of the body's old position may still hold key material.
        secure_wipe(_out.data() + *head_bytes + body_bytes, head_reserve_bytes - *head_bytes);
        return {code, *head_bytes + body_bytes};
    }

    const http::request& _req;
    std::string_view _caller;
    key_service& _service;
    workspace& _ws;
    std::span<char> _out;
    json::writer _body;
};

} // namespace

workspace::workspace(const workspace_limits& lim)
    : _limits(lim), _ids(new key_id[lim.keys_max]), _key_bytes(new std::byte[lim.key_bytes_max]),
      _key_sizes(new std::uint32_t[lim.keys_max]), _tokens(new json::token[lim.json_tokens_max]),
      _sae_text(new char[(1 + additional_slaves_max) * sae_id_bytes_max]) {
    KEYRAIL_ASSERT(lim.keys_max > 0, "keys_max %zu", lim.keys_max);
    KEYRAIL_ASSERT(lim.json_tokens_max > 0, "json_tokens_max %zu", lim.json_tokens_max);
    secure_wipe(_key_bytes.get(), _limits.key_bytes_max);
}

workspace::~workspace() { secure_wipe(_key_bytes.get(), _limits.key_bytes_max); }

std::size_t workspace::response_bytes_max() const noexcept {
    return std::max(response_bytes_min,
                    head_reserve_bytes +
                        container_bytes_bound(_limits.keys_max, _limits.key_bytes_max));
}

std::span<char> workspace::sae_text(std::size_t slot) noexcept {
    KEYRAIL_ASSERT(slot <= additional_slaves_max, "slot %zu", slot);
    return {_sae_text.get() + slot * sae_id_bytes_max, sae_id_bytes_max};
}

handle_result handle(const http::request& req, std::string_view caller_sae_id, key_service& service,
                     workspace& ws, std::span<char> out) noexcept {
    KEYRAIL_ASSERT(out.size() >= response_bytes_min, "output buffer %zu < %zu", out.size(),
                   response_bytes_min);
    return call(req, caller_sae_id, service, ws, out).run();
}

} // namespace keyrail::dataplane::etsi014
