#include "elf/LdSoCache.h"

#include <cstdint>
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

std::uint32_t read_u32(std::span<const std::byte> bytes, std::size_t offset) {
    std::uint32_t value;
    std::memcpy(&value, bytes.data() + offset, sizeof value);
    return value;
}

std::uint64_t read_u64(std::span<const std::byte> bytes, std::size_t offset) {
    std::uint64_t value;
    std::memcpy(&value, bytes.data() + offset, sizeof value);
    return value;
}

// The string at `offset` of `table`, nullopt when it runs off its end.
std::optional<std::string_view> string_at(std::span<const std::byte> table, std::uint32_t offset) {
    if (offset >= table.size()) {
        return std::nullopt;
    }
    const char* start = reinterpret_cast<const char*>(table.data()) + offset;
    std::size_t length = strnlen(start, table.size() - offset);
    if (length == table.size() - offset) {
        return std::nullopt;
    }
    return std::string_view(start, length);
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
    std::size_t old_end = old_header_size + std::size_t{read_u32(bytes, 12)} * old_entry_size;
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
    std::size_t count = read_u32(table, 20);
    if ((table.size() - new_header_size) / new_entry_size < count) {
        return fail(ErrorCode::bad_format,
                    name + ": " + std::to_string(count) + " entries do not fit in the file");
    }
    LdSoCache cache;
    std::unordered_map<std::string, bool> baseline;  // soname -> its path is a hwcap-0 entry
    for (std::size_t i = 0; i < count; ++i) {
        std::size_t entry = new_header_size + i * new_entry_size;
        if (static_cast<std::int32_t>(read_u32(table, entry)) != x86_64_libc6) {
            continue;
        }
        auto key = string_at(table, read_u32(table, entry + 4));
        auto value = string_at(table, read_u32(table, entry + 8));
        if (!key || !value) {
            return fail(ErrorCode::bad_format,
                        name + ": entry " + std::to_string(i) + " points outside the file");
        }
        // A hwcap entry is a CPU-specific build of the same soname
        // (glibc-hwcaps/x86-64-v3/...): the baseline one stands for it, so
        // the answer does not depend on this CPU. One without a baseline is
        // taken as it comes.
        bool is_baseline = read_u64(table, entry + 16) == 0;
        auto [known, inserted] = baseline.try_emplace(std::string(*key), is_baseline);
        if (inserted || (is_baseline && !known->second)) {
            cache.paths_[std::string(*key)] = std::string(*value);
            known->second = is_baseline;
        }
    }
    return cache;
}

std::optional<std::string> LdSoCache::find(std::string_view soname) const {
    auto found = paths_.find(std::string(soname));
    return found != paths_.end() ? std::optional(found->second) : std::nullopt;
}

}  // namespace suture
