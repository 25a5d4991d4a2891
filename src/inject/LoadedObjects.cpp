#include "inject/LoadedObjects.h"

#include <algorithm>
#include <cstring>

#include "base/Files.h"
#include "inject/RemoteMemory.h"
#include "proc/MappingFile.h"

namespace suture {

namespace {

constexpr std::uint64_t page = 4096;
// No mapping of the object's start (file offset 0) seen yet.
constexpr RemoteAddress no_base(UINT64_MAX);

}  // namespace

Result<std::vector<LoadedObject>> read_loaded_objects(int pid,
                                                      const std::vector<Mapping>& mappings) {
    std::vector<LoadedObject> objects;
    for (const Mapping& mapping : mappings) {
        if (!mapping.is_file()) {
            continue;
        }
        auto existing =
            std::find_if(objects.begin(), objects.end(),
                         [&](const LoadedObject& object) { return object.path == mapping.path; });
        if (existing != objects.end()) {
            existing->start = std::min(existing->start, RemoteAddress(mapping.start));
            existing->end = std::max(existing->end, RemoteAddress(mapping.end));
            if (mapping.offset == 0 && RemoteAddress(mapping.start) < existing->base) {
                existing->base = RemoteAddress(mapping.start);
            }
            continue;
        }
        LoadedObject object;
        object.path = mapping.path;
        // The mapped inode itself (never /proc/PID/root + the maps path: see
        // proc/MappingFile.h).
        object.open_path = mapping_file(pid, mapping, "").via_map_files;
        object.start = RemoteAddress(mapping.start);
        object.end = RemoteAddress(mapping.end);
        object.base = mapping.offset == 0 ? RemoteAddress(mapping.start) : no_base;
        objects.push_back(std::move(object));
    }
    std::vector<LoadedObject> elf_objects;
    for (LoadedObject& object : objects) {
        auto fd = open_read_only(object.open_path);
        if (!fd) {
            continue;
        }
        auto elf = ElfFile::open(*fd, object.path);
        if (!elf || object.base == no_base) {
            continue;
        }
        auto build_id = elf->build_id();
        auto soname = elf->soname();
        object.build_id = build_id ? *build_id : "";
        object.soname = soname ? *soname : std::nullopt;
        // The offset-0 mapping holds the lowest PT_LOAD; its address minus
        // that segment's (page-aligned) vaddr is the load bias.
        object.base = object.base - (elf->lowest_load_address() & ~(page - 1));
        for (const GElf_Phdr& segment : elf->segments()) {
            if (segment.p_type != PT_LOAD || (segment.p_flags & PF_X) == 0 ||
                segment.p_memsz != segment.p_filesz) {
                continue;
            }
            RemoteAddress end = object.base + segment.p_vaddr + segment.p_filesz;
            RemoteAddress page_end = end.align_up(page);
            if (page_end - end > object.slack_end - object.slack_start && page_end <= object.end) {
                object.slack_start = end;
                object.slack_end = page_end;
            }
        }
        elf_objects.push_back(std::move(object));
    }
    return elf_objects;
}

Result<RemoteAddress> SymbolResolver::resolve(const Import& import) {
    std::string wanted = import.symbol + (import.version.empty() ? "" : "@" + import.version);
    for (const LoadedObject& object : objects_) {
        auto cached = symbols_.find(object.open_path);
        if (cached == symbols_.end()) {
            std::vector<ElfFile::Symbol> symbols;
            if (auto fd = open_read_only(object.open_path)) {
                if (auto elf = ElfFile::open(*fd, object.path)) {
                    if (auto dynamic = elf->dynamic_symbols()) {
                        symbols = std::move(*dynamic);
                    }
                }
            }
            cached = symbols_.emplace(object.open_path, std::move(symbols)).first;
        }
        for (const ElfFile::Symbol& symbol : cached->second) {
            if (!symbol.defined || symbol.name != import.symbol || symbol.binding == STB_LOCAL) {
                continue;
            }
            bool version_matches =
                import.version.empty() ? !symbol.hidden_version : symbol.version == import.version;
            if (!version_matches) {
                continue;
            }
            if (symbol.type == STT_GNU_IFUNC) {
                return fail(ErrorCode::unsupported, "import " + wanted + " is an IFUNC in " +
                                                        object.path + ": not supported yet");
            }
            return object.base + symbol.value;
        }
    }
    return fail(ErrorCode::library_not_mapped,
                "import " + wanted + ": no loaded object defines it");
}

bool loader_is_changing_objects(int pid, const std::vector<LoadedObject>& objects) {
    // struct r_debug: int r_version; struct link_map* r_map; ElfW(Addr)
    // r_brk; enum r_state; ElfW(Addr) r_ldbase (x86-64 offsets 0, 8, 16, 24,
    // 32). r_version is 0 until ld.so has initialised it.
    constexpr std::size_t version_offset = 0, state_offset = 24, size = 28;
    constexpr std::int32_t rt_consistent = 0;
    auto address = SymbolResolver(objects).resolve(Import{"_r_debug", ""});
    if (!address) {
        return false;
    }
    auto memory = RemoteMemory::open(pid, false);
    auto bytes = memory ? memory->read(*address, size) : tl::unexpected(memory.error());
    if (!bytes || bytes->size() < size) {
        return false;
    }
    auto int_at = [&](std::size_t offset) {
        std::int32_t value = 0;
        std::memcpy(&value, bytes->data() + offset, sizeof value);
        return value;
    };
    return int_at(version_offset) == 0 || int_at(state_offset) != rt_consistent;
}

}  // namespace suture
