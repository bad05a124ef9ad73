#include "dataplane/store/seal.h"

#include "dataplane/errc.h"
#include "engine/assert.h"
#include "engine/hex.h"
#include "engine/log.h"
#include "engine/secure.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <openssl/evp.h>
#include <openssl/rand.h>

namespace keyrail::dataplane {
namespace {

constexpr char keyring_magic[8] = {'K', 'R', 'K', 'E', 'Y', 'R', 'G', '1'};
constexpr std::uint32_t keyring_version = 1;

// Parses 64 hex digits (optionally followed by whitespace) into 32 bytes. hex_value branches
// on the digit: acceptable for a key read once at start-up, where nobody can time it.
bool parse_hex_key(const char* text, std::size_t size, secret_key& out) noexcept {
    while (size > 0 &&
           (text[size - 1] == '\n' || text[size - 1] == '\r' || text[size - 1] == ' ')) {
        --size;
    }
    if (size != 2 * data_key_bytes) {
        return false;
    }
    for (std::size_t i = 0; i < data_key_bytes; ++i) {
        const int hi = hex_value(text[2 * i]);
        const int lo = hex_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out.bytes()[i] = static_cast<std::byte>(hi * 16 + lo);
    }
    return true;
}

std::uint64_t load64(const unsigned char* p) noexcept {
    std::uint64_t v = 0;
    std::memcpy(&v, p, sizeof v);
    return v;
}

} // namespace

bool key_id::equals(const key_id& other) const noexcept {
    return secure_equal(bytes.data(), other.bytes.data(), bytes.size());
}

void key_id::format(char (&out)[37]) const noexcept {
    static constexpr char digits[] = "0123456789abcdef";
    std::size_t o = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        const auto b = static_cast<unsigned>(bytes[i]);
        out[o++] = digits[b >> 4];
        out[o++] = digits[b & 15u];
    }
    out[o] = '\0';
}

secret_key::~secret_key() {
    secure_wipe(_bytes.data(), _bytes.size());
}

secret_key::secret_key(secret_key&& other) noexcept : _bytes(other._bytes) {
    secure_wipe(other._bytes.data(), other._bytes.size());
}

secret_key& secret_key::operator=(secret_key&& other) noexcept {
    if (this != &other) {
        _bytes = other._bytes;
        secure_wipe(other._bytes.data(), other._bytes.size());
    }
    return *this;
}

std::uint64_t checksum64(const void* data, std::size_t size) noexcept {
    // A word-at-a-time multiply-rotate hash with a final avalanche (xxhash-like constants).
    constexpr std::uint64_t p1 = 0x9e3779b185ebca87ull;
    constexpr std::uint64_t p2 = 0xc2b2ae3d27d4eb4full;
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t h = 0x27d4eb2f165667c5ull ^ (size * p1);
    std::size_t i = 0;
    for (; i + 8 <= size; i += 8) {
        h ^= load64(p + i) * p2;
        h = ((h << 31) | (h >> 33)) * p1;
    }
    std::uint64_t tail = 0;
    for (std::size_t s = 0; i < size; ++i, s += 8) {
        tail |= std::uint64_t{p[i]} << s;
    }
    h ^= tail * p2;
    h ^= h >> 33;
    h *= p2;
    h ^= h >> 29;
    h *= p1;
    h ^= h >> 32;
    return h;
}

result<secret_key> load_master_key(const master_key_source& source) noexcept {
    secret_key key;
    if (source.from == master_key_source::kind::env) {
        const char* value = std::getenv(source.name.c_str());
        if (value == nullptr || *value == '\0') {
            return fail(errc::master_key_missing);
        }
        if (!parse_hex_key(value, std::strlen(value), key)) {
            return fail(errc::master_key_invalid);
        }
        return key;
    }
    const int fd = ::open(source.name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return fail(errno == ENOENT ? std::error_code(errc::master_key_missing)
                                    : errno_error(errno));
    }
    // The master key unlocks every stored key: say so when others can read its file.
    struct stat st {};
    if (::fstat(fd, &st) == 0 && ((st.st_mode & 077) != 0 || st.st_uid != ::geteuid())) {
        KEYRAIL_LOG(warn, "store",
                    "master key file %s has mode %03o and owner uid %u: it should be readable "
                    "by this user only (chmod 600)",
                    source.name.c_str(), static_cast<unsigned>(st.st_mode & 0777),
                    static_cast<unsigned>(st.st_uid));
    }
    char text[2 * data_key_bytes + 8];
    const ssize_t got = ::read(fd, text, sizeof text);
    const int read_errno = errno;
    ::close(fd);
    if (got < 0) {
        secure_wipe(text, sizeof text);
        return fail(errno_error(read_errno));
    }
    const auto size = static_cast<std::size_t>(got);
    bool ok = false;
    if (size == data_key_bytes) {
        std::memcpy(key.bytes().data(), text, data_key_bytes);
        ok = true;
    } else {
        ok = parse_hex_key(text, size, key);
    }
    secure_wipe(text, sizeof text);
    if (!ok) {
        return fail(errc::master_key_invalid);
    }
    return key;
}

