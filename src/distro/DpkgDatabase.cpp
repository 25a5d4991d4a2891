#include "distro/DpkgDatabase.h"

#include <dirent.h>

#include <algorithm>
#include <sstream>
#include <vector>

#include "base/Files.h"

namespace suture {

namespace {

constexpr const char* database = "/var/lib/dpkg";

// The *.list files of ROOT/var/lib/dpkg/info, OpenSSL's packages first.
std::vector<std::string> package_lists(const std::string& info) {
    std::vector<std::string> lists;
    DIR* directory = ::opendir(info.c_str());
    if (directory == nullptr) {
        return lists;
    }
    while (const dirent* entry = ::readdir(directory)) {
        std::string name = entry->d_name;
        if (name.size() > 5 && name.ends_with(".list")) {
            lists.push_back(name);
        }
    }
    ::closedir(directory);
    std::stable_partition(lists.begin(), lists.end(), [](const std::string& name) {
        return name.starts_with("libssl") || name.starts_with("libcrypto");
    });
    return lists;
}

// Does a .list file's text name `path` (or `twin`) as a line of its own?
bool lists_path(const std::string& text, const std::string& path, const std::string& twin) {
    for (const std::string* wanted : {&path, &twin}) {
        if (wanted->empty()) {
            continue;
        }
        for (std::size_t at = text.find(*wanted); at != std::string::npos;
             at = text.find(*wanted, at + 1)) {
            bool starts_line = at == 0 || text[at - 1] == '\n';
            std::size_t end = at + wanted->size();
            bool ends_line = end == text.size() || text[end] == '\n';
            if (starts_line && ends_line) {
                return true;
            }
        }
    }
    return false;
}

// The installed version of `package` (for `architecture`) in dpkg's status
// file; "" if it is not installed.
std::string installed_version(const std::string& status, const std::string& package,
                              const std::string& architecture) {
    std::istringstream stanzas(status);
    std::string line;
    std::string name;
    std::string arch;
    std::string version;
    std::string state;
    auto matches = [&] {
        return name == package && (architecture.empty() || arch == architecture || arch == "all") &&
               state.ends_with(" installed");
    };
    while (std::getline(stanzas, line)) {
        if (line.empty()) {
            if (matches()) {
                return version;
            }
            name.clear();
            arch.clear();
            version.clear();
            state.clear();
        } else if (line.starts_with("Package: ")) {
            name = line.substr(9);
        } else if (line.starts_with("Architecture: ")) {
            arch = line.substr(14);
        } else if (line.starts_with("Version: ")) {
            version = line.substr(9);
        } else if (line.starts_with("Status: ")) {
            state = line.substr(8);
        }
    }
    return matches() ? version : "";
}

}  // namespace

std::optional<InstalledPackage> dpkg_owner(const std::string& root, const std::string& path) {
    std::string info = root + database + "/info";
    // On a merged-/usr system dpkg may list /lib/... for what maps as /usr/lib/...
    std::string twin = path.starts_with("/usr/") ? path.substr(4) : "";
    for (const std::string& list : package_lists(info)) {
        auto text = read_file(info + "/" + list);
        if (!text || !lists_path(*text, path, twin)) {
            continue;
        }
        std::string stem = list.substr(0, list.size() - 5);
        auto colon = stem.find(':');
        InstalledPackage package{stem.substr(0, colon),
                                 "",
                                 colon == std::string::npos ? "" : stem.substr(colon + 1),
                                 database};
        auto status = read_file(root + database + "/status");
        if (!status) {
            return std::nullopt;
        }
        package.version = installed_version(*status, package.package, package.architecture);
        if (package.version.empty()) {
            return std::nullopt;  // listed, but not installed (a half-removed package)
        }
        return package;
    }
    return std::nullopt;
}

}  // namespace suture
