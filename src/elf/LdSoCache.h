// /etc/ld.so.cache, as glibc's dynamic loader reads it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/Error.h"

namespace suture {

// The sonames ldconfig listed and where each one is, for x86-64 glibc
// programs, looked up as the loader does: a binary search of the table
// (elf/dl-cache.c), no index built, so that reading the cache while a new
// process's loader runs costs a copy and a few comparisons per name.
//
// Format: "glibc-ld.so.cache1.1", written by ldconfig since glibc 2.32 (and,
// before that, appended to the old "ld.so-1.7.0" table). Spec: glibc's
// sysdeps/generic/dl-cache.h (struct cache_file_new, struct
// file_entry_new). A 48-byte header (magic, version, nlibs, len_strings,
// flags, extension_offset), then nlibs 24-byte entries {int32 flags; uint32
// key, value; uint32 osversion; uint64 hwcap}, sorted by key in descending
// _dl_cache_libcmp order (numbers compare as numbers); key and value are
// offsets of NUL-terminated strings from the start of that header.
class LdSoCache {
  public:
    // Checks and keeps (a copy of) a whole cache file. Error bad_format when
    // it is neither format or its entries do not fit in it; unsupported for
    // an old-format-only cache (glibc before 2.32 without the new table).
    static Result<LdSoCache> parse(std::span<const std::byte> bytes, const std::string& name);

    // An empty cache: what the loader has when the file is missing.
    LdSoCache() = default;

    // Where the loader finds `soname` through the cache, nullopt when the
    // cache does not list it for x86-64. Of several entries for one soname
    // the baseline one (hwcap 0) is taken: a glibc-hwcaps entry is a
    // CPU-specific build of the same library, so the answer does not depend
    // on this CPU; one without a baseline is taken as it comes.
    std::optional<std::string> find(std::string_view soname) const;

    // How many x86-64 entries the cache has.
    std::size_t size() const { return x86_64_entries_; }

  private:
    std::optional<std::string_view> string_at(std::uint32_t offset) const;
    std::optional<std::string_view> key_of(std::size_t entry) const;

    std::vector<std::byte> table_;  // from the new-format header to the end of the file
    std::size_t count_ = 0;         // entries of every kind
    std::size_t x86_64_entries_ = 0;
};

}  // namespace suture
