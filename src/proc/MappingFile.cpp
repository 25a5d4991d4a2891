#include "proc/MappingFile.h"

#include <climits>

#include <unistd.h>

namespace suture {

std::string path_in_process(const std::string& maps_path, const std::string& process_root) {
    if (process_root.size() > 1 && maps_path.size() > process_root.size() &&
        maps_path.starts_with(process_root) && maps_path[process_root.size()] == '/') {
        return maps_path.substr(process_root.size());
    }
    return maps_path;
}

MappingFile mapping_file(int pid, const Mapping& mapping, const std::string& process_root) {
    std::string proc = "/proc/" + std::to_string(pid);
    MappingFile file;
    file.via_map_files = proc + "/map_files/" + mapping.map_files_name();
    file.path_in_process = path_in_process(mapping.path, process_root);
    file.via_root = proc + "/root" + file.path_in_process;
    return file;
}

std::string process_root(int pid) {
    char root[PATH_MAX];
    ssize_t length = ::readlink(("/proc/" + std::to_string(pid) + "/root").c_str(), root,
                                sizeof root - 1);
    return length > 0 ? std::string(root, static_cast<std::size_t>(length)) : "";
}

}  // namespace suture
