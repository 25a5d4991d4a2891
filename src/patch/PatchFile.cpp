#include "patch/PatchFile.h"

#include <algorithm>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "base/Files.h"
#include "patch/EntryJump.h"

namespace suture {

namespace {

constexpr char magic[8] = {'S', 'U', 'T', 'U', 'R', 'E', 'P', 'F'};
constexpr std::size_t header_size = 32;
// Smallest function a jump fits into: an endbr64 (4) kept in place plus a
// 5-byte jmp rel32. Functions without endbr64 need only 5, but the builder
// never emits those for Debian's -fcf-protection libraries.
// The entry jump alone (patch/EntryJump.h); whether an endbr64 needs 4 more
// bytes is checked against the function's bytes, by the builder and the
// injector.
constexpr std::uint64_t min_function_size = entry_jump_size;

std::uint32_t read_u32(const std::byte* at) {
    std::uint32_t value;
    std::memcpy(&value, at, sizeof value);
    return value;  // x86-64 only: little-endian host
}

std::uint64_t read_u64(const std::byte* at) {
    std::uint64_t value;
    std::memcpy(&value, at, sizeof value);
    return value;
}

bool is_hex(const std::string& text, std::size_t min_length, std::size_t max_length) {
    return text.size() >= min_length && text.size() <= max_length &&
           std::all_of(text.begin(), text.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_patch_id(const std::string& id) {
    return !id.empty() && id.size() <= 63 && std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-' || c == '+';
    });
}

bool is_symbol_name(const std::string& name) {
    return !name.empty() && name.size() <= 1024 &&
           std::none_of(name.begin(), name.end(),
                        [](char c) { return c == '\0' || c == '@' || c == ' '; });
}

}  // namespace

namespace {

// A field that must be an unsigned integer. Floats and negative numbers are
// refused: converting them to an integer type is undefined (a float out of
// range, found by the fuzzer) or silently wraps.
struct BadField {
    std::string what;
};
std::uint64_t unsigned_field(const nlohmann::json& object, const char* key) {
    const nlohmann::json& value = object.at(key);
    if (!value.is_number_unsigned()) {
        throw BadField{std::string("\"") + key + "\" must be an unsigned integer"};
    }
    return value.get<std::uint64_t>();
}

}  // namespace

std::string consistency_name(Consistency consistency) {
    return consistency == Consistency::entry ? "entry" : "strict";
}

std::optional<Consistency> consistency_from_name(std::string_view name) {
    if (name == "entry") {
        return Consistency::entry;
    }
    if (name == "strict") {
        return Consistency::strict;
    }
    return std::nullopt;
}

namespace {

// The optional "callbacks" object: member -> symbol of the object.
void parse_callbacks(const nlohmann::json& document, PatchCallbacks& callbacks) {
    if (!document.contains("callbacks")) {
        return;
    }
    const auto& object = document.at("callbacks");
    if (!object.is_object()) {
        throw BadField{"\"callbacks\" must be an object"};
    }
    for (const auto& [member, value] : object.items()) {
        std::string* slot = member == "pre_apply"     ? &callbacks.pre_apply
                            : member == "post_apply"  ? &callbacks.post_apply
                            : member == "pre_revert"  ? &callbacks.pre_revert
                            : member == "post_revert" ? &callbacks.post_revert
                                                      : nullptr;
        if (slot == nullptr || !value.is_string() || value.get<std::string>().empty()) {
            throw BadField{"callbacks." + member + ": not a callback, or not a symbol name"};
        }
        *slot = value.get<std::string>();
    }
}

nlohmann::json callbacks_to_json(const PatchCallbacks& callbacks) {
    nlohmann::json object = nlohmann::json::object();
    for (const auto& [member, symbol] : callbacks.named()) {
        if (!symbol->empty()) {
            object[member] = *symbol;
        }
    }
    return object;
}

// Each callback names a function of the object, in loaded executable code.
Result<void> check_callbacks(const RelocatableObject& object, const PatchCallbacks& callbacks,
                             const std::string& name) {
    for (const auto& [member, symbol] : callbacks.named()) {
        if (symbol->empty()) {
            continue;
        }
        const RelocatableObject::Symbol* function = object.find_defined(*symbol);
        if (function == nullptr || function->type != STT_FUNC ||
            !object.is_loaded(function->section) ||
            (object.sections()[function->section].flags & SHF_EXECINSTR) == 0) {
            return fail(ErrorCode::bad_format, name + ": callback " + member + " (" + *symbol +
                                                   ") is not a function defined in the object");
        }
    }
    return {};
}

}  // namespace

std::string callback_symbol(std::string_view kind) {
    return "__suture_callback_" + std::string(kind);
}

Result<PatchCallbacks> declared_callbacks(const RelocatableObject& object) {
    PatchCallbacks callbacks;
    for (const char* kind : {"pre_apply", "post_apply", "pre_revert", "post_revert"}) {
        const RelocatableObject::Symbol* function = object.find_defined(callback_symbol(kind));
        if (function == nullptr) {
            continue;
        }
        if (function->type != STT_FUNC) {
            return fail(ErrorCode::invalid_argument,
                        object.name() + ": " + callback_symbol(kind) + " is not a function");
        }
        std::string& slot = std::string_view(kind) == "pre_apply"    ? callbacks.pre_apply
                            : std::string_view(kind) == "post_apply" ? callbacks.post_apply
                            : std::string_view(kind) == "pre_revert" ? callbacks.pre_revert
                                                                     : callbacks.post_revert;
        slot = callback_symbol(kind);
    }
    return callbacks;
}

Result<PatchMetadata> parse_patch_metadata(std::string_view json_text, const std::string& name) {
    PatchMetadata metadata;
    try {
        auto document = nlohmann::json::parse(json_text);
        metadata.patch_id = document.at("patch_id").get<std::string>();
        std::uint64_t level = unsigned_field(document, "level");
        metadata.level = level > 65535 ? 0 : static_cast<std::uint32_t>(level);
        metadata.description = document.value("description", "");
        if (document.contains("consistency")) {
            const auto& consistency = document.at("consistency");
            auto parsed = consistency.is_string()
                              ? consistency_from_name(consistency.get<std::string>())
                              : std::nullopt;
            if (!parsed) {
                throw BadField{"\"consistency\" must be \"entry\" or \"strict\""};
            }
            metadata.consistency = *parsed;
        }
        const auto& target = document.at("target");
        metadata.target_build_id = target.at("build_id").get<std::string>();
        metadata.target_soname = target.at("soname").get<std::string>();
        for (const auto& entry : document.at("functions")) {
            metadata.functions.push_back(ReplacedFunction{
                entry.at("symbol").get<std::string>(), unsigned_field(entry, "offset"),
                unsigned_field(entry, "size"), entry.at("sha256").get<std::string>(),
                entry.at("replacement").get<std::string>()});
        }
        for (const auto& entry : document.value("target_references", nlohmann::json::array())) {
            metadata.target_references.push_back(TargetReference{
                entry.at("symbol").get<std::string>(), unsigned_field(entry, "offset")});
        }
        for (const auto& entry : document.value("imports", nlohmann::json::array())) {
            metadata.imports.push_back(Import{entry.at("symbol").get<std::string>(),
                                              entry.value("version", nlohmann::json()).is_null()
                                                  ? std::string()
                                                  : entry.at("version").get<std::string>()});
        }
        parse_callbacks(document, metadata.callbacks);
    } catch (const nlohmann::json::exception& error) {
        return fail(ErrorCode::bad_format, name + ": metadata: " + error.what());
    } catch (const BadField& bad) {
        return fail(ErrorCode::bad_format, name + ": metadata: " + bad.what);
    }
    auto invalid = [&](const std::string& what) {
        return fail(ErrorCode::bad_format, name + ": metadata: " + what);
    };
    if (!is_patch_id(metadata.patch_id)) {
        return invalid("patch_id must be 1-63 characters of A-Z a-z 0-9 . _ - +");
    }
    if (metadata.level == 0 || metadata.level > 65535) {
        return invalid("level must be 1..65535");
    }
    if (!is_hex(metadata.target_build_id, 2, 128) || metadata.target_build_id.size() % 2 != 0) {
        return invalid("target.build_id must be lowercase hex");
    }
    if (metadata.functions.empty() || metadata.functions.size() > 4096) {
        return invalid("functions must list 1..4096 entries");
    }
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
    for (const ReplacedFunction& function : metadata.functions) {
        if (!is_symbol_name(function.symbol) || !is_symbol_name(function.replacement)) {
            return invalid("bad symbol name in functions");
        }
        if (!is_hex(function.sha256, 64, 64)) {
            return invalid(function.symbol + ": sha256 must be 64 lowercase hex digits");
        }
        if (function.size < min_function_size || function.size > (1u << 24) ||
            function.offset > (1ull << 40)) {
            return invalid(function.symbol + ": size " + std::to_string(function.size) +
                           " cannot hold a jump, or offset out of range");
        }
        ranges.emplace_back(function.offset, function.offset + function.size);
    }
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i) {
        if (ranges[i].first < ranges[i - 1].second) {
            return invalid("replaced functions overlap");
        }
    }
    for (const TargetReference& reference : metadata.target_references) {
        if (!is_symbol_name(reference.symbol) || reference.offset > (1ull << 40)) {
            return invalid("bad target reference " + reference.symbol);
        }
    }
    for (const Import& import : metadata.imports) {
        if (!is_symbol_name(import.symbol) ||
            (!import.version.empty() && !is_symbol_name(import.version))) {
            return invalid("bad import " + import.symbol);
        }
    }
    for (const auto& [member, symbol] : metadata.callbacks.named()) {
        if (!symbol->empty() && !is_symbol_name(*symbol)) {
            return invalid(std::string("bad symbol name in callbacks.") + member);
        }
    }
    return metadata;
}

