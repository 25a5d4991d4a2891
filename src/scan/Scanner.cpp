#include "scan/Scanner.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <climits>

#include "base/Files.h"
#include "elf/ElfFile.h"
#include "proc/MappedHeaders.h"
#include "proc/MappingFile.h"

namespace suture {

namespace {

Scanner::FileKey key_of(const struct stat& st) {
    return Scanner::FileKey{st.st_dev, st.st_ino, st.st_size,
                            st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec};
}

bool same_inode_as_mapping(const struct stat& st, const Mapping& mapping) {
    return major(st.st_dev) == mapping.dev_major && minor(st.st_dev) == mapping.dev_minor &&
           st.st_ino == mapping.inode;
}

// One file as mapped by one process: all its mappings collapsed.
struct MappedFileSummary {
    const Mapping* first = nullptr;  // any mapping of the file, for map_files
    std::uint64_t base_address = 0;  // start of the mapping at file offset 0
    bool executable = false;
};

// Groups the file-backed mappings by file. Only files with an executable
// mapping can be a loaded library's code; data files (locale archives, fonts)
// are skipped without being opened.
std::vector<MappedFileSummary> loaded_code_files(const std::vector<Mapping>& mappings) {
    std::vector<MappedFileSummary> files;
    for (const Mapping& mapping : mappings) {
        if (!mapping.is_file()) {
            continue;
        }
        MappedFileSummary* summary = nullptr;
        for (auto& file : files) {
            if (file.first->inode == mapping.inode && file.first->dev_major == mapping.dev_major &&
                file.first->dev_minor == mapping.dev_minor && file.first->path == mapping.path) {
                summary = &file;
                break;
            }
        }
        if (summary == nullptr) {
            files.push_back(MappedFileSummary{&mapping, mapping.start, false});
            summary = &files.back();
        }
        if (mapping.offset == 0 && mapping.start < summary->base_address) {
            summary->base_address = mapping.start;
        }
        summary->executable = summary->executable || mapping.executable;
    }
    std::erase_if(files, [](const MappedFileSummary& file) { return !file.executable; });
    return files;
}

std::string proc_path(int pid, std::string_view tail) {
    std::string path = "/proc/" + std::to_string(pid);
    path += tail;
    return path;
}

}  // namespace

bool is_openssl_soname(std::string_view soname) {
    for (std::string_view prefix : {"libssl.so.", "libcrypto.so."}) {
        if (soname.starts_with(prefix) && soname.size() > prefix.size()) {
            std::string_view rest = soname.substr(prefix.size());
            return rest.find_first_not_of("0123456789.") == std::string_view::npos &&
                   rest.front() != '.';
        }
    }
    return false;
}

std::size_t Scanner::FileKeyHash::operator()(const FileKey& key) const {
    std::size_t hash = std::hash<std::uint64_t>{}(key.ino);
    for (std::uint64_t part :
         {static_cast<std::uint64_t>(key.dev), static_cast<std::uint64_t>(key.size),
          static_cast<std::uint64_t>(key.mtime_ns)}) {
        hash ^=
            std::hash<std::uint64_t>{}(part) + 0x9e3779b97f4a7c15ULL + (hash << 6) + (hash >> 2);
    }
    return hash;
}

std::size_t Scanner::MappedFileKeyHash::operator()(const MappedFileKey& key) const {
    return std::hash<std::uint64_t>{}(key.inode) ^
           (std::hash<std::uint64_t>{}((std::uint64_t{key.dev_major} << 32) | key.dev_minor) << 1);
}

Scanner::Scanner(const BuildIndex& index)
    : index_(index), own_mount_namespace_(own_mount_namespace()) {}

Result<const Scanner::FileIdentity*> Scanner::identify_file(const std::string& path,
                                                            const FileKey& key) {
    if (auto cached = cache_.find(key); cached != cache_.end()) {
        ++statistics_.cache_hits;
        return &cached->second;
    }
    auto fd = open_read_only(path);
    if (!fd) {
        return tl::unexpected(fd.error());
    }
    // Between the stat and the open the path may have been replaced: key the
    // cache by what was actually opened.
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0) {
        return fail_errno(path + ": fstat", errno);
    }
    FileIdentity identity;
    auto elf = ElfFile::open(*fd, path);
    ++statistics_.files_identified;
    if (elf && elf->is_shared_object()) {
        auto soname = elf->soname();
        if (!soname) {
            return tl::unexpected(soname.error());
        }
        if (*soname && is_openssl_soname(**soname)) {
            identity.is_openssl = true;
            identity.soname = *soname;
            auto build_id = elf->build_id();
            if (!build_id) {
                return tl::unexpected(build_id.error());
            }
            identity.build_id = std::move(*build_id);
            identity.version_text = elf->openssl_version_text();
        }
    }
    // A file that is not an ELF shared object is not OpenSSL: cached as such.
    auto [entry, inserted] = cache_.insert_or_assign(key_of(st), std::move(identity));
    return &entry->second;
}

