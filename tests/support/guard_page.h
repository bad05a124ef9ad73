#pragma once
// Places bytes right before a PROT_NONE page, so a parser that reads one byte past its input
// crashes instead of reading stale memory. Tests only (it does mmap, which parsers never do).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>

namespace keyrail::test {

class guard_page {
public:
    guard_page() noexcept {
        _page_bytes = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
        void* p = mmap(nullptr, 2 * _page_bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            std::abort();
        }
        _base = static_cast<char*>(p);
        if (mprotect(_base + _page_bytes, _page_bytes, PROT_NONE) != 0) {
            std::abort();
        }
    }
    ~guard_page() { munmap(_base, 2 * _page_bytes); }
    guard_page(const guard_page&) = delete;
    guard_page& operator=(const guard_page&) = delete;

    [[nodiscard]] std::size_t capacity_bytes() const noexcept { return _page_bytes; }

    // Copies data so that its last byte is the last readable byte. data.size() <= one page.
    [[nodiscard]] std::span<const char> place(std::string_view data) noexcept {
        if (data.size() > _page_bytes) {
            std::abort();
        }
        char* start = _base + _page_bytes - data.size();
        if (!data.empty()) {
            std::memcpy(start, data.data(), data.size());
        }
        return {start, data.size()};
    }

private:
    char* _base = nullptr;
    std::size_t _page_bytes = 0;
};

} // namespace keyrail::test