Result<PatchFile> parse_patch(std::span<const std::byte> bytes, const std::string& name) {
    if (bytes.size() < header_size || std::memcmp(bytes.data(), magic, sizeof magic) != 0) {
        return fail(ErrorCode::bad_format, name + ": not a suture patch file");
    }
    std::uint32_t version = read_u32(bytes.data() + 8);
    std::uint32_t declared_header_size = read_u32(bytes.data() + 12);
    std::uint32_t metadata_size = read_u32(bytes.data() + 16);
    std::uint64_t object_size = read_u64(bytes.data() + 24);
    if (version != patch_format_version) {
        return fail(ErrorCode::unsupported, name + ": patch format version " +
                                                std::to_string(version) + " is not supported");
    }
    if (declared_header_size != header_size || metadata_size > max_patch_metadata_size ||
        object_size > max_patch_object_size ||
        bytes.size() != header_size + metadata_size + object_size) {
        return fail(ErrorCode::bad_format, name + ": sizes in the header do not match the file");
    }
    std::string_view json(reinterpret_cast<const char*>(bytes.data()) + header_size, metadata_size);
    auto metadata = parse_patch_metadata(json, name);
    if (!metadata) {
        return tl::unexpected(metadata.error());
    }
    auto object_bytes = bytes.subspan(header_size + metadata_size);
    auto object = RelocatableObject::parse(
        std::vector<std::byte>(object_bytes.begin(), object_bytes.end()), name + ": object");
    if (!object) {
        return tl::unexpected(object.error());
    }

    // Consistency between metadata and object.
    for (const ReplacedFunction& function : metadata->functions) {
        const RelocatableObject::Symbol* replacement = object->find_defined(function.replacement);
        if (replacement == nullptr || replacement->type != STT_FUNC ||
            !object->is_loaded(replacement->section) ||
            (object->sections()[replacement->section].flags & SHF_EXECINSTR) == 0) {
            return fail(ErrorCode::bad_format, name + ": replacement " + function.replacement +
                                                   " is not a function defined in the object");
        }
    }
    if (auto callbacks = check_callbacks(*object, metadata->callbacks, name); !callbacks) {
        return tl::unexpected(callbacks.error());
    }
    std::set<std::string> resolvable{std::string(shadow_table_symbol), std::string(got_symbol)};
    for (const TargetReference& reference : metadata->target_references) {
        resolvable.insert(reference.symbol);
    }
    for (const Import& import : metadata->imports) {
        resolvable.insert(import.symbol);
    }
    for (const auto& symbol : object->symbols()) {
        if (symbol.section == SHN_UNDEF && !symbol.is_absolute && !symbol.name.empty() &&
            !resolvable.contains(symbol.name)) {
            return fail(ErrorCode::bad_format, name + ": undefined symbol " + symbol.name +
                                                   " is neither a target reference nor an import");
        }
    }
    for (std::size_t index = 1; index < object->sections().size(); ++index) {
        const auto& section = object->sections()[index];
        if (section.name == ".init_array" || section.name == ".fini_array" ||
            section.name == ".ctors" || section.name == ".dtors") {
            return fail(ErrorCode::unsupported,
                        name + ": " + section.name + ": patch code cannot have constructors");
        }
    }
    return PatchFile{std::move(*metadata), std::move(*object)};
}