Result<Scanner::MappedFileSeen> Scanner::identify_from_memory(int pid, const Mapping& mapping,
                                                              std::uint64_t base, ScanMemo& memo) {
    auto headers = read_mapped_elf_identity(pid, base);
    if (!headers) {
        return tl::unexpected(headers.error());
    }
    MappedFileKey memo_key{mapping.dev_major, mapping.dev_minor, mapping.inode};
    FileIdentity identity;
    if (headers->soname && is_openssl_soname(*headers->soname)) {
        identity.is_openssl = true;
        identity.soname = headers->soname;
        identity.build_id = headers->build_id;
    }
    auto [entry, inserted] = memo.from_memory.insert_or_assign(memo_key, std::move(identity));
    FileKey key{static_cast<dev_t>(makedev(mapping.dev_major, mapping.dev_minor)),
                static_cast<ino_t>(mapping.inode), 0, 0};
    MappedFileSeen seen{key, &entry->second};
    memo.mapped_files.emplace(memo_key, seen);
    return seen;
}

Result<Scanner::MappedFileSeen> Scanner::identify_mapped_file(int pid, const Mapping& mapping,
                                                              std::uint64_t base,
                                                              const std::string& process_root,
                                                              ScanMemo& memo) {
    MappedFileKey memo_key{mapping.dev_major, mapping.dev_minor, mapping.inode};
    if (auto seen = memo.mapped_files.find(memo_key); seen != memo.mapped_files.end()) {
        return seen->second;
    }
    struct stat st {};
    Result<const FileIdentity*> identity;
    MappingFile file = mapping_file(pid, mapping, process_root);
    const std::string& via_map_files = file.via_map_files;
    const std::string& via_root = file.via_root;
    const std::string& path = file.path_in_process;
    if (::stat(via_map_files.c_str(), &st) == 0) {
        identity = identify_file(via_map_files, key_of(st));
    } else if (int map_files_errno = errno;
               map_files_errno == ENOENT && ::access(proc_path(pid, "").c_str(), F_OK) != 0) {
        return fail_errno("pid " + std::to_string(pid), ESRCH);
    } else if (!mapping.deleted && ::stat(via_root.c_str(), &st) == 0 &&
               same_inode_as_mapping(st, mapping)) {
        // Unprivileged: the path inside the process's root, but only if it is
        // still the very inode mapped.
        identity = identify_file(via_root, key_of(st));
    } else if (mapping.deleted && (map_files_errno == EPERM || map_files_errno == EACCES)) {
        // Unprivileged, and the path is gone: the headers the loader mapped.
        auto seen = identify_from_memory(pid, mapping, base, memo);
        if (seen) {
            return seen;
        }
        return fail_errno("pid " + std::to_string(pid) + ": " + path +
                              " (deleted): cannot open the mapped file, nor read its headers (" +
                              seen.error().message + ")",
                          map_files_errno);
    } else {
        return fail_errno("pid " + std::to_string(pid) + ": " + path +
                              (mapping.deleted ? " (deleted)" : "") +
                              ": cannot open the mapped file",
                          map_files_errno);
    }
    if (!identity) {
        return tl::unexpected(identity.error());
    }
    MappedFileSeen seen{key_of(st), *identity};
    memo.mapped_files.emplace(memo_key, seen);
    return seen;
}

