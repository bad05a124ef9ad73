// Suite `etsi014_codec`: the CPU cost per key of the ETSI 014 enc_keys response path without the
// store and the network: the server's handle() for GET enc_keys (request parsing, key container
// JSON, UUID text, base64) against a key service that copies fixed keys, and keyrail-bench's
// verification of the same response (JSON, UUIDs, base64, paired byte comparison). Reference,
// measured in the same run: AES-256-GCM over the same response bytes, what TLS 1.3 spends on them
// anyway. Issue 3's target, 5,000,000 keys/s per server core, leaves 200 ns per key for everything.
// Pinned to the CPU it starts on; each figure is the median of several batches. --iterations N sets
// the calls per batch and --number N runs only N keys per request (for callgrind: per-call counts
// are the inclusive cost of the bench_* functions divided by their calls, batches x iterations).
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <openssl/evp.h>
#include <sched.h>

#include "bench/support/report.h"
#include "dataplane/etsi014/base64.h"
#include "dataplane/etsi014/handler.h"
#include "engine/http/parser.h"
#include "tools/keyrail-bench/etsi.h"

namespace {

using namespace keyrail;
namespace etsi = dataplane::etsi014;
using clock_type = std::chrono::steady_clock;

// Median over batches of the nanoseconds per call of op().
template <class F> double measure_ns(int batches, int per_batch, F&& op) {
    std::vector<double> ns;
    for (int b = 0; b < batches; ++b) {
        const auto t0 = clock_type::now();
        for (int i = 0; i < per_batch; ++i) {
            op();
        }
        const auto t1 = clock_type::now();
        ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / per_batch);
    }
    std::sort(ns.begin(), ns.end());
    return ns[ns.size() / 2];
}

std::uint64_t checksum = 0;

// Hands out the same fixed keys for every request: the handler's cost only.
class fixed_key_service final : public etsi::key_service {
public:
    explicit fixed_key_service(std::size_t keys_max) : _ids(keys_max), _bytes(keys_max * 64) {
        for (std::size_t i = 0; i < _ids.size(); ++i) {
            for (std::size_t b = 0; b < 16; ++b) {
                _ids[i].bytes[b] = static_cast<std::uint8_t>(i * 131 + b * 17 + 7);
            }
            // Bytes 0..3 carry the index itself: distinct IDs for any number of keys.
            for (std::size_t b = 0; b < 4; ++b) {
                _ids[i].bytes[b] = static_cast<std::uint8_t>(i >> (8 * b));
            }
            _ids[i].bytes[6] = static_cast<std::uint8_t>((_ids[i].bytes[6] & 0x0f) | 0x40);
            _ids[i].bytes[8] = static_cast<std::uint8_t>((_ids[i].bytes[8] & 0x3f) | 0x80);
        }
        for (std::size_t i = 0; i < _bytes.size(); ++i) {
            _bytes[i] = static_cast<std::byte>(i * 251 + 3);
        }
    }

    result<etsi::status_info> status(std::string_view master,
                                     std::string_view slave) noexcept override {
        etsi::status_info s{"kme-a", "kme-b", master, slave, 256, 1000000,
                            1000000, 1024,    8192,   64,    0,   0};
        return s;
    }

    result<void> enc_keys(const etsi::enc_request& req, std::span<etsi::key_id> ids_out,
                          std::span<std::byte> key_bytes_out) noexcept override {
        std::copy_n(_ids.begin(), req.number, ids_out.begin());
        std::memcpy(key_bytes_out.data(), _bytes.data(), key_bytes_out.size());
        return {};
    }

    result<void> dec_keys(const etsi::dec_request&, std::span<std::byte>,
                          std::span<std::uint32_t>) noexcept override {
        return fail(etsi::errc::not_found);
    }

private:
    std::vector<etsi::key_id> _ids;
    std::vector<std::byte> _bytes;
};

struct server_fixture {
    fixed_key_service service{1024};
    etsi::workspace ws{etsi::workspace_limits{}};
    std::vector<char> out = std::vector<char>(ws.response_bytes_max());
    std::string raw;
    engine::http::request req;

    explicit server_fixture(std::uint32_t number) {
        raw = "GET /api/v1/keys/sae-b/enc_keys?number=" + std::to_string(number) +
              "&size=256 HTTP/1.1\r\nHost: kme-a\r\nAccept: application/json\r\n\r\n";
        const auto pr = engine::http::parse(std::span<const char>(raw.data(), raw.size()), req, {});
        if (pr.status != engine::http::parse_status::complete) {
            std::fprintf(stderr, "etsi014_codec bench: request does not parse\n");
            std::exit(1);
        }
    }

    // The response body, for the client benches.
    std::string body() {
        const auto r = etsi::handle(req, "sae-a", service, ws, out);
        const std::string_view text(out.data(), r.response_bytes);
        return std::string(text.substr(text.find("\r\n\r\n") + 4));
    }
};

[[gnu::noinline]] void bench_server_enc_keys(server_fixture& f) {
    const auto r = etsi::handle(f.req, "sae-a", f.service, f.ws, f.out);
    checksum += r.response_bytes + static_cast<unsigned char>(f.out[r.response_bytes - 3]);
}

[[gnu::noinline]] void bench_client_verify(bench_client::verifier& v, const std::string& body,
                                           std::uint32_t number) {
    const char* why = v.check_key_container(body, number, 256, nullptr);
    if (why != nullptr) {
        std::fprintf(stderr, "etsi014_codec bench: %s\n", why);
        std::exit(1);
    }
    ++checksum;
}

