#include "elf/LoaderSearch.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <utility>

#include "elf/ElfFile.h"

namespace suture {

Result<LoaderRoot> LoaderRoot::open(const std::string& root) {
    UniqueFD fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd.is_valid()) {
        return fail_errno(root + ": open", errno);
    }
    return LoaderRoot(std::move(fd), root == "/" ? "" : root);
}

Result<UniqueFD> LoaderRoot::open_file(const std::string& path) const {
    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    UniqueFD fd(
        static_cast<int>(::syscall(SYS_openat2, fd_.get(), path.c_str(), &how, sizeof how)));
    if (!fd.is_valid()) {
        return fail_errno(outside(path) + ": open", errno);
    }
    return fd;
}

namespace {

// glibc's sysdeps/generic/dl-cache.h.
constexpr std::string_view old_magic = "ld.so-1.7.0";
constexpr std::string_view new_magic = "glibc-ld.so.cache1.1";
constexpr std::size_t old_header_size = 16;  // magic[11] (padded), nlibs
constexpr std::size_t old_entry_size = 12;   // flags, key, value
constexpr std::size_t new_header_size = 48;  // magic, version, nlibs, len_strings, ...
constexpr std::size_t new_entry_size = 24;   // flags, key, value, osversion, hwcap
constexpr std::int32_t flag_type_mask = 0x00ff;
constexpr std::int32_t flag_elf_libc6 = 0x0003;
constexpr std::int32_t flag_required_mask = 0xff00;
constexpr std::int32_t flag_x8664_lib64 = 0x0300;

template <typename T>
T load(std::string_view bytes, std::size_t at) {
    T value{};
    std::memcpy(&value, bytes.data() + at, sizeof value);
    return value;
}

// The NUL-terminated string at `offset` (from the new header), or empty.
std::string_view string_at(std::string_view table, std::uint32_t offset) {
    if (offset >= table.size()) {
        return {};
    }
    std::string_view rest = table.substr(offset);
    return rest.substr(0, rest.find('\0'));
}

}  // namespace

LdSoCache LdSoCache::parse(std::string_view bytes) {
    LdSoCache cache;
    // 1. Skip the old format's table, if there is one, to the new header
    // (aligned to 8 bytes after it).
    std::size_t start = 0;
    if (bytes.starts_with(old_magic) && bytes.size() >= old_header_size) {
        std::uint32_t old_count = load<std::uint32_t>(bytes, 12);
        start = old_header_size + std::size_t{old_count} * old_entry_size;
        start = (start + 7) & ~std::size_t{7};
    }
    if (start > bytes.size() || !bytes.substr(start).starts_with(new_magic) ||
        bytes.size() - start < new_header_size) {
        return cache;
    }
    // 2. The entries; strings are offsets from the new header.
    std::string_view table = bytes.substr(start);
    std::uint32_t count = load<std::uint32_t>(table, 20);
    if (count > (table.size() - new_header_size) / new_entry_size) {
        return cache;  // truncated: trust none of it
    }
    for (std::uint32_t index = 0; index < count; ++index) {
        std::size_t at = new_header_size + std::size_t{index} * new_entry_size;
        auto flags = load<std::int32_t>(table, at);
        auto key = string_at(table, load<std::uint32_t>(table, at + 4));
        auto value = string_at(table, load<std::uint32_t>(table, at + 8));
        auto hwcap = load<std::uint64_t>(table, at + 16);
        bool ours = (flags & flag_type_mask) == flag_elf_libc6 &&
                    (flags & flag_required_mask) == flag_x8664_lib64;
        if (ours && hwcap == 0 && !key.empty() && !value.empty()) {
            cache.entries_.emplace(std::string(key), std::string(value));  // first one wins
        }
    }
    return cache;
}

LdSoCache LdSoCache::read(const LoaderRoot& root) {
    auto fd = root.open_file("/etc/ld.so.cache");
    if (!fd) {
        return {};
    }
    std::string bytes;
    char buffer[65536];
    for (ssize_t got = 0; (got = ::read(fd->get(), buffer, sizeof buffer)) > 0;) {
        bytes.append(buffer, static_cast<std::size_t>(got));
    }
    return parse(bytes);
}

std::optional<std::string> LdSoCache::find(const std::string& soname) const {
    auto found = entries_.find(soname);
    if (found == entries_.end()) {
        return std::nullopt;
    }
    return found->second;
}

