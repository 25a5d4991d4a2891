#pragma once

#include <string>

#include "proc/ProcessMaps.h"

namespace suture {

// The one place that says how a reader on the host reaches the file behind
// one mapping of another process. Everything that opens a mapped object
// (the scanner, the injector's loaded objects and import resolution) goes
// through here.
//
// The story, for a process chrooted into /srv/rootfs (or in another mount
// namespace whose root is under ours):
//  1. /proc/PID/maps prints each path relative to the *reader's* root:
//     "/srv/rootfs/usr/lib/x86_64-linux-gnu/libssl.so.3".
//  2. So /proc/PID/root + that path doubles the prefix
//     ("/proc/PID/root/srv/rootfs/usr/lib/…") and names nothing, or worse,
//     another file. libunwind-ptrace makes exactly this mistake, which is
//     why the stack check reads unwind tables from memory instead
//     (inject/RemoteUnwinder.h).
//  3. /proc/PID/map_files/START-END is the very inode mapped, whatever its
//     path, deleted or replaced: the first choice (it needs root).
//  4. Without it, /proc/PID/root + the path *inside* the process (the maps
//     path with the process's root stripped) reaches the file, but it may
//     have been replaced since: callers compare the inode with the mapping's.
struct MappingFile {
    std::string via_map_files;    // /proc/PID/map_files/START-END
    std::string via_root;         // /proc/PID/root + path_in_process
    std::string path_in_process;  // the path the process itself uses
};

// `process_root` is readlink(/proc/PID/root) as the reader sees it ("/" or
// empty for the reader's own root).
MappingFile mapping_file(int pid, const Mapping& mapping, const std::string& process_root);

// The maps path with `process_root` stripped (see step 4 above). A process in
// another mount namespace whose root is not under ours already shows its
// own path, which is returned unchanged.
std::string path_in_process(const std::string& maps_path, const std::string& process_root);

// readlink(/proc/PID/root); empty if unreadable.
std::string process_root(int pid);

}  // namespace suture
