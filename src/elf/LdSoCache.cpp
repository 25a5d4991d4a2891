#include "elf/LdSoCache.h"

#include <cstring>

namespace suture {

namespace {

constexpr std::string_view new_magic = "glibc-ld.so.cache1.1";
constexpr std::string_view old_magic = "ld.so-1.7.0";
constexpr std::size_t new_header_size = 48;
constexpr std::size_t new_entry_size = 24;
constexpr std::size_t old_header_size = 16;  // magic[11], padding, uint32 nlibs
constexpr std::size_t old_entry_size = 12;

// The flags of an entry ld-linux-x86-64.so.2 takes: FLAG_ELF_LIBC6 (3) |
// FLAG_X8664_LIB64 (0x0300) (sysdeps/unix/sysv/linux/x86_64/dl-cache.h).
// i386, x32 and libc5 entries differ.
constexpr std::int32_t x86_64_libc6 = 0x0303;

template <typename T>
T read_at(std::span<const std::byte> bytes, std::size_t offset) {
    T value;
    std::memcpy(&value, bytes.data() + offset, sizeof value);
    return value;
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// glibc's _dl_cache_libcmp (elf/dl-cache.c): runs of digits compare as
// numbers, a digit sorts after any other character.
int library_compare(std::string_view a, std::string_view b) {
    std::size_t i = 0;
    std::size_t j = 0;
    while (i < a.size()) {
        if (j == b.size()) {
            return 1;
        }
        if (is_digit(a[i]) && is_digit(b[j])) {
            std::uint64_t x = 0;
            std::uint64_t y = 0;
            for (; i < a.size() && is_digit(a[i]); ++i) {
                x = x * 10 + static_cast<std::uint64_t>(a[i] - '0');
            }
            for (; j < b.size() && is_digit(b[j]); ++j) {
                y = y * 10 + static_cast<std::uint64_t>(b[j] - '0');
            }
            if (x != y) {
                return x < y ? -1 : 1;
            }
        } else if (is_digit(a[i]) != is_digit(b[j])) {
            return is_digit(a[i]) ? 1 : -1;
        } else if (a[i] != b[j]) {
            return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]) ? -1 : 1;
        } else {
            ++i;
            ++j;
        }
    }
    return j == b.size() ? 0 : -1;
}

// Where the new-format table starts: at 0, or after an old-format table
// (aligned to 8, the alignment of struct cache_file_new).
std::optional<std::size_t> new_table_offset(std::span<const std::byte> bytes) {
    auto starts_with = [&](std::size_t at, std::string_view magic) {
        return bytes.size() >= at + magic.size() &&
               std::memcmp(bytes.data() + at, magic.data(), magic.size()) == 0;
    };
    if (starts_with(0, new_magic)) {
        return 0;
    }
    if (!starts_with(0, old_magic) || bytes.size() < old_header_size) {
        return std::nullopt;
    }
    std::size_t old_end =
        old_header_size + std::size_t{read_at<std::uint32_t>(bytes, 12)} * old_entry_size;
    std::size_t aligned = (old_end + 7) & ~std::size_t{7};
    return starts_with(aligned, new_magic) ? std::optional(aligned) : std::nullopt;
}

}  // namespace

Result<LdSoCache> LdSoCache::parse(std::span<const std::byte> bytes, const std::string& name) {
    auto start = new_table_offset(bytes);
    if (!start) {
        bool old_only = bytes.size() >= old_magic.size() &&
                        std::memcmp(bytes.data(), old_magic.data(), old_magic.size()) == 0;
        return old_only ? fail(ErrorCode::unsupported, name + ": only the old ld.so-1.7.0 format")
                        : fail(ErrorCode::bad_format, name + ": not an ld.so.cache");
    }
    std::span<const std::byte> table = bytes.subspan(*start);
    if (table.size() < new_header_size) {
        return fail(ErrorCode::bad_format, name + ": header truncated");
    }
    std::size_t count = read_at<std::uint32_t>(table, 20);
    if ((table.size() - new_header_size) / new_entry_size < count) {
        return fail(ErrorCode::bad_format,
                    name + ": " + std::to_string(count) + " entries do not fit in the file");
    }
    LdSoCache cache;
    cache.table_.assign(table.begin(), table.end());
    cache.count_ = count;
    for (std::size_t i = 0; i < count; ++i) {
        std::size_t entry = new_header_size + i * new_entry_size;
        cache.x86_64_entries_ += read_at<std::int32_t>(table, entry) == x86_64_libc6 ? 1 : 0;
    }
    return cache;
}

std::optional<std::string_view> LdSoCache::string_at(std::uint32_t offset) const {
    if (offset >= table_.size()) {
        return std::nullopt;
    }
    const char* start = reinterpret_cast<const char*>(table_.data()) + offset;
    std::size_t length = strnlen(start, table_.size() - offset);
    if (length == table_.size() - offset) {
        return std::nullopt;
    }
    return std::string_view(start, length);
}

std::optional<std::string_view> LdSoCache::key_of(std::size_t entry) const {
    return string_at(read_at<std::uint32_t>(table_, new_header_size + entry * new_entry_size + 4));
}

std::optional<std::string> LdSoCache::find(std::string_view soname) const {
    // The loader's binary search over a descending table.
    std::size_t left = 0;
    std::size_t right = count_;  // one past the end
    std::optional<std::size_t> hit;
    while (left < right && !hit) {
        std::size_t middle = left + (right - left) / 2;
        auto key = key_of(middle);
        if (!key) {
            return std::nullopt;  // a broken table: as if the cache had nothing
        }
        int order = library_compare(soname, *key);
        if (order == 0) {
            hit = middle;
        } else if (order < 0) {
            left = middle + 1;
        } else {
            right = middle;
        }
    }
    if (!hit) {
        return std::nullopt;
    }
    // Equal keys are neighbours: from the first of them, the baseline
    // x86-64 entry, else the first x86-64 one.
    std::size_t first = *hit;
    while (first > 0 && key_of(first - 1) == soname) {
        --first;
    }
    std::optional<std::string_view> chosen;
    for (std::size_t i = first; i < count_ && key_of(i) == soname; ++i) {
        std::size_t entry = new_header_size + i * new_entry_size;
        if (read_at<std::int32_t>(table_, entry) != x86_64_libc6) {
            continue;
        }
        auto value = string_at(read_at<std::uint32_t>(table_, entry + 8));
        bool baseline = read_at<std::uint64_t>(table_, entry + 16) == 0;
        if (value && (!chosen || baseline)) {
            chosen = value;
        }
        if (value && baseline) {
            break;
        }
    }
    return chosen ? std::optional<std::string>(*chosen) : std::nullopt;
}

}  // namespace suture