[[gnu::noinline]] void bench_client_verify_keep(bench_client::verifier& v, const std::string& body,
                                                std::uint32_t number, bench_client::key_set& keys) {
    const char* why = v.check_key_container(body, number, 256, &keys);
    if (why != nullptr) {
        std::fprintf(stderr, "etsi014_codec bench: %s\n", why);
        std::exit(1);
    }
    checksum += keys.size();
}

[[gnu::noinline]] void bench_client_matches(bench_client::verifier& v, const std::string& body,
                                            const bench_client::key_set& keys) {
    bool mismatch = false;
    const char* why = v.check_matches(body, keys, 256, mismatch);
    if (why != nullptr || mismatch) {
        std::fprintf(stderr, "etsi014_codec bench: %s\n", why != nullptr ? why : "mismatch");
        std::exit(1);
    }
    ++checksum;
}

[[gnu::noinline]] void bench_base64_encode(const std::array<std::byte, 32>& raw,
                                           std::array<char, 44>& text) {
    checksum += etsi::base64_encode(raw, text);
    checksum += static_cast<unsigned char>(text[7]);
}

[[gnu::noinline]] void bench_format_uuid(const etsi::key_id& id,
                                         std::array<char, etsi::uuid_text_bytes>& text) {
    etsi::format_uuid(id, text);
    checksum += static_cast<unsigned char>(text[9]);
}

[[gnu::noinline]] void bench_aes_gcm(EVP_CIPHER_CTX* ctx, const std::string& in,
                                     std::vector<unsigned char>& out) {
    static const unsigned char key[32] = {1, 2, 3};
    static const unsigned char iv[12] = {4, 5, 6};
    int len = 0;
    int fin = 0;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key, iv) != 1 ||
        EVP_EncryptUpdate(ctx, out.data(), &len, reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size())) != 1 ||
        EVP_EncryptFinal_ex(ctx, out.data() + len, &fin) != 1) {
        std::fprintf(stderr, "etsi014_codec bench: AES-GCM failed\n");
        std::exit(1);
    }
    checksum += out[5];
}

} // namespace

int main(int argc, char** argv) {
    const auto args = bench::parse_suite_args(argc, argv);
    int per_batch = args.smoke ? 3 : 2000;
    std::vector<std::uint32_t> numbers = {100, 1};
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::string(argv[i]) == "--iterations") {
            per_batch = std::max(1, std::atoi(argv[i + 1]));
        } else if (std::string(argv[i]) == "--number") {
            // The fixture's max_key_per_request is 1024.
            numbers = {static_cast<std::uint32_t>(std::clamp(std::atoi(argv[i + 1]), 1, 1024))};
        }
    }
    const int batches = args.smoke ? 3 : 11;
    const int cpu = bench::pin_to_current_cpu();
    std::printf("etsi014_codec bench: cpu %d, %s, %d batches x %d calls, median\n", cpu,
                bench::cpu_model().c_str(), batches, per_batch);

    bench::report rep("etsi014_codec");
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    for (const std::uint32_t number : numbers) {
        server_fixture f(number);
        const std::string body = f.body();
        const double keys = number;
        const std::string n = std::to_string(number) + "x256";

        std::vector<unsigned char> sealed(body.size() + 16);
        const double aes =
            measure_ns(batches, per_batch, [&] { bench_aes_gcm(ctx, body, sealed); });
        const bench::measurement ref{"aes256gcm_" + n + "_body_ns_per_key", aes / keys, "ns/key"};

        const double server = measure_ns(batches, per_batch, [&] { bench_server_enc_keys(f); });
        rep.add({"server_enc_keys_" + n + "_ns_per_key", server / keys, "ns/key"}, ref);

        bench_client::verifier v;
        const double verify =
            measure_ns(batches, per_batch, [&] { bench_client_verify(v, body, number); });
        rep.add({"client_verify_" + n + "_ns_per_key", verify / keys, "ns/key"}, ref);

        bench_client::key_set kept;
        const double keep = measure_ns(batches, per_batch,
                                       [&] { bench_client_verify_keep(v, body, number, kept); });
        rep.add({"client_verify_keep_" + n + "_ns_per_key", keep / keys, "ns/key"}, ref);

        const double matches =
            measure_ns(batches, per_batch, [&] { bench_client_matches(v, body, kept); });
        rep.add({"client_check_matches_" + n + "_ns_per_key", matches / keys, "ns/key"}, ref);
        kept.clear();
    }
    EVP_CIPHER_CTX_free(ctx);

    std::array<std::byte, 32> raw{};
    for (std::size_t i = 0; i < raw.size(); ++i) {
        raw[i] = static_cast<std::byte>(i * 37 + 1);
    }
    std::array<char, 44> text{};
    std::array<char, etsi::uuid_text_bytes> uuid_text{};
    const etsi::key_id id{{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67,
                           0x89, 0xab, 0xcd, 0xef}};
    const int small_batch = per_batch * 50;
    const double copy = measure_ns(batches, small_batch, [&] {
        std::memcpy(text.data(), raw.data(), raw.size());
        checksum += static_cast<unsigned char>(text[3]);
    });
    const bench::measurement copy_ref{"memcpy_32B_ns", copy, "ns"};
    rep.add({"base64_encode_32B_ns",
             measure_ns(batches, small_batch, [&] { bench_base64_encode(raw, text); }), "ns"},
            copy_ref);
    rep.add({"format_uuid_ns",
             measure_ns(batches, small_batch, [&] { bench_format_uuid(id, uuid_text); }), "ns"},
            copy_ref);

    std::printf("checksum %llu\n", static_cast<unsigned long long>(checksum));
    if (!args.out.empty() && !rep.write(args.out)) {
        return 1;
    }
    return 0;
}