// Layout: magic[8] version u32 reserved u32 nonce[12] wrapped[32] tag[16] pad[12] checksum u64.
result<void> wrap_data_key(const secret_key& master, const secret_key& data,
                           std::span<std::byte, keyring_file_bytes> out) noexcept {
    std::memset(out.data(), 0, out.size());
    std::memcpy(out.data(), keyring_magic, 8);
    std::memcpy(out.data() + 8, &keyring_version, 4);
    std::byte* nonce = out.data() + 16;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce), gcm_nonce_bytes) != 1) {
        return fail(errc::crypto_failure);
    }
    chunk_cipher cipher;
    if (auto r = cipher.init(master); !r) {
        return r;
    }
    if (auto r = cipher.seal(std::span<const std::byte, gcm_nonce_bytes>(nonce, 12),
                             std::span<const std::byte>(out.data(), 16), data.bytes(),
                             out.data() + 28, std::span<std::byte, 16>(out.data() + 60, 16));
        !r) {
        return r;
    }
    const std::uint64_t sum = checksum64(out.data(), keyring_file_bytes - 8);
    std::memcpy(out.data() + keyring_file_bytes - 8, &sum, 8);
    return {};
}

result<secret_key> unwrap_data_key(const secret_key& master,
                                   std::span<const std::byte> file_bytes) noexcept {
    if (file_bytes.size() != keyring_file_bytes ||
        std::memcmp(file_bytes.data(), keyring_magic, 8) != 0) {
        return fail(errc::keyring_corrupt);
    }
    std::uint64_t sum = 0;
    std::memcpy(&sum, file_bytes.data() + keyring_file_bytes - 8, 8);
    if (sum != checksum64(file_bytes.data(), keyring_file_bytes - 8)) {
        return fail(errc::keyring_corrupt);
    }
    std::uint32_t version = 0;
    std::memcpy(&version, file_bytes.data() + 8, 4);
    if (version != keyring_version) {
        return fail(errc::keyring_corrupt);
    }
    chunk_cipher cipher;
    if (auto r = cipher.init(master); !r) {
        return fail(r.error());
    }
    secret_key data;
    auto opened =
        cipher.open(std::span<const std::byte, gcm_nonce_bytes>(file_bytes.data() + 16, 12),
                    file_bytes.subspan(0, 16), file_bytes.subspan(28, 32), data.bytes().data(),
                    std::span<const std::byte, 16>(file_bytes.data() + 60, 16));
    if (!opened) {
        // The checksum matched, so the file is intact: the tag failed on the master key.
        return fail(opened.error() == errc::segment_bad_tag
                        ? std::error_code(errc::wrong_master_key)
                        : opened.error());
    }
    return data;
}

result<secret_key> random_secret_key() noexcept {
    secret_key key;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(key.bytes().data()), data_key_bytes) != 1) {
        return fail(errc::crypto_failure);
    }
    return key;
}

result<key_id> random_key_id() noexcept {
    key_id id;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(id.bytes.data()), id.bytes.size()) != 1) {
        return fail(errc::crypto_failure);
    }
    // RFC 9562 version 4, variant 10.
    id.bytes[6] = (id.bytes[6] & std::byte{0x0f}) | std::byte{0x40};
    id.bytes[8] = (id.bytes[8] & std::byte{0x3f}) | std::byte{0x80};
    return id;
}

key_id_pool::~key_id_pool() {
    secure_wipe(_bytes.data(), _bytes.size());
}

result<key_id> key_id_pool::next() noexcept {
    if (_used == ids_per_refill) {
        if (RAND_bytes(reinterpret_cast<unsigned char*>(_bytes.data()),
                       static_cast<int>(_bytes.size())) != 1) {
            return fail(errc::crypto_failure);
        }
        _used = 0;
    }
    key_id id;
    std::byte* p = _bytes.data() + 16 * _used++;
    std::memcpy(id.bytes.data(), p, 16); // overwritten by the next refill (seal.h)
    // RFC 9562 version 4, variant 10.
    id.bytes[6] = (id.bytes[6] & std::byte{0x0f}) | std::byte{0x40};
    id.bytes[8] = (id.bytes[8] & std::byte{0x3f}) | std::byte{0x80};
    return id;
}