Result<PatchFile> read_patch_file(const std::string& path) {
    // A regular file no larger than a patch can be: sutured reads paths its
    // callers name, which may be a FIFO or /dev/zero.
    auto text =
        read_regular_file(path, header_size + max_patch_metadata_size + max_patch_object_size);
    if (!text) {
        return tl::unexpected(text.error());
    }
    return parse_patch(bytes_of(*text), path);
}

std::vector<std::byte> write_patch(const PatchMetadata& metadata,
                                   std::span<const std::byte> object_bytes) {
    nlohmann::json functions = nlohmann::json::array();
    for (const ReplacedFunction& function : metadata.functions) {
        functions.push_back({{"symbol", function.symbol},
                             {"offset", function.offset},
                             {"size", function.size},
                             {"sha256", function.sha256},
                             {"replacement", function.replacement}});
    }
    nlohmann::json references = nlohmann::json::array();
    for (const TargetReference& reference : metadata.target_references) {
        references.push_back({{"symbol", reference.symbol}, {"offset", reference.offset}});
    }
    nlohmann::json imports = nlohmann::json::array();
    for (const Import& import : metadata.imports) {
        imports.push_back({{"symbol", import.symbol},
                           {"version", import.version.empty() ? nlohmann::json()
                                                              : nlohmann::json(import.version)}});
    }
    nlohmann::json document = {
        {"patch_id", metadata.patch_id},
        {"level", metadata.level},
        {"description", metadata.description},
        {"consistency", consistency_name(metadata.consistency)},
        {"target", {{"build_id", metadata.target_build_id}, {"soname", metadata.target_soname}}},
        {"functions", functions},
        {"target_references", references},
        {"imports", imports},
    };
    if (metadata.callbacks.any()) {
        document["callbacks"] = callbacks_to_json(metadata.callbacks);
    }
    std::string json = document.dump(2) + "\n";  // keys sorted: same input, same bytes

    std::vector<std::byte> out(header_size);
    std::memcpy(out.data(), magic, sizeof magic);
    auto put_u32 = [&](std::size_t at, std::uint32_t value) {
        std::memcpy(out.data() + at, &value, sizeof value);
    };
    put_u32(8, patch_format_version);
    put_u32(12, header_size);
    put_u32(16, static_cast<std::uint32_t>(json.size()));
    put_u32(20, 0);
    std::uint64_t object_size = object_bytes.size();
    std::memcpy(out.data() + 24, &object_size, sizeof object_size);
    auto json_bytes = bytes_of(json);
    out.insert(out.end(), json_bytes.begin(), json_bytes.end());
    out.insert(out.end(), object_bytes.begin(), object_bytes.end());
    return out;
}

}  // namespace suture
