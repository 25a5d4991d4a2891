#include "elf/DependencyClosure.h"

#include <elf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <tuple>

#include "base/Files.h"
#include "base/MappedFile.h"
#include "elf/ElfFile.h"
#include "elf/LdSoCache.h"

namespace suture {

namespace {

// The system search path of Debian 12's ld.so (`ld.so --help`), and what
// it expands $LIB and $PLATFORM to (LD_DEBUG=libs shows the expansions).
constexpr const char* default_directories[] = {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                                               "/lib", "/usr/lib"};
constexpr std::string_view lib_expansion = "lib/x86_64-linux-gnu";
constexpr std::string_view platform_expansion = "x86_64";
constexpr const char* cache_path = "/etc/ld.so.cache";
constexpr const char* preload_path = "/etc/ld.so.preload";

// ---- the inputs of a process ------------------------------------------------

std::string read_link(const std::string& path) {
    char target[4096];
    ssize_t length = ::readlink(path.c_str(), target, sizeof target);
    return length > 0 ? std::string(target, static_cast<std::size_t>(length)) : std::string();
}

// /proc/PID/exe and /proc/PID/cwd name paths as our root sees them; for a
// chrooted process they start with its root's path, which is cut off.
// Anything not under it (another mount namespace) is returned unchanged, for
// the caller to check.
std::string inside_root(const std::string& path, const std::string& root_path) {
    if (root_path.empty() || root_path == "/" || !path.starts_with(root_path)) {
        return path;
    }
    std::string rest = path.substr(root_path.size());
    return rest.empty() ? "/" : rest.starts_with('/') ? rest : path;
}

// The last LD_LIBRARY_PATH and LD_PRELOAD of a NUL-separated environment
// block: the loader reads the environment in order, later entries winning
// (elf/rtld.c, process_envvars).
LoaderEnvironment environment_of(std::string_view block) {
    LoaderEnvironment environment;
    while (!block.empty()) {
        std::size_t end = block.find('\0');
        std::string_view entry = block.substr(0, end);
        block.remove_prefix(end == std::string_view::npos ? block.size() : end + 1);
        if (entry.starts_with("LD_LIBRARY_PATH=")) {
            environment.library_path = std::string(entry.substr(16));
        } else if (entry.starts_with("LD_PRELOAD=")) {
            environment.preload = std::string(entry.substr(11));
        }
    }
    return environment;
}

// AT_SECURE out of the bytes of /proc/PID/auxv, nullopt if it is not there.
std::optional<bool> secure_of(std::string_view auxv) {
    for (std::size_t at = 0; at + 2 * sizeof(std::uint64_t) <= auxv.size();
         at += 2 * sizeof(std::uint64_t)) {
        std::uint64_t pair[2];
        std::memcpy(pair, auxv.data() + at, sizeof pair);
        if (pair[0] == AT_SECURE) {
            return pair[1] != 0;
        }
        if (pair[0] == AT_NULL) {
            break;
        }
    }
    return std::nullopt;
}

bool set_id_program(const UniqueFD& executable) {
    struct stat info {};
    return ::fstat(executable.get(), &info) == 0 && (info.st_mode & (S_ISUID | S_ISGID)) != 0;
}

// ---- paths --------------------------------------------------------------------

std::string directory_of(const std::string& path) {
    std::size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_name_of(const std::string& path) {
    std::size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Splits on any of `separators`, keeping empty elements (an empty search
// path element means the working directory).
std::vector<std::string> split(std::string_view text, std::string_view separators) {
    std::vector<std::string> parts;
    for (;;) {
        std::size_t end = text.find_first_of(separators);
        parts.emplace_back(text.substr(0, end));
        if (end == std::string_view::npos) {
            return parts;
        }
        text.remove_prefix(end + 1);
    }
}

// Replaces $ORIGIN, $LIB and $PLATFORM (also as ${...}); an unknown "$X"
// stays as written (elf/dl-load.c, _dl_dst_substitute). Nullopt when
// $ORIGIN is used but `origin` is unknown: the loader drops the element.
std::optional<std::string> expand_tokens(std::string_view text, const std::string& origin) {
    struct Token {
        std::string_view name;
        std::string_view value;
    };
    const Token tokens[] = {
        {"ORIGIN", origin}, {"LIB", lib_expansion}, {"PLATFORM", platform_expansion}};
    std::string expanded;
    while (!text.empty()) {
        std::size_t dollar = text.find('$');
        expanded.append(text.substr(0, dollar));
        if (dollar == std::string_view::npos) {
            break;
        }
        text.remove_prefix(dollar + 1);
        const Token* match = nullptr;
        std::size_t length = 0;
        for (const Token& token : tokens) {
            bool braced = text.size() > token.name.size() + 1 && text.front() == '{' &&
                          text.substr(1, token.name.size()) == token.name &&
                          text[token.name.size() + 1] == '}';
            // Unbraced, the name must end there: "$ORIGINAL" is no token.
            bool bare = text.starts_with(token.name) &&
                        (text.size() == token.name.size() ||
                         !(std::isalnum(static_cast<unsigned char>(text[token.name.size()])) ||
                           text[token.name.size()] == '_'));
            if (braced || bare) {
                match = &token;
                length = token.name.size() + (braced ? 2 : 0);
                break;
            }
        }
        if (match == nullptr) {
            expanded.push_back('$');
            continue;
        }
        if (match->name == "ORIGIN" && origin.empty()) {
            return std::nullopt;
        }
        expanded.append(match->value);
        text.remove_prefix(length);
    }
    return expanded;
}

// ---- the search -----------------------------------------------------------

// One closure computation: the loader's state while it maps one program.
class ClosureSearch {
  public:
    explicit ClosureSearch(const LoaderInputs& inputs) : inputs_(inputs) {}

    Result<DependencyClosure> run() {
        auto executable = read_executable();
        if (!executable) {
            return tl::unexpected(executable.error());
        }
        if (!executable->native || !executable->interpreter) {
            return std::move(closure_);  // static, or not for this loader: nothing is loaded
        }
        add_interpreter(*executable->interpreter);
        std::deque<std::size_t> queue{0};
        for (std::size_t preloaded : map_preloads()) {
            queue.push_back(preloaded);
        }
        map_needed_breadth_first(queue);
        return std::move(closure_);
    }

  private:
    // What the search keeps of each object besides closure_.objects.
    struct Searchable {
        ElfFile::LoadingInfo info;
        std::string origin;  // the directory for $ORIGIN; empty when unknown
        std::optional<FileIdentity> identity;
    };

    Result<ElfFile::LoadingInfo> read_executable() {
        auto elf = ElfFile::open(inputs_.executable, inputs_.executable_path.empty()
                                                         ? std::string("executable")
                                                         : inputs_.executable_path);
        if (!elf) {
            return tl::unexpected(elf.error());
        }
        auto info = elf->loading_info();
        if (!info) {
            return tl::unexpected(info.error());
        }
        const std::string& path = inputs_.executable_path;
        add_object(
            ClosureObject{.name = path, .path = path, .soname = info->soname},
            Searchable{*info, path.empty() ? "" : directory_of(path), inputs_.executable_identity});
        return info;
    }

    // The interpreter is mapped by the kernel; its soname
    // (ld-linux-x86-64.so.2, which libc needs) then names it.
    void add_interpreter(const std::string& path) {
        ClosureObject interpreter{.name = path, .path = path};
        if (auto opened = open_native(path)) {
            interpreter.soname = opened->info.soname;
            add_object(std::move(interpreter), std::move(*opened));
        } else {
            add_object(std::move(interpreter), Searchable{});
        }
    }

    // LD_PRELOAD, then /etc/ld.so.preload (elf/rtld.c, dl_main); each is
    // searched for as the executable's own DT_NEEDED would be.
    std::vector<std::size_t> map_preloads() {
        std::vector<std::string> names;
        if (inputs_.environment.preload && !inputs_.environment.secure) {
            names = split(*inputs_.environment.preload, " :");
        }
        for (std::string& name : preload_file_names()) {
            names.push_back(std::move(name));
        }
        std::vector<std::size_t> mapped;
        for (const std::string& name : names) {
            if (name.empty()) {
                continue;
            }
            auto index = map_object(name, 0);
            if (!index) {
                closure_.missing.push_back(name);
            } else if (index->second) {
                closure_.objects[index->first].preloaded = true;
                mapped.push_back(index->first);
            }
        }
        return mapped;
    }

    // The names of /etc/ld.so.preload: separated by white space or ':',
    // '#' starts a comment to the end of the line.
    std::vector<std::string> preload_file_names() {
        auto fd = inputs_.root.open_file(preload_path);
        if (!fd) {
            note_input(preload_path, std::nullopt);
            return {};
        }
        note_input(preload_path, identity_of(*fd, preload_path).value_or(FileIdentity{}));
        std::string text;
        char buffer[4096];
        for (ssize_t n;
             (n = ::read(fd->get(), buffer, sizeof buffer)) > 0 && text.size() < 65536;) {
            text.append(buffer, static_cast<std::size_t>(n));
        }
        std::vector<std::string> names;
        for (const std::string& line : split(text, "\n")) {
            for (std::string& name : split(line.substr(0, line.find('#')), ": \t")) {
                if (!name.empty()) {
                    names.push_back(std::move(name));
                }
            }
        }
        return names;
    }

    // elf/dl-deps.c, _dl_map_object_deps: each object's DT_NEEDED in order,
    // objects in the order they were mapped.
    void map_needed_breadth_first(std::deque<std::size_t>& queue) {
        while (!queue.empty()) {
            std::size_t loader = queue.front();
            queue.pop_front();
            std::vector<std::string> needed = searchable_[loader].info.needed;
            for (const std::string& name : needed) {
                auto index = map_object(name, loader);
                if (!index) {
                    closure_.missing.push_back(name);
                } else if (index->second) {
                    queue.push_back(index->first);
                }
            }
        }
    }

    // The object `name` stands for, found for `loader`: its index, and
    // whether it is new. Nullopt when no search finds it.
    std::optional<std::pair<std::size_t, bool>> map_object(const std::string& written,
                                                           std::size_t loader) {
        if (auto known = names_.find(written); known != names_.end()) {
            return std::pair(known->second, false);
        }
        std::optional<std::string> name = written.find('$') == std::string::npos
                                              ? std::optional(written)
                                              : expand_tokens(written, searchable_[loader].origin);
        if (!name) {
            return std::nullopt;
        }
        auto found =
            name->find('/') != std::string::npos ? open_path(*name) : search(*name, loader);
        if (!found) {
            return std::nullopt;
        }
        auto& [path, searchable] = *found;
        const auto& identity = searchable.identity;
        if (auto same = identity ? files_.find(*identity) : files_.end(); same != files_.end()) {
            names_[written] = same->second;  // another name of a file already mapped
            return std::pair(same->second, false);
        }
        ClosureObject object{
            .name = written, .path = path, .soname = searchable.info.soname, .loader = loader};
        std::size_t index = add_object(std::move(object), std::move(searchable));
        names_[written] = index;
        return std::pair(index, true);
    }

    using Found = std::pair<std::string, Searchable>;

    // A name with a '/' is a path; a relative one starts at the working
    // directory.
    std::optional<Found> open_path(const std::string& name) {
        std::string path = absolute(name);
        auto opened = open_native(path);
        if (!opened) {
            return std::nullopt;
        }
        return Found(path, std::move(*opened));
    }

    // elf/dl-load.c, _dl_map_object: the search order for a bare name.
    std::optional<Found> search(const std::string& name, std::size_t loader) {
        const ElfFile::LoadingInfo& info = searchable_[loader].info;
        if (!info.runpath) {
            for (std::size_t l = loader;; l = closure_.objects[l].loader) {
                if (auto found = search_path(name, searchable_[l].info.rpath, l)) {
                    return found;
                }
                if (l == 0) {
                    break;
                }
            }
        }
        if (!inputs_.environment.secure) {
            if (auto found = search_path(name, inputs_.environment.library_path, 0, ":;")) {
                return found;
            }
        }
        if (auto found = search_path(name, info.runpath, loader)) {
            return found;
        }
        if (info.no_default_libraries) {
            return std::nullopt;
        }
        if (auto found = search_cache(name)) {
            return found;
        }
        for (const char* directory : default_directories) {
            if (auto found = search_directory(name, directory)) {
                return found;
            }
        }
        return std::nullopt;
    }

    // One RPATH, RUNPATH or LD_LIBRARY_PATH, its tokens expanded for
    // `owner`.
    std::optional<Found> search_path(const std::string& name,
                                     const std::optional<std::string>& path, std::size_t owner,
                                     std::string_view separators = ":") {
        if (!path) {
            return std::nullopt;
        }
        for (const std::string& element : split(*path, separators)) {
            auto directory = expand_tokens(element, searchable_[owner].origin);
            if (!directory) {
                continue;
            }
            if (auto found = search_directory(name, absolute(*directory))) {
                return found;
            }
        }
        return std::nullopt;
    }

    std::optional<Found> search_directory(const std::string& name, std::string directory) {
        while (directory.size() > 1 && directory.ends_with('/')) {
            directory.pop_back();
        }
        if (!directory_exists(directory)) {
            return std::nullopt;
        }
        std::string path = directory == "/" ? "/" + name : directory + "/" + name;
        if (auto opened = open_native(path)) {
            return Found(path, std::move(*opened));
        }
        // A library put here later would be found before the one found now.
        note_input(directory, inputs_.root.identity_of(directory));
        return std::nullopt;
    }

    // A missing directory is looked at once (as the loader marks it
    // nonexisting), and is an input: created later, it may hold a library.
    bool directory_exists(const std::string& directory) {
        auto [known, inserted] = directories_.try_emplace(directory, false);
        if (inserted) {
            known->second = inputs_.root.has_directory(directory);
            if (!known->second) {
                note_input(directory, std::nullopt);
            }
        }
        return known->second;
    }

    std::optional<Found> search_cache(const std::string& name) {
        auto path = cache().find(name);
        if (!path) {
            return std::nullopt;
        }
        auto opened = open_native(*path);
        if (!opened) {
            return std::nullopt;  // a stale entry: the default directories follow
        }
        return Found(*path, std::move(*opened));
    }

    // ld.so.cache, read the first time a search gets that far.
    const LdSoCache& cache() {
        if (cache_) {
            return *cache_;
        }
        cache_.emplace();
        auto fd = inputs_.root.open_file(cache_path);
        if (!fd) {
            note_input(cache_path, std::nullopt);
            return *cache_;
        }
        note_input(cache_path, identity_of(*fd, cache_path).value_or(FileIdentity{}));
        if (auto mapping = MappedFile::map(*fd, cache_path)) {
            if (auto parsed = LdSoCache::parse(mapping->bytes(), cache_path)) {
                *cache_ = std::move(*parsed);
            }
        }
        return *cache_;
    }

    // Opens a candidate as the loader's open_verify does: an ELF file of
    // this class and machine, else nullopt (and the search goes on).
    std::optional<Searchable> open_native(const std::string& path) {
        auto fd = inputs_.root.open_file(path);
        if (!fd) {
            return std::nullopt;
        }
        auto elf = ElfFile::open(*fd, path);
        auto info =
            elf ? elf->loading_info() : Result<ElfFile::LoadingInfo>(tl::unexpected(elf.error()));
        if (!info || !info->native) {
            return std::nullopt;
        }
        auto identity = identity_of(*fd, path);
        note_input(path, identity ? std::optional(*identity) : std::nullopt);
        return Searchable{std::move(*info), directory_of(path),
                          identity ? std::optional(*identity) : std::nullopt};
    }

    std::string absolute(const std::string& path) {
        if (path.starts_with('/')) {
            return path;
        }
        closure_.uses_working_directory = true;
        const std::string& directory = inputs_.working_directory;
        return directory.ends_with('/') ? directory + path : directory + "/" + path;
    }

    std::size_t add_object(ClosureObject object, Searchable searchable) {
        std::size_t index = closure_.objects.size();
        for (const std::optional<std::string>& name : {std::optional(object.path), object.soname}) {
            if (name && !name->empty()) {
                names_.try_emplace(*name, index);
            }
        }
        if (searchable.identity) {
            files_.try_emplace(*searchable.identity, index);
        }
        closure_.objects.push_back(std::move(object));
        searchable_.push_back(std::move(searchable));
        return index;
    }

    void note_input(const std::string& path, std::optional<FileIdentity> identity) {
        if (!path.empty() && noted_.insert(path).second) {
            closure_.inputs.push_back(ClosureInput{path, identity});
        }
    }

    struct IdentityOrder {
        bool operator()(const FileIdentity& a, const FileIdentity& b) const {
            return std::tie(a.device, a.inode) < std::tie(b.device, b.inode);
        }
    };

    const LoaderInputs& inputs_;
    DependencyClosure closure_;
    std::vector<Searchable> searchable_;                        // parallel to closure_.objects
    std::map<std::string, std::size_t> names_;                  // every name an object answers to
    std::map<FileIdentity, std::size_t, IdentityOrder> files_;  // each file mapped once
    std::map<std::string, bool> directories_;                   // exists?
    std::set<std::string> noted_;
    std::optional<LdSoCache> cache_;
};

}  // namespace

Result<LoaderInputs> loader_inputs_of_process(int pid) {
    std::string proc = "/proc/" + std::to_string(pid);
    auto root = RootDirectory::open(proc + "/root");
    if (!root) {
        return tl::unexpected(root.error());
    }
    auto executable = open_read_only(proc + "/exe");
    if (!executable) {
        return tl::unexpected(executable.error());
    }
    auto identity = identity_of(*executable, proc + "/exe");
    if (!identity) {
        return tl::unexpected(identity.error());
    }
    auto environ_block = read_file(proc + "/environ");
    if (!environ_block) {
        return tl::unexpected(environ_block.error());
    }
    LoaderInputs inputs{.root = std::move(*root),
                        .executable = std::move(*executable),
                        .executable_identity = *identity,
                        .environment = environment_of(*environ_block)};
    std::string root_path = read_link(proc + "/root");
    // The path counts for $ORIGIN only if it leads to this very file inside
    // the root (another mount namespace may name it otherwise).
    std::string path = inside_root(read_link(proc + "/exe"), root_path);
    if (path.starts_with('/') && inputs.root.identity_of(path) == *identity) {
        inputs.executable_path = std::move(path);
    }
    std::string cwd = inside_root(read_link(proc + "/cwd"), root_path);
    inputs.working_directory = cwd.starts_with('/') ? cwd : "/";
    auto auxv = read_file(proc + "/auxv");
    std::optional<bool> secure = auxv ? secure_of(*auxv) : std::nullopt;
    inputs.environment.secure = secure ? *secure : set_id_program(inputs.executable);
    return inputs;
}

Result<LoaderInputs> loader_inputs_of_program(const std::string& root, const std::string& program,
                                              LoaderEnvironment environment,
                                              std::string working_directory) {
    auto directory = RootDirectory::open(root);
    if (!directory) {
        return tl::unexpected(directory.error());
    }
    auto executable = directory->open_file(program);
    if (!executable) {
        return tl::unexpected(executable.error());
    }
    auto identity = identity_of(*executable, program);
    if (!identity) {
        return tl::unexpected(identity.error());
    }
    return LoaderInputs{.root = std::move(*directory),
                        .executable = std::move(*executable),
                        .executable_identity = *identity,
                        .executable_path = program,
                        .working_directory = std::move(working_directory),
                        .environment = std::move(environment)};
}

Result<DependencyClosure> compute_dependency_closure(const LoaderInputs& inputs) {
    return ClosureSearch(inputs).run();
}

std::string_view reach_name(OpensslReach reach) {
    switch (reach) {
        case OpensslReach::none:
            return "none";
        case OpensslReach::direct:
            return "direct";
        case OpensslReach::transitive:
            return "transitive";
    }
    return "none";
}

bool is_openssl_object(const ClosureObject& object) {
    std::string name = object.soname ? *object.soname : base_name_of(object.path);
    return name.starts_with("libssl.so") || name.starts_with("libcrypto.so");
}

OpensslRoute openssl_route(const DependencyClosure& closure) {
    // Objects are in breadth-first order, so the first OpenSSL one found has
    // the shortest route; a direct one (loader 0) beats any other.
    const auto& objects = closure.objects;
    std::optional<std::size_t> first;
    for (std::size_t i = 1; i < objects.size(); ++i) {
        if (is_openssl_object(objects[i]) &&
            (!first || (objects[i].loader == 0 && objects[*first].loader != 0))) {
            first = i;
        }
    }
    if (!first) {
        return {};
    }
    OpensslRoute route;
    for (std::size_t i = *first; i != 0; i = objects[i].loader) {
        route.through.insert(route.through.begin(), objects[i].name);
    }
    route.reach = route.through.size() == 1 ? OpensslReach::direct : OpensslReach::transitive;
    for (const ClosureObject& object : objects) {
        if (is_openssl_object(object)) {
            route.libraries.push_back(object.path);
        }
    }
    return route;
}

}  // namespace suture