bool key_id_pool::peek(std::size_t ahead, key_id& out) const noexcept {
    if (ahead >= ids_per_refill - _used) {
        return false;
    }
    std::memcpy(out.bytes.data(), _bytes.data() + 16 * (_used + ahead), 16);
    out.bytes[6] = (out.bytes[6] & std::byte{0x0f}) | std::byte{0x40};
    out.bytes[8] = (out.bytes[8] & std::byte{0x3f}) | std::byte{0x80};
    return true;
}

chunk_cipher::~chunk_cipher() {
    EVP_CIPHER_CTX_free(_enc);
    EVP_CIPHER_CTX_free(_dec);
}

result<void> chunk_cipher::init(const secret_key& data_key) noexcept {
    KEYRAIL_ASSERT(_enc == nullptr, "chunk_cipher initialised twice");
    _enc = EVP_CIPHER_CTX_new();
    _dec = EVP_CIPHER_CTX_new();
    if (_enc == nullptr || _dec == nullptr) {
        return fail(errc::crypto_failure);
    }
    const auto* key = reinterpret_cast<const unsigned char*>(data_key.bytes().data());
    if (EVP_EncryptInit_ex(_enc, EVP_aes_256_gcm(), nullptr, key, nullptr) != 1 ||
        EVP_DecryptInit_ex(_dec, EVP_aes_256_gcm(), nullptr, key, nullptr) != 1) {
        return fail(errc::crypto_failure);
    }
    return {};
}

result<void> chunk_cipher::seal(std::span<const std::byte, gcm_nonce_bytes> nonce,
                                std::span<const std::byte> aad,
                                std::span<const std::byte> plaintext, std::byte* out,
                                std::span<std::byte, gcm_tag_bytes> tag) noexcept {
    KEYRAIL_DEBUG_ASSERT(_enc != nullptr, "chunk_cipher not initialised");
    int len = 0;
    // The default IV length of GCM is 12 bytes; only the IV changes per call.
    if (EVP_EncryptInit_ex(_enc, nullptr, nullptr, nullptr,
                           reinterpret_cast<const unsigned char*>(nonce.data())) != 1 ||
        EVP_EncryptUpdate(_enc, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                          static_cast<int>(aad.size())) != 1 ||
        EVP_EncryptUpdate(_enc, reinterpret_cast<unsigned char*>(out), &len,
                          reinterpret_cast<const unsigned char*>(plaintext.data()),
                          static_cast<int>(plaintext.size())) != 1 ||
        EVP_EncryptFinal_ex(_enc, reinterpret_cast<unsigned char*>(out) + len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(_enc, EVP_CTRL_GCM_GET_TAG, gcm_tag_bytes, tag.data()) != 1) {
        return fail(errc::crypto_failure);
    }
    return {};
}

result<void> chunk_cipher::open(std::span<const std::byte, gcm_nonce_bytes> nonce,
                                std::span<const std::byte> aad,
                                std::span<const std::byte> ciphertext, std::byte* out,
                                std::span<const std::byte, gcm_tag_bytes> tag) noexcept {
    KEYRAIL_DEBUG_ASSERT(_dec != nullptr, "chunk_cipher not initialised");
    int len = 0;
    unsigned char tag_copy[gcm_tag_bytes];
    std::memcpy(tag_copy, tag.data(), gcm_tag_bytes);
    if (EVP_DecryptInit_ex(_dec, nullptr, nullptr, nullptr,
                           reinterpret_cast<const unsigned char*>(nonce.data())) != 1 ||
        EVP_DecryptUpdate(_dec, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                          static_cast<int>(aad.size())) != 1 ||
        EVP_DecryptUpdate(_dec, reinterpret_cast<unsigned char*>(out), &len,
                          reinterpret_cast<const unsigned char*>(ciphertext.data()),
                          static_cast<int>(ciphertext.size())) != 1 ||
        EVP_CIPHER_CTX_ctrl(_dec, EVP_CTRL_GCM_SET_TAG, gcm_tag_bytes, tag_copy) != 1) {
        return fail(errc::crypto_failure);
    }
    if (EVP_DecryptFinal_ex(_dec, reinterpret_cast<unsigned char*>(out) + len, &len) != 1) {
        secure_wipe(out, ciphertext.size());
        return fail(errc::segment_bad_tag);
    }
    return {};
}

} // namespace keyrail::dataplane