namespace {

// Debian's multiarch loader searches these after the cache (glibc's
// SYSTEM_DIRS as Debian configures it for x86-64, and the generic ones).
const std::vector<std::string> default_directories = {"/lib/x86_64-linux-gnu",
                                                      "/usr/lib/x86_64-linux-gnu",
                                                      "/lib64",
                                                      "/usr/lib64",
                                                      "/lib",
                                                      "/usr/lib"};

std::string directory_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos || slash == 0 ? "/" : path.substr(0, slash);
}

// $ORIGIN, $LIB and $PLATFORM (also as ${...}) in one search path entry.
std::string expand_tokens(std::string entry, const std::string& origin) {
    const std::pair<const char*, std::string> tokens[] = {
        {"ORIGIN", origin}, {"LIB", "lib/x86_64-linux-gnu"}, {"PLATFORM", "x86_64"}};
    for (const auto& [token, value] : tokens) {
        for (const std::string& form :
             {"${" + std::string(token) + "}", "$" + std::string(token)}) {
            for (auto at = entry.find(form); at != std::string::npos; at = entry.find(form, at)) {
                entry.replace(at, form.size(), value);
                at += value.size();
            }
        }
    }
    return entry;
}

// A colon-separated list (LD_PRELOAD also takes spaces), tokens expanded.
// Empty entries (the loader's current directory) and relative ones are
// skipped: the process's working directory is not modelled.
std::vector<std::string> split_search_path(const std::string& list, const std::string& origin,
                                           const char* separators = ":") {
    std::vector<std::string> entries;
    std::size_t begin = 0;
    while (begin <= list.size()) {
        std::size_t end = list.find_first_of(separators, begin);
        if (end == std::string::npos) {
            end = list.size();
        }
        std::string entry = expand_tokens(list.substr(begin, end - begin), origin);
        if (entry.starts_with('/')) {
            entries.push_back(entry);
        }
        begin = end + 1;
    }
    return entries;
}

// One object of the closure while it is built.
struct Node {
    ClosureObject object;
    std::vector<std::string> needed;
    std::vector<std::string> rpath;    // expanded; empty when it has a DT_RUNPATH
    std::vector<std::string> runpath;  // expanded
    bool has_runpath = false;
    int parent = -1;  // index of the object that needed it; -1: the executable
};

// The closure's builder: the nodes, what identifies each file, the inputs.
class ClosureBuilder {
  public:
    ClosureBuilder(const LoaderRoot& root, const LdSoCache& cache, const LoaderInputs& inputs)
        : root_(root), cache_(cache), inputs_(inputs) {}

    Result<DependencyClosure> build();

  private:
    // Reads an object's dynamic section into a node; nullopt if the file
    // is no x86-64 ELF object (the loader skips it and searches on).
    std::optional<Node> read_node(const std::string& path) const;
    // Finds `name` for the object `parent` (-1: the executable) and adds it,
    // unless an object of that name is loaded already.
    void add(const std::string& name, int parent, int depth);
    std::optional<Node> search(const std::string& name, int parent) const;
    std::optional<Node> try_directories(const std::vector<std::string>& directories,
                                        const std::string& name) const;

    const LoaderRoot& root_;
    const LdSoCache& cache_;
    const LoaderInputs& inputs_;
    Node executable_;
    std::vector<Node> nodes_;
    std::set<std::string> loaded_names_;  // sonames and names asked for
    std::set<std::pair<dev_t, ino_t>> loaded_files_;
    std::vector<std::string> unresolved_;
};

std::optional<Node> ClosureBuilder::read_node(const std::string& path) const {
    auto fd = root_.open_file(path);
    if (!fd) {
        return std::nullopt;
    }
    auto elf = ElfFile::open(*fd, root_.outside(path));
    if (!elf || !elf->is_x86_64()) {
        return std::nullopt;
    }
    Node node;
    node.object.path = path;
    std::string origin = directory_of(path);
    auto needed = elf->needed();
    auto rpath = elf->rpath();
    auto runpath = elf->runpath();
    auto soname = elf->soname();
    node.needed = needed ? *needed : std::vector<std::string>{};
    node.has_runpath = runpath && !runpath->empty();
    node.runpath =
        node.has_runpath ? split_search_path(*runpath, origin) : std::vector<std::string>{};
    if (!node.has_runpath && rpath) {
        node.rpath = split_search_path(*rpath, origin);
    }
    if (soname && *soname) {
        node.object.soname = **soname;
    }
    return node;
}

