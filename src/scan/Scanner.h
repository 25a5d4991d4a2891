#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <map>
#include <tuple>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/Error.h"
#include "distro/BuildIndex.h"
#include "distro/DpkgDatabase.h"
#include "proc/Process.h"
#include "proc/ProcessMaps.h"

namespace suture {

// One libssl or libcrypto as one process maps it.
struct MappedLibrary {
    std::string soname;                       // DT_SONAME of the mapped file, e.g. "libcrypto.so.3"
    std::string path;                         // as the process sees it (inside its own root)
    std::string build_id;                     // GNU build ID of the mapped file itself
    std::optional<std::string> version_text;  // "OpenSSL 3.0.20 16 Jan 2026"; libssl has none
    std::uint64_t base_address = 0;
    bool deleted = false;   // the mapped file has been unlinked
    bool replaced = false;  // the path now names a different file than the one mapped
    std::optional<std::string> on_disk_build_id;  // of the file now at `path`, when replaced
    std::optional<KnownBuild> package;            // from the build index; nullopt if unknown
    // For a build the index does not know: the package the process's own
    // root's dpkg database says installed the file, when the mapped file is
    // still the very inode at that path (neither deleted nor replaced).
    std::optional<InstalledPackage> installed;
};

struct ProcessReport {
    ProcessInfo info;
    bool other_mount_namespace = false;  // runs in a container or unshare'd chroot
    std::string
        root;  // its root directory as we see it ("/" unless chroot'ed); empty if unreadable
    std::vector<MappedLibrary> libraries;
    // Private anonymous read+exec mappings: where suture patch regions (and
    // JIT code) live. Zero means there is no suture patch to look for.
    std::size_t anonymous_code_mappings = 0;
    // Files this process maps that could not be read, so could not be ruled
    // out as OpenSSL: the report for this process is incomplete.
    std::vector<Error> errors;
};

struct UnreadableProcess {
    int pid = 0;
    std::string comm;  // empty if even that was unreadable
    Error error;
};

struct ScanReport {
    std::vector<ProcessReport> processes;  // those mapping OpenSSL, or with errors
    std::vector<UnreadableProcess> unreadable;
    std::size_t processes_examined = 0;  // whose maps were read
    std::size_t processes_vanished = 0;  // exited during the scan: not an error
};

struct ScanStatistics {
    std::size_t files_identified = 0;  // cache misses: ELF files opened and parsed
    std::size_t cache_hits = 0;
};

// Finds every mapped libssl/libcrypto by reading /proc, without ptrace and
// without stopping anyone. Keeps a cache of what each file is, keyed by
// (device, inode, size, mtime), so a repeated scan rereads no file.
//
// How a mapped file is read, in order of preference:
//  1. /proc/PID/map_files/START-END: the very inode mapped, deleted or not,
//     in any mount namespace. Following these links needs CAP_SYS_ADMIN (or
//     CAP_CHECKPOINT_RESTORE).
//  2. /proc/PID/root/PATH, accepted only if its device and inode equal those
//     the maps line gives: works for an unprivileged caller's own processes.
//  3. For a deleted file neither reaches: the ELF headers mapped in the
//     process, through /proc/PID/mem (proc/MappedHeaders.h): build ID and
//     soname, no version string.
class Scanner {
  public:
    explicit Scanner(const BuildIndex& index);

    // Scans every process. Never fails as a whole: per-process problems are
    // in the report.
    ScanReport scan_all();

    // Scans one process. Error not_found if it does not exist (or exited),
    // permission_denied if its maps cannot be read.
    Result<ProcessReport> scan_process(int pid);

    const ScanStatistics& statistics() const { return statistics_; }

    // Cache key: the same key means the same file contents.
    struct FileKey {
        dev_t dev = 0;
        ino_t ino = 0;
        off_t size = 0;
        std::int64_t mtime_ns = 0;
        bool operator==(const FileKey&) const = default;
    };

  private:
    // What a file is; independent of which process maps it.
    struct FileIdentity {
        std::optional<std::string> soname;  // only kept for OpenSSL libraries
        bool is_openssl = false;
        std::string build_id;
        std::optional<std::string> version_text;
    };
    struct FileKeyHash {
        std::size_t operator()(const FileKey& key) const;
    };

    // What one scan has already looked up. A scan is one snapshot: a file
    // mapped by a thousand processes is stat'ed once, not a thousand times.
    struct MappedFileKey {
        unsigned dev_major;
        unsigned dev_minor;
        std::uint64_t inode;
        bool operator==(const MappedFileKey&) const = default;
    };
    struct MappedFileKeyHash {
        std::size_t operator()(const MappedFileKey& key) const;
    };
    struct MappedFileSeen {
        FileKey key;
        const FileIdentity* identity;  // points into cache_ (node-stable)
    };
    struct ScanMemo {
        std::unordered_map<MappedFileKey, MappedFileSeen, MappedFileKeyHash> mapped_files;
        std::unordered_map<std::string, std::optional<FileKey>> on_disk;  // by host path
        // Files identified from their mapped headers (/proc/PID/mem): not
        // cached beyond the scan, having no size or mtime to key them by.
        std::unordered_map<MappedFileKey, FileIdentity, MappedFileKeyHash> from_memory;
    };

    Result<ProcessReport> scan_process(int pid, ScanMemo& memo);
    // Identifies the file of `mapping` in process `pid`, whose root the
    // host sees as `process_root` (proc/MappingFile.h). The result also gives the file's key, so the caller can
    // compare it with the file on disk.
    // `base` is the file's offset-0 mapping, where its headers are.
    Result<MappedFileSeen> identify_mapped_file(int pid, const Mapping& mapping, std::uint64_t base,
                                                const std::string& process_root, ScanMemo& memo);
    // The identity from the headers mapped at `base` (an unprivileged
    // caller's own deleted library: map_files refused, the path gone).
    Result<MappedFileSeen> identify_from_memory(int pid, const Mapping& mapping, std::uint64_t base,
                                                ScanMemo& memo);
    // Identifies the file at `path` (which the caller has stat'ed as `key`).
    Result<const FileIdentity*> identify_file(const std::string& path, const FileKey& key);
    // Sets `replaced` (and `on_disk_build_id`) when the path now names
    // another file than the one mapped.
    void check_file_on_disk(int pid, const std::string& process_root, const FileKey& mapped_key,
                            MappedLibrary& library, ScanMemo& memo);

    // Sets `installed` for an unknown build still at its path.
    void name_from_dpkg(int pid, MappedLibrary& library);

    const BuildIndex& index_;
    std::uint64_t own_mount_namespace_;
    std::unordered_map<FileKey, FileIdentity, FileKeyHash> cache_;
    // dpkg_owner answers, by (the root's dpkg status file: device, inode,
    // modification time; path), kept beyond the scan: dpkg replaces its
    // status file at every change, so an answer stays right while its key
    // does. Reading a root's package lists costs milliseconds, and sutured
    // scans every new process of an unknown build on its own.
    std::map<std::tuple<dev_t, ino_t, std::int64_t, std::string>, std::optional<InstalledPackage>>
        installed_;
    ScanStatistics statistics_;
};

// Does this DT_SONAME name an OpenSSL library (libssl.so.N…, libcrypto.so.N…)?
bool is_openssl_soname(std::string_view soname);

}  // namespace suture