void Scanner::check_file_on_disk(int pid, const std::string& process_root,
                                 const FileKey& mapped_key, MappedLibrary& library,
                                 ScanMemo& memo) {
    // Memoised by the host's view of the path: "/proc/PID/root" differs per
    // process, but processes sharing a root see the same file.
    std::string root_link = proc_path(pid, "/root");
    std::string host_path = (process_root.size() > 1 ? process_root : "") + library.path;
    auto [entry, inserted] = memo.on_disk.try_emplace(host_path);
    if (inserted) {
        struct stat st {};
        if (::stat((root_link + library.path).c_str(), &st) == 0) {
            entry->second = key_of(st);
        }
    }
    const std::optional<FileKey>& on_disk = entry->second;
    if (!on_disk) {
        return;  // nothing at that path any more: `deleted` already says it
    }
    if (on_disk->dev == mapped_key.dev && on_disk->ino == mapped_key.ino) {
        return;
    }
    library.replaced = true;
    if (auto identity = identify_file(root_link + library.path, *on_disk);
        identity && (*identity)->is_openssl) {
        library.on_disk_build_id = (*identity)->build_id;
    }
}

void Scanner::name_from_dpkg(int pid, MappedLibrary& library) {
    // The process's own root (a container's, a chroot's): its database
    // tells what it installed. Kept by that database's status file, so a
    // thousand processes of one root read it once.
    std::string root = proc_path(pid, "/root");
    struct stat st {};
    if (::stat((root + "/var/lib/dpkg/status").c_str(), &st) != 0) {
        return;
    }
    if (installed_.size() > 4096) {
        installed_.clear();
    }
    std::int64_t modified = st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec;
    auto [entry, inserted] =
        installed_.try_emplace({st.st_dev, st.st_ino, modified, library.path});
    if (inserted) {
        entry->second = dpkg_owner(root, library.path);
    }
    library.installed = entry->second;
}

Result<ProcessReport> Scanner::scan_process(int pid) {
    ScanMemo memo;
    return scan_process(pid, memo);
}

Result<ProcessReport> Scanner::scan_process(int pid, ScanMemo& memo) {
    auto info = read_process_info(pid);
    if (!info) {
        return tl::unexpected(info.error());
    }
    auto mappings = read_process_maps(pid);
    if (!mappings) {
        return tl::unexpected(mappings.error());
    }
    ProcessReport report;
    report.info = std::move(*info);
    report.other_mount_namespace =
        report.info.mount_namespace != 0 && report.info.mount_namespace != own_mount_namespace_;
    report.root = process_root(pid);
    for (const Mapping& mapping : *mappings) {
        if (mapping.inode == 0 && mapping.path.empty() && mapping.executable && !mapping.writable) {
            ++report.anonymous_code_mappings;
        }
    }
    for (const MappedFileSummary& file : loaded_code_files(*mappings)) {
        std::string path = path_in_process(file.first->path, report.root);
        auto seen = identify_mapped_file(pid, *file.first, file.base_address, report.root, memo);
        if (!seen) {
            if (seen.error().code == ErrorCode::not_found &&
                ::access(proc_path(pid, "").c_str(), F_OK) != 0) {
                return tl::unexpected(seen.error());  // the process exited
            }
            report.errors.push_back(seen.error());
            continue;
        }
        const FileIdentity* identity = seen->identity;
        if (!identity->is_openssl) {
            continue;
        }
        MappedLibrary library;
        library.soname = *identity->soname;
        library.path = std::move(path);
        library.build_id = identity->build_id;
        library.version_text = identity->version_text;
        library.base_address = file.base_address;
        library.deleted = file.first->deleted;
        if (const KnownBuild* known = index_.find(library.build_id)) {
            library.package = *known;
        }
        check_file_on_disk(pid, report.root, seen->key, library, memo);
        if (!library.package && !library.deleted && !library.replaced) {
            name_from_dpkg(pid, library);
        }
        report.libraries.push_back(std::move(library));
    }
    return report;
}

ScanReport Scanner::scan_all() {
    ScanReport scan;
    auto pids = list_process_ids();
    if (!pids) {
        scan.unreadable.push_back(UnreadableProcess{0, "", pids.error()});
        return scan;
    }
    ScanMemo memo;
    for (int pid : *pids) {
        auto report = scan_process(pid, memo);
        if (!report) {
            if (report.error().code == ErrorCode::not_found) {
                ++scan.processes_vanished;
                continue;
            }
            UnreadableProcess unreadable{pid, "", report.error()};
            if (auto comm = read_file(proc_path(pid, "/comm"))) {
                unreadable.comm = comm->substr(0, comm->find('\n'));
            }
            scan.unreadable.push_back(std::move(unreadable));
            continue;
        }
        ++scan.processes_examined;
        if (!report->libraries.empty() || !report->errors.empty()) {
            scan.processes.push_back(std::move(*report));
        }
    }
    return scan;
}

}  // namespace suture