std::optional<Node> ClosureBuilder::try_directories(const std::vector<std::string>& directories,
                                                    const std::string& name) const {
    for (const std::string& directory : directories) {
        if (auto node = read_node(directory + "/" + name)) {
            return node;
        }
    }
    return std::nullopt;
}

// ld.so(8), "Finding shared libraries", in its order.
std::optional<Node> ClosureBuilder::search(const std::string& name, int parent) const {
    // 1. A name with a slash is a path.
    if (name.find('/') != std::string::npos) {
        return read_node(name);
    }
    const Node& requester = parent < 0 ? executable_ : nodes_[static_cast<std::size_t>(parent)];
    // 2. DT_RPATH of the requester and of the objects that loaded it, up
    // to the executable's (objects with a DT_RUNPATH contribute none).
    if (!requester.has_runpath) {
        for (int at = parent; at >= 0; at = nodes_[static_cast<std::size_t>(at)].parent) {
            if (auto node = try_directories(nodes_[static_cast<std::size_t>(at)].rpath, name)) {
                return node;
            }
        }
        if (auto node = try_directories(executable_.rpath, name)) {
            return node;
        }
    }
    // 3. LD_LIBRARY_PATH (not for a secure-execution program).
    if (!inputs_.secure) {
        if (auto node = try_directories(
                split_search_path(inputs_.library_path, directory_of(inputs_.executable)), name)) {
            return node;
        }
    }
    // 4. The requester's own DT_RUNPATH.
    if (auto node = try_directories(requester.runpath, name)) {
        return node;
    }
    // 5. ld.so.cache, then 6. the default directories.
    if (auto cached = cache_.find(name)) {
        if (auto node = read_node(*cached)) {
            return node;
        }
    }
    return try_directories(default_directories, name);
}

void ClosureBuilder::add(const std::string& name, int parent, int depth) {
    if (loaded_names_.contains(name)) {
        return;
    }
    auto node = search(name, parent);
    if (!node) {
        unresolved_.push_back(name);
        loaded_names_.insert(name);
        return;
    }
    // The same file under another name is the same object.
    struct stat status {};
    if (auto fd = root_.open_file(node->object.path); fd && ::fstat(fd->get(), &status) == 0) {
        if (!loaded_files_.insert({status.st_dev, status.st_ino}).second) {
            loaded_names_.insert(name);
            return;
        }
    }
    node->object.name = name;
    if (node->object.soname.empty()) {
        node->object.soname = name;
    }
    node->object.depth = depth;
    node->parent = parent;
    loaded_names_.insert(name);
    loaded_names_.insert(node->object.soname);
    nodes_.push_back(std::move(*node));
}

Result<DependencyClosure> ClosureBuilder::build() {
    // 1. The executable: its search paths and its DT_NEEDED.
    auto executable = read_node(inputs_.executable);
    if (!executable) {
        return fail(ErrorCode::bad_format,
                    root_.outside(inputs_.executable) + ": not an x86-64 ELF object");
    }
    executable_ = std::move(*executable);
    // 2. LD_PRELOAD's objects, then breadth first from the executable's
    // DT_NEEDED: the loader's order, which decides who wins a name.
    if (!inputs_.secure) {
        for (const std::string& entry : split_search_path(inputs_.preload, "", ": ")) {
            add(entry, -1, 0);
        }
    }
    for (const std::string& name : executable_.needed) {
        add(name, -1, 1);
    }
    for (std::size_t next = 0; next < nodes_.size(); ++next) {
        std::vector<std::string> needed = nodes_[next].needed;  // nodes_ grows
        for (const std::string& name : needed) {
            add(name, static_cast<int>(next), nodes_[next].object.depth + 1);
        }
    }
    DependencyClosure closure;
    for (Node& node : nodes_) {
        closure.objects.push_back(std::move(node.object));
    }
    closure.unresolved = std::move(unresolved_);
    return closure;
}

}  // namespace

Result<DependencyClosure> dependency_closure(const LoaderRoot& root, const LdSoCache& cache,
                                             const LoaderInputs& inputs) {
    ClosureBuilder builder(root, cache, inputs);
    return builder.build();
}

}  // namespace suture
