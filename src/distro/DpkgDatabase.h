#pragma once

#include <optional>
#include <string>

namespace suture {

// A package dpkg says it installed, from a root's own dpkg database.
struct InstalledPackage {
    std::string package;       // "libssl3"
    std::string version;       // "3.0.19-1~deb12u2"
    std::string architecture;  // "amd64"; "" when dpkg names none
    std::string database;      // the database read, as the process sees it ("/var/lib/dpkg")
};

// Which installed package owns `path` according to the dpkg database under
// `root` (a host path to a root directory, such as "/proc/PID/root", so that
// a container or chroot is answered from its own database): the package
// whose info/PACKAGE[:ARCH].list names the path (or its /usr-less twin on a
// merged-/usr system), and its version from status, if installed.
// nullopt when there is no dpkg database or no package lists the path.
// Reads the libssl and libcrypto packages' lists first, every list only if
// they do not name it.
std::optional<InstalledPackage> dpkg_owner(const std::string& root, const std::string& path);

}  // namespace suture
