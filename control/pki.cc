#include "control/pki.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <system_error>
#include <utility>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "control/errc.h"
#include "engine/log.h"

namespace keyrail::control::pki {
namespace {

template <auto free_fn> struct openssl_deleter {
    template <class T> void operator()(T *p) const noexcept { free_fn(p); }
};

using pkey_ptr = std::unique_ptr<EVP_PKEY, openssl_deleter<EVP_PKEY_free>>;
using x509_ptr = std::unique_ptr<X509, openssl_deleter<X509_free>>;
using bio_ptr = std::unique_ptr<BIO, openssl_deleter<BIO_free_all>>;
using bn_ptr = std::unique_ptr<BIGNUM, openssl_deleter<BN_free>>;
using asn1_int_ptr = std::unique_ptr<ASN1_INTEGER, openssl_deleter<ASN1_INTEGER_free>>;
using ext_ptr = std::unique_ptr<X509_EXTENSION, openssl_deleter<X509_EXTENSION_free>>;
using gens_ptr = std::unique_ptr<GENERAL_NAMES, openssl_deleter<GENERAL_NAMES_free>>;
using gen_ptr = std::unique_ptr<GENERAL_NAME, openssl_deleter<GENERAL_NAME_free>>;
using ia5_ptr = std::unique_ptr<ASN1_IA5STRING, openssl_deleter<ASN1_IA5STRING_free>>;

// RFC 5280 upper bound for a commonName.
constexpr std::size_t common_name_bytes_max = 64;
// No certificate or key PEM we write comes near this; anything larger is not ours.
constexpr std::size_t pem_file_bytes_max = 1 << 20;

// Logs and clears OpenSSL's error queue, then names the failure. The queue is cleared so a
// later, unrelated call does not report a stale error.
[[nodiscard]] std::error_code openssl_error(const char *what) noexcept {
    bool logged = false;
    for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
        std::array<char, 256> text{};
        ERR_error_string_n(e, text.data(), text.size());
        KEYRAIL_LOG(debug, "pki", "%s: %s", what, text.data());
        logged = true;
    }
    if (!logged) {
        KEYRAIL_LOG(debug, "pki", "%s failed", what);
    }
    return make_error_code(errc::openssl_failure);
}

[[nodiscard]] result<pkey_ptr> generate_p256_key() noexcept {
    pkey_ptr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    if (!key) {
        return fail(openssl_error("EVP_PKEY_Q_keygen(P-256)"));
    }
    return key;
}

// A random, positive, non-zero 128-bit serial (RFC 5280 allows up to 20 octets).
[[nodiscard]] result<void> set_random_serial(X509 *cert) noexcept {
    std::array<unsigned char, 16> bytes{};
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
        return fail(openssl_error("RAND_bytes"));
    }
    bytes[0] &= 0x7f; // positive in DER without a leading zero octet
    bytes[0] |= 0x40; // never zero, and always the full 16 octets
    bn_ptr bn(BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr));
    if (!bn) {
        return fail(openssl_error("BN_bin2bn"));
    }
    asn1_int_ptr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
    if (!serial || X509_set_serialNumber(cert, serial.get()) != 1) {
        return fail(openssl_error("X509_set_serialNumber"));
    }
    return {};
}

[[nodiscard]] result<void> set_validity(X509 *cert, long from_offset_s, long for_s) noexcept {
    if (for_s <= 0) {
        return fail(errc::invalid_spec);
    }
    if (from_offset_s > 0 && for_s > LONG_MAX - from_offset_s) {
        return fail(errc::invalid_spec);
    }
    if (X509_gmtime_adj(X509_getm_notBefore(cert), from_offset_s) == nullptr) {
        return fail(openssl_error("X509_gmtime_adj(notBefore)"));
    }
    if (X509_gmtime_adj(X509_getm_notAfter(cert), from_offset_s + for_s) == nullptr) {
        return fail(openssl_error("X509_gmtime_adj(notAfter)"));
    }
    return {};
}

