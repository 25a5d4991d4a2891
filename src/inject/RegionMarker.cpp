#include "inject/RegionMarker.h"

#include <cstring>

#include "base/Files.h"

namespace suture {

namespace {

// Fixed part (little-endian):
//   0  magic[8]            "SUTUREPR"
//   8  u32 version (1)     12 u32 marker_size
//  16  u64 region_size     24 u64 target_base
//  32  u64 applied_at_unix_ns
//  40  u32 level           44 u32 function_count
//  48  u8  build_id_length 49 u8 build_id[64]
// 113  u8  patch_id_length 114 char patch_id[63]
// 177  u8  flags (bit 0: callbacks block)  178 reserved up to 184
// 184  u64 retired_at_unix_ns (0: in use)
// then function_count entries of 48 bytes:
//   0 u64 target_offset  8 u64 target_size  16 u64 replacement_address
//  24 u32 jump_offset   28 u8 original[5]   33 reserved up to 48
// then, with flag bit 0, the 32-byte callbacks block: u64 pre_apply,
// post_apply, pre_revert, post_revert (offsets into the region, 0 = none);
// zeros up to a multiple of 64;
// then, only for a patch with a data region, the 64-byte data extension
// (told by marker_size alone: 64 more than the aligned part):
//   0 magic[8] "SUTUREDA"  8 u64 data_address  16 u64 data_size
//  24 reserved up to 64
// docs/patch-format.md, "Region marker", has the same table.
constexpr std::uint32_t marker_version = 1;
constexpr char data_extension_magic[8] = {'S', 'U', 'T', 'U', 'R', 'E', 'D', 'A'};

template <typename T>
void put(std::vector<std::byte>& out, std::size_t at, T value) {
    std::memcpy(out.data() + at, &value, sizeof value);
}

template <typename T>
T get(std::span<const std::byte> in, std::size_t at) {
    T value;
    std::memcpy(&value, in.data() + at, sizeof value);
    return value;
}

std::vector<unsigned char> from_hex(const std::string& hex) {
    std::vector<unsigned char> bytes;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        bytes.push_back(static_cast<unsigned char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    return bytes;
}

// The part before the functions.
void encode_fixed_part(std::vector<std::byte>& out, const RegionMarker& marker) {
    std::memcpy(out.data(), region_magic, sizeof region_magic);
    put<std::uint32_t>(out, 8, marker_version);
    put<std::uint32_t>(out, region_marker_size_offset, static_cast<std::uint32_t>(out.size()));
    put<std::uint64_t>(out, 16, marker.region_size);
    put<std::uint64_t>(out, 24, marker.target_base);
    put<std::uint64_t>(out, 32, marker.applied_at_unix_ns);
    put<std::uint32_t>(out, 40, marker.level);
    put<std::uint32_t>(out, 44, static_cast<std::uint32_t>(marker.functions.size()));
    auto build_id = from_hex(marker.target_build_id);
    build_id.resize(std::min<std::size_t>(build_id.size(), 64));
    put<std::uint8_t>(out, 48, static_cast<std::uint8_t>(build_id.size()));
    std::memcpy(out.data() + 49, build_id.data(), build_id.size());
    std::size_t id_length = std::min<std::size_t>(marker.patch_id.size(), 63);
    put<std::uint8_t>(out, 113, static_cast<std::uint8_t>(id_length));
    std::memcpy(out.data() + 114, marker.patch_id.data(), id_length);
    put<std::uint64_t>(out, region_marker_retired_offset, marker.retired_at_unix_ns);
}

void encode_functions(std::vector<std::byte>& out, const RegionMarker& marker) {
    for (std::size_t i = 0; i < marker.functions.size(); ++i) {
        const MarkedFunction& function = marker.functions[i];
        std::size_t at = region_marker_fixed_size + i * region_marker_function_size;
        put<std::uint64_t>(out, at, function.target_offset);
        put<std::uint64_t>(out, at + 8, function.target_size);
        put<std::uint64_t>(out, at + 16, function.replacement_address);
        put<std::uint32_t>(out, at + 24, function.jump_offset);
        std::memcpy(out.data() + at + 28, function.original.data(), function.original.size());
    }
}

// The callbacks block after the functions, and its flag.
void encode_callbacks(std::vector<std::byte>& out, const RegionMarker& marker) {
    if (!marker.callbacks.any()) {
        return;
    }
    put<std::uint8_t>(out, region_marker_flags_offset, region_marker_has_callbacks);
    std::size_t at =
        region_marker_fixed_size + marker.functions.size() * region_marker_function_size;
    put<std::uint64_t>(out, at, marker.callbacks.pre_apply);
    put<std::uint64_t>(out, at + 8, marker.callbacks.post_apply);
    put<std::uint64_t>(out, at + 16, marker.callbacks.pre_revert);
    put<std::uint64_t>(out, at + 24, marker.callbacks.post_revert);
}

// The data extension, the marker's last 64 bytes.
void encode_data_extension(std::vector<std::byte>& out, const RegionMarker& marker) {
    if (marker.data_size == 0) {
        return;
    }
    std::size_t at = out.size() - region_marker_data_extension_size;
    std::memcpy(out.data() + at, data_extension_magic, sizeof data_extension_magic);
    put<std::uint64_t>(out, at + 8, marker.data_address);
    put<std::uint64_t>(out, at + 16, marker.data_size);
}

// Which extensions a marker of `size` bytes holds: the flag names the
// callbacks block; the size left then says whether the data extension
// follows. Error if the size fits neither.
Result<MarkerExtensions> decode_extensions(std::span<const std::byte> bytes, std::uint32_t size,
                                           std::uint32_t function_count) {
    MarkerExtensions extensions;
    extensions.callbacks =
        (get<std::uint8_t>(bytes, region_marker_flags_offset) & region_marker_has_callbacks) != 0;
    std::size_t without_data = region_marker_size(function_count, extensions);
    extensions.data = size == without_data + region_marker_data_extension_size;
    if (function_count > 4096 || (size != without_data && !extensions.data) ||
        size > bytes.size()) {
        return fail(ErrorCode::bad_format, "region marker: inconsistent sizes");
    }
    return extensions;
}

Result<void> decode_fixed_part(std::span<const std::byte> bytes, RegionMarker& marker) {
    marker.region_size = get<std::uint64_t>(bytes, 16);
    marker.target_base = get<std::uint64_t>(bytes, 24);
    marker.applied_at_unix_ns = get<std::uint64_t>(bytes, 32);
    marker.level = get<std::uint32_t>(bytes, 40);
    marker.retired_at_unix_ns = get<std::uint64_t>(bytes, region_marker_retired_offset);
    std::uint8_t build_id_length = get<std::uint8_t>(bytes, 48);
    std::uint8_t id_length = get<std::uint8_t>(bytes, 113);
    if (build_id_length > 64 || id_length > 63 || id_length == 0) {
        return fail(ErrorCode::bad_format, "region marker: bad lengths");
    }
    marker.target_build_id =
        to_hex(reinterpret_cast<const unsigned char*>(bytes.data() + 49), build_id_length);
    marker.patch_id.assign(reinterpret_cast<const char*>(bytes.data() + 114), id_length);
    return {};
}

Result<void> decode_functions(std::span<const std::byte> bytes, std::uint32_t function_count,
                              RegionMarker& marker) {
    for (std::uint32_t i = 0; i < function_count; ++i) {
        std::size_t at = region_marker_fixed_size + i * region_marker_function_size;
        MarkedFunction function;
        function.target_offset = get<std::uint64_t>(bytes, at);
        function.target_size = get<std::uint64_t>(bytes, at + 8);
        function.replacement_address = get<std::uint64_t>(bytes, at + 16);
        function.jump_offset = get<std::uint32_t>(bytes, at + 24);
        if (function.jump_offset > 4 || function.target_size < function.jump_offset + jump_size) {
            return fail(ErrorCode::bad_format, "region marker: bad function entry");
        }
        std::memcpy(function.original.data(), bytes.data() + at + 28, function.original.size());
        marker.functions.push_back(function);
    }
    return {};
}

// Reads the callbacks block (the size was checked against the flag);
// every offset must lie inside the region.
Result<void> decode_callbacks(std::span<const std::byte> bytes, RegionMarker& marker) {
    std::size_t at =
        region_marker_fixed_size + marker.functions.size() * region_marker_function_size;
    MarkedCallbacks& callbacks = marker.callbacks;
    callbacks.pre_apply = get<std::uint64_t>(bytes, at);
    callbacks.post_apply = get<std::uint64_t>(bytes, at + 8);
    callbacks.pre_revert = get<std::uint64_t>(bytes, at + 16);
    callbacks.post_revert = get<std::uint64_t>(bytes, at + 24);
    for (std::uint64_t address :
         {callbacks.pre_apply, callbacks.post_apply, callbacks.pre_revert, callbacks.post_revert}) {
        if (address >= marker.region_size) {
            return fail(ErrorCode::bad_format, "region marker: a callback outside the region");
        }
    }
    return {};
}

// Reads the data extension, the last 64 of `size` bytes.
Result<void> decode_data_extension(std::span<const std::byte> bytes, std::uint32_t size,
                                   RegionMarker& marker) {
    std::size_t at = size - region_marker_data_extension_size;
    if (std::memcmp(bytes.data() + at, data_extension_magic, sizeof data_extension_magic) != 0) {
        return fail(ErrorCode::bad_format, "region marker: bad data extension");
    }
    marker.data_address = get<std::uint64_t>(bytes, at + 8);
    marker.data_size = get<std::uint64_t>(bytes, at + 16);
    if (marker.data_size == 0 || marker.data_size > (1ull << 32) ||
        marker.data_address % 4096 != 0 || marker.data_size % 4096 != 0) {
        return fail(ErrorCode::bad_format, "region marker: bad data region");
    }
    return {};
}

}  // namespace

MarkerExtensions marker_extensions(const RegionMarker& marker) {
    return MarkerExtensions{.callbacks = marker.callbacks.any(), .data = marker.data_size != 0};
}

std::size_t region_marker_size(std::size_t function_count, MarkerExtensions extensions) {
    std::size_t size = region_marker_fixed_size + function_count * region_marker_function_size +
                       (extensions.callbacks ? region_marker_callbacks_size : 0);
    return ((size + 63) & ~std::size_t{63}) +
           (extensions.data ? region_marker_data_extension_size : 0);
}

// 1. size the marker by its extensions; 2. the fixed part; 3. the functions;
// 4. the callbacks block (and flag); 5. the data extension at the end.
std::vector<std::byte> encode_region_marker(const RegionMarker& marker) {
    std::vector<std::byte> out(
        region_marker_size(marker.functions.size(), marker_extensions(marker)));
    encode_fixed_part(out, marker);
    encode_functions(out, marker);
    encode_callbacks(out, marker);
    encode_data_extension(out, marker);
    return out;
}

// 1. magic and version; 2. which extensions, from the flag and the size;
// 3. the fixed part; 4. the functions; 5. the callbacks block; 6. the data
// extension.
Result<RegionMarker> decode_region_marker(std::span<const std::byte> bytes) {
    if (bytes.size() < region_marker_fixed_size ||
        std::memcmp(bytes.data(), region_magic, sizeof region_magic) != 0) {
        return fail(ErrorCode::bad_format, "not a suture region marker");
    }
    if (get<std::uint32_t>(bytes, 8) != marker_version) {
        return fail(ErrorCode::unsupported,
                    "region marker version " + std::to_string(get<std::uint32_t>(bytes, 8)));
    }
    std::uint32_t size = get<std::uint32_t>(bytes, region_marker_size_offset);
    std::uint32_t function_count = get<std::uint32_t>(bytes, 44);
    auto extensions = decode_extensions(bytes, size, function_count);
    if (!extensions) {
        return tl::unexpected(extensions.error());
    }
    RegionMarker marker;
    Result<void> decoded = decode_fixed_part(bytes, marker);
    if (decoded) {
        decoded = decode_functions(bytes, function_count, marker);
    }
    if (decoded && extensions->callbacks) {
        decoded = decode_callbacks(bytes, marker);
    }
    if (decoded && extensions->data) {
        decoded = decode_data_extension(bytes, size, marker);
    }
    if (!decoded) {
        return tl::unexpected(decoded.error());
    }
    return marker;
}

namespace {
constexpr char intent_magic[8] = {'S', 'U', 'T', 'U', 'R', 'E', 'I', 'N'};
}  // namespace

std::vector<std::byte> encode_intent_record(const IntentRecord& intent) {
    std::vector<std::byte> out(intent_record_size);
    std::memcpy(out.data(), intent_magic, sizeof intent_magic);
    put<std::uint64_t>(out, 8, intent.region_address);
    put<std::uint64_t>(out, 16, intent.region_size);
    return out;
}

std::optional<IntentRecord> decode_intent_record(std::span<const std::byte> bytes) {
    if (bytes.size() < intent_record_size ||
        std::memcmp(bytes.data(), intent_magic, sizeof intent_magic) != 0) {
        return std::nullopt;
    }
    IntentRecord intent{get<std::uint64_t>(bytes, 8), get<std::uint64_t>(bytes, 16)};
    if (intent.region_size == 0 || intent.region_size > (1ull << 32) ||
        intent.region_address % 4096 != 0) {
        return std::nullopt;
    }
    return intent;
}

Result<std::array<std::byte, jump_size>> encode_jump(std::uint64_t site,
                                                     std::uint64_t destination) {
    std::int64_t displacement =
        static_cast<std::int64_t>(destination) - static_cast<std::int64_t>(site + jump_size);
    if (displacement < INT32_MIN || displacement > INT32_MAX) {
        return fail(ErrorCode::unsupported, "jump target more than 2 GiB away");
    }
    std::array<std::byte, jump_size> jump{std::byte{0xe9}};
    std::int32_t rel32 = static_cast<std::int32_t>(displacement);
    std::memcpy(jump.data() + 1, &rel32, sizeof rel32);
    return jump;
}

RemoteAddress jump_site(const RegionMarker& marker, const MarkedFunction& function) {
    return RemoteAddress(marker.target_base) + function.target_offset + function.jump_offset;
}

}  // namespace suture
