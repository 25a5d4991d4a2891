// /etc/ld.so.cache, as glibc's dynamic loader reads it.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/Error.h"

namespace suture {

// The sonames ldconfig listed and where each one is, for x86-64 glibc
// programs.
//
// Format: "glibc-ld.so.cache1.1", written by ldconfig since glibc 2.32 (and,
// before that, appended to the old "ld.so-1.7.0" table). Spec: glibc's
// sysdeps/generic/dl-cache.h (struct cache_file_new, struct
// file_entry_new). A 48-byte header (magic, version, nlibs, len_strings,
// flags, extension_offset), then nlibs 24-byte entries {int32 flags; uint32
// key, value; uint32 osversion; uint64 hwcap}; key and value are offsets of
// NUL-terminated strings from the start of that header.
class LdSoCache {
  public:
    // Parses a whole cache file. Error bad_format when it is neither format
    // or an entry points outside the file; unsupported for an old-format-only
    // cache (glibc before 2.32 without the new table).
    static Result<LdSoCache> parse(std::span<const std::byte> bytes, const std::string& name);

    // An empty cache: what the loader has when the file is missing.
    LdSoCache() = default;

    // Where the loader finds `soname` through the cache, nullopt when the
    // cache does not list it for x86-64.
    std::optional<std::string> find(std::string_view soname) const;

    std::size_t size() const { return paths_.size(); }

  private:
    std::unordered_map<std::string, std::string> paths_;  // soname -> path
};

}  // namespace suture