[[nodiscard]] result<void> set_subject_cn(X509 *cert, const std::string &common_name) noexcept {
    if (common_name.empty() || common_name.size() > common_name_bytes_max) {
        return fail(errc::invalid_spec);
    }
    X509_NAME *name = X509_get_subject_name(cert);
    const auto *bytes = reinterpret_cast<const unsigned char *>(common_name.data());
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, bytes,
                                   static_cast<int>(common_name.size()), -1, 0) != 1) {
        return fail(openssl_error("X509_NAME_add_entry_by_txt(CN)"));
    }
    return {};
}

// Adds one extension in OpenSSL's config syntax ("critical,CA:TRUE"). ctx names the issuer and
// subject so the key identifiers can be computed.
[[nodiscard]] result<void> add_ext(X509 *cert, X509V3_CTX *ctx, int nid,
                                   const char *value) noexcept {
    ext_ptr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
    if (!ext) {
        return fail(openssl_error(value));
    }
    if (X509_add_ext(cert, ext.get(), -1) != 1) {
        return fail(openssl_error("X509_add_ext"));
    }
    return {};
}

// True if s is printable ASCII without spaces: what an IA5String SAN entry may safely hold.
[[nodiscard]] bool is_plain_ia5(std::string_view s) noexcept {
    if (s.empty()) {
        return false;
    }
    for (const char c : s) {
        if (c <= 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

[[nodiscard]] result<void> push_ia5_name(GENERAL_NAMES *gens, int type,
                                         const std::string &value) noexcept {
    if (!is_plain_ia5(value)) {
        return fail(errc::invalid_spec);
    }
    ia5_ptr text(ASN1_IA5STRING_new());
    if (!text || ASN1_STRING_set(text.get(), value.data(), static_cast<int>(value.size())) != 1) {
        return fail(openssl_error("ASN1_STRING_set"));
    }
    gen_ptr gen(GENERAL_NAME_new());
    if (!gen) {
        return fail(openssl_error("GENERAL_NAME_new"));
    }
    GENERAL_NAME_set0_value(gen.get(), type, text.release());
    if (sk_GENERAL_NAME_push(gens, gen.get()) == 0) {
        return fail(openssl_error("sk_GENERAL_NAME_push"));
    }
    static_cast<void>(gen.release()); // owned by gens now
    return {};
}

// Builds subjectAltName from typed values rather than a config string, so a comma or colon
// inside a URI cannot smuggle in another entry.
[[nodiscard]] result<void> add_san(X509 *cert, const cert_spec &spec) noexcept {
    if (spec.san_uris.empty() && spec.san_dns.empty() && spec.san_ips.empty()) {
        return {};
    }
    gens_ptr gens(sk_GENERAL_NAME_new_null());
    if (!gens) {
        return fail(openssl_error("sk_GENERAL_NAME_new_null"));
    }
    for (const auto &uri : spec.san_uris) {
        if (uri.find(':') == std::string::npos) {
            return fail(errc::invalid_spec); // a URI has a scheme
        }
        if (auto r = push_ia5_name(gens.get(), GEN_URI, uri); !r) {
            return r;
        }
    }
    for (const auto &dns : spec.san_dns) {
        if (auto r = push_ia5_name(gens.get(), GEN_DNS, dns); !r) {
            return r;
        }
    }
    for (const auto &ip : spec.san_ips) {
        gen_ptr gen(a2i_GENERAL_NAME(nullptr, nullptr, nullptr, GEN_IPADD, ip.c_str(), 0));
        if (!gen) {
            ERR_clear_error();
            return fail(errc::invalid_spec);
        }
        if (sk_GENERAL_NAME_push(gens.get(), gen.get()) == 0) {
            return fail(openssl_error("sk_GENERAL_NAME_push"));
        }
        static_cast<void>(gen.release());
    }
    if (X509_add1_ext_i2d(cert, NID_subject_alt_name, gens.get(), 0, X509V3_ADD_DEFAULT) != 1) {
        return fail(openssl_error("X509_add1_ext_i2d(subjectAltName)"));
    }
    return {};
}

[[nodiscard]] result<void> add_role_exts(X509 *cert, X509V3_CTX *ctx, cert_role role) noexcept {
    const char *basic = "critical,CA:FALSE";
    const char *usage = "critical,digitalSignature";
    const char *extended = nullptr;
    switch (role) {
    case cert_role::ca:
        basic = "critical,CA:TRUE";
        usage = "critical,keyCertSign,cRLSign";
        break;
    case cert_role::server:
        extended = "serverAuth";
        break;
    case cert_role::client:
        extended = "clientAuth";
        break;
    case cert_role::server_and_client:
        extended = "serverAuth,clientAuth";
        break;
    }
    if (auto r = add_ext(cert, ctx, NID_basic_constraints, basic); !r) {
        return r;
    }
    if (auto r = add_ext(cert, ctx, NID_key_usage, usage); !r) {
        return r;
    }
    if (extended != nullptr) {
        if (auto r = add_ext(cert, ctx, NID_ext_key_usage, extended); !r) {
            return r;
        }
    }
    return {};
}

[[nodiscard]] result<std::string> bio_to_string(BIO *bio) noexcept {
    char *data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    if (size < 0 || (size > 0 && data == nullptr)) {
        return fail(openssl_error("BIO_get_mem_data"));
    }
    try {
        return std::string(data, static_cast<std::size_t>(size));
    } catch (const std::bad_alloc &) {
        return fail(std::make_error_code(std::errc::not_enough_memory));
    }
}

// The memory BIO is secure-heap backed where available, and BUF_MEM_free clears it on free,
// so the key's PEM leaves no copy behind except the returned string.
[[nodiscard]] result<credential> to_credential(X509 *cert, EVP_PKEY *key) noexcept {
    bio_ptr cert_bio(BIO_new(BIO_s_mem()));
    bio_ptr key_bio(BIO_new(BIO_s_secmem()));
    if (!cert_bio || !key_bio) {
        return fail(openssl_error("BIO_new"));
    }
    if (PEM_write_bio_X509(cert_bio.get(), cert) != 1) {
        return fail(openssl_error("PEM_write_bio_X509"));
    }
    if (PEM_write_bio_PrivateKey(key_bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
        return fail(openssl_error("PEM_write_bio_PrivateKey"));
    }
    credential out;
    auto cert_pem = bio_to_string(cert_bio.get());
    if (!cert_pem) {
        return fail(cert_pem.error());
    }
    auto key_pem = bio_to_string(key_bio.get());
    if (!key_pem) {
        return fail(key_pem.error());
    }
    out.cert_pem = std::move(*cert_pem);
    out.key_pem = std::move(*key_pem);
    return out;
}

[[nodiscard]] result<x509_ptr> parse_cert(const std::string &pem) noexcept {
    bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (!bio) {
        return fail(openssl_error("BIO_new_mem_buf"));
    }
    x509_ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) {
        ERR_clear_error();
        return fail(errc::bad_pem);
    }
    return cert;
}

[[nodiscard]] result<pkey_ptr> parse_key(const std::string &pem) noexcept {
    bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (!bio) {
        return fail(openssl_error("BIO_new_mem_buf"));
    }
    pkey_ptr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (!key) {
        ERR_clear_error();
        return fail(errc::bad_pem);
    }
    return key;
}

// Both parsed, and the key is the certificate's.
[[nodiscard]] result<std::pair<x509_ptr, pkey_ptr>>
parse_credential(const credential &cred) noexcept {
    auto cert = parse_cert(cred.cert_pem);
    if (!cert) {
        return fail(cert.error());
    }
    auto key = parse_key(cred.key_pem);
    if (!key) {
        return fail(key.error());
    }
    if (X509_check_private_key(cert->get(), key->get()) != 1) {
        ERR_clear_error();
        return fail(errc::key_mismatch);
    }
    return std::pair<x509_ptr, pkey_ptr>(std::move(*cert), std::move(*key));
}

// Fills in everything but the issuer-dependent parts: version, serial, subject, key.
[[nodiscard]] result<x509_ptr> new_cert(const std::string &common_name, EVP_PKEY *key,
                                        long from_offset_s, long for_s) noexcept {
    x509_ptr cert(X509_new());
    if (!cert) {
        return fail(openssl_error("X509_new"));
    }
    if (X509_set_version(cert.get(), X509_VERSION_3) != 1) {
        return fail(openssl_error("X509_set_version"));
    }
    if (auto r = set_random_serial(cert.get()); !r) {
        return fail(r.error());
    }
    if (auto r = set_validity(cert.get(), from_offset_s, for_s); !r) {
        return fail(r.error());
    }
    if (auto r = set_subject_cn(cert.get(), common_name); !r) {
        return fail(r.error());
    }
    if (X509_set_pubkey(cert.get(), key) != 1) {
        return fail(openssl_error("X509_set_pubkey"));
    }
    return cert;
}

// The subject key id must exist before the authority key id is computed, because for a
// self-signed certificate the issuer's key id is the certificate's own.
[[nodiscard]] result<void> add_key_ids(X509 *cert, X509V3_CTX *ctx) noexcept {
    if (auto r = add_ext(cert, ctx, NID_subject_key_identifier, "hash"); !r) {
        return r;
    }
    return add_ext(cert, ctx, NID_authority_key_identifier, "keyid:always");
}

[[nodiscard]] result<void> sign(X509 *cert, EVP_PKEY *issuer_key) noexcept {
    if (X509_sign(cert, issuer_key, EVP_sha256()) <= 0) {
        return fail(openssl_error("X509_sign"));
    }
    return {};
}

// Writes all of data to fd, retrying short writes and EINTR.
[[nodiscard]] result<void> write_all(int fd, std::string_view data) noexcept {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail(errno_error(errno));
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}

class scoped_fd {
public:
    explicit scoped_fd(int fd) noexcept : _fd(fd) {}
    scoped_fd(const scoped_fd &) = delete;
    scoped_fd &operator=(const scoped_fd &) = delete;
    ~scoped_fd() {
        if (_fd >= 0) {
            ::close(_fd);
        }
    }
    [[nodiscard]] int get() const noexcept { return _fd; }
    // Closes now so the caller sees the error (close can report a failed write-back).
    [[nodiscard]] result<void> close() noexcept {
        const int fd = _fd;
        _fd = -1;
        if (::close(fd) != 0) {
            return fail(errno_error(errno));
        }
        return {};
    }

private:
    int _fd;
};

// Creates or replaces path with data at exactly the given mode (fchmod, so neither an existing
// file's looser mode nor the umask decides it).
[[nodiscard]] result<void> write_file(const std::filesystem::path &path, std::string_view data,
                                      mode_t mode) noexcept {
    std::error_code ec;
    if (path.has_parent_path()) {
        std::filesystem::create_directories(path.parent_path(), ec);
        if (ec) {
            return fail(ec);
        }
    }
    scoped_fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
    if (fd.get() < 0) {
        return fail(errno_error(errno));
    }
    if (::fchmod(fd.get(), mode) != 0) {
        return fail(errno_error(errno));
    }
    if (auto r = write_all(fd.get(), data); !r) {
        return r;
    }
    if (::fsync(fd.get()) != 0) {
        return fail(errno_error(errno));
    }
    return fd.close();
}

[[nodiscard]] result<std::string> read_file(const std::filesystem::path &path) noexcept {
    scoped_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
        return fail(errno_error(errno));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        return fail(errno_error(errno));
    }
    if (st.st_size < 0 || static_cast<std::size_t>(st.st_size) > pem_file_bytes_max) {
        return fail(errc::file_too_large);
    }
    // Sized once up front so the text is never reallocated, which would leave a copy of a
    // private key in freed memory.
    std::string text;
    try {
        text.resize(static_cast<std::size_t>(st.st_size));
    } catch (const std::bad_alloc &) {
        return fail(std::make_error_code(std::errc::not_enough_memory));
    }
    std::size_t done = 0;
    while (done < text.size()) {
        const ssize_t n = ::read(fd.get(), text.data() + done, text.size() - done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            const int err = errno;
            OPENSSL_cleanse(text.data(), text.size());
            return fail(errno_error(err));
        }
        if (n == 0) {
            break; // the file shrank under us; parse what is there
        }
        done += static_cast<std::size_t>(n);
    }
    text.resize(done);
    return text;
}

} // namespace

credential::~credential() {
    // resize() to the capacity zero-fills any tail left by an earlier, longer key, then the
    // whole buffer is cleansed.
    key_pem.resize(key_pem.capacity());
    OPENSSL_cleanse(key_pem.data(), key_pem.size());
}

result<credential> make_ca(const std::string &common_name, long valid_for_s) {
    auto key = generate_p256_key();
    if (!key) {
        return fail(key.error());
    }
    // One hour in the past, like an issued certificate, so a little clock skew between the
    // machine that made the CA and one that checks it does not matter.
    auto cert = new_cert(common_name, key->get(), -3600, valid_for_s);
    if (!cert) {
        return fail(cert.error());
    }
    X509 *x = cert->get();
    if (X509_set_issuer_name(x, X509_get_subject_name(x)) != 1) {
        return fail(openssl_error("X509_set_issuer_name"));
    }
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
    if (auto r = add_role_exts(x, &ctx, cert_role::ca); !r) {
        return fail(r.error());
    }
    if (auto r = add_key_ids(x, &ctx); !r) {
        return fail(r.error());
    }
    if (auto r = sign(x, key->get()); !r) {
        return fail(r.error());
    }
    return to_credential(x, key->get());
}

result<credential> issue(const credential &ca, const cert_spec &spec) {
    auto parsed = parse_credential(ca);
    if (!parsed) {
        return fail(parsed.error());
    }
    X509 *ca_cert = parsed->first.get();
    EVP_PKEY *ca_key = parsed->second.get();
    if (X509_check_ca(ca_cert) == 0) {
        return fail(errc::invalid_spec); // the "CA" cannot sign certificates
    }
    auto key = generate_p256_key();
    if (!key) {
        return fail(key.error());
    }
    auto cert = new_cert(spec.common_name, key->get(), spec.valid_from_offset_s, spec.valid_for_s);
    if (!cert) {
        return fail(cert.error());
    }
    X509 *x = cert->get();
    if (X509_set_issuer_name(x, X509_get_subject_name(ca_cert)) != 1) {
        return fail(openssl_error("X509_set_issuer_name"));
    }
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca_cert, x, nullptr, nullptr, 0);
    if (auto r = add_role_exts(x, &ctx, spec.role); !r) {
        return fail(r.error());
    }
    if (auto r = add_san(x, spec); !r) {
        return fail(r.error());
    }
    if (auto r = add_key_ids(x, &ctx); !r) {
        return fail(r.error());
    }
    if (auto r = sign(x, ca_key); !r) {
        return fail(r.error());
    }
    return to_credential(x, key->get());
}

result<void> write_files(const credential &cred, const std::filesystem::path &cert_path,
                         const std::filesystem::path &key_path) {
    if (auto r = write_file(key_path, cred.key_pem, 0600); !r) {
        return r;
    }
    return write_file(cert_path, cred.cert_pem, 0644);
}

result<credential> read_files(const std::filesystem::path &cert_path,
                              const std::filesystem::path &key_path) {
    auto cert_pem = read_file(cert_path);
    if (!cert_pem) {
        return fail(cert_pem.error());
    }
    credential out; // owns the key text from here, so every exit path wipes it
    auto key_pem = read_file(key_path);
    if (!key_pem) {
        return fail(key_pem.error());
    }
    out.cert_pem = std::move(*cert_pem);
    out.key_pem = std::move(*key_pem);
    if (auto parsed = parse_credential(out); !parsed) {
        return fail(parsed.error());
    }
    return out;
}

} // namespace keyrail::control::pki
