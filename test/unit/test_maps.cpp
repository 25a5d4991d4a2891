#include <unistd.h>

#include <catch2/catch.hpp>

#include "proc/MappingFile.h"
#include "proc/ProcessMaps.h"

using namespace suture;

TEST_CASE("a maps line of a mapped library gives addresses, permissions, device, inode and path") {
    auto mappings = parse_maps(
        "7f3a1c200000-7f3a1c2c5000 r--p 00000000 fe:01 1835265                    "
        "/usr/lib/x86_64-linux-gnu/libcrypto.so.3\n"
        "7f3a1c2c5000-7f3a1c542000 r-xp 000c5000 fe:01 1835265                    "
        "/usr/lib/x86_64-linux-gnu/libcrypto.so.3\n");
    REQUIRE(mappings);
    REQUIRE(mappings->size() == 2);
    const Mapping& text = (*mappings)[1];
    CHECK(text.start == 0x7f3a1c2c5000);
    CHECK(text.end == 0x7f3a1c542000);
    CHECK(text.readable);
    CHECK_FALSE(text.writable);
    CHECK(text.executable);
    CHECK_FALSE(text.shared);
    CHECK(text.offset == 0xc5000);
    CHECK(text.dev_major == 0xfe);
    CHECK(text.dev_minor == 0x01);
    CHECK(text.inode == 1835265);
    CHECK(text.path == "/usr/lib/x86_64-linux-gnu/libcrypto.so.3");
    CHECK_FALSE(text.deleted);
    CHECK(text.is_file());
    CHECK(text.map_files_name() == "7f3a1c2c5000-7f3a1c542000");
}

TEST_CASE("a deleted library keeps its path and is marked deleted") {
    auto mappings = parse_maps(
        "7f0000000000-7f0000001000 r-xp 00000000 08:02 42 /opt/my lib/libssl.so.3 (deleted)\n");
    REQUIRE(mappings);
    CHECK((*mappings)[0].deleted);
    CHECK((*mappings)[0].path == "/opt/my lib/libssl.so.3");
}

TEST_CASE("anonymous and special mappings are not files") {
    auto mappings = parse_maps(
        "55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]\n"
        "7ffd5a1f0000-7ffd5a1f2000 r-xp 00000000 00:00 0                          [vdso]\n"
        "7f0000002000-7f0000003000 rw-p 00000000 00:00 0 \n"
        "7f0000004000-7f0000005000 rw-s 00000000 00:05 7 /SYSV00000000 (deleted)\n");
    REQUIRE(mappings);
    REQUIRE(mappings->size() == 4);
    CHECK_FALSE((*mappings)[0].is_file());
    CHECK((*mappings)[0].path == "[heap]");
    CHECK_FALSE((*mappings)[1].is_file());
    CHECK_FALSE((*mappings)[2].is_file());
    CHECK((*mappings)[3].is_file());
    CHECK((*mappings)[3].shared);
}

TEST_CASE("a malformed maps line is an error that names the line") {
    auto mappings = parse_maps("00400000-00452000 r-xp 00000000 08:02 173521 /bin/true\ngarbage\n");
    REQUIRE_FALSE(mappings);
    CHECK(mappings.error().code == ErrorCode::bad_format);
    CHECK(mappings.error().message.find("maps line 2") != std::string::npos);

    CHECK_FALSE(parse_maps("00452000-00400000 r-xp 00000000 08:02 1 /bin/true\n"));  // end < start
    CHECK_FALSE(parse_maps("00400000-00452000 r-x"));
}

TEST_CASE("this test's own maps list its executable") {
    auto mappings = read_process_maps(static_cast<int>(::getpid()));
    REQUIRE(mappings);
    char exe[4096] = {};
    REQUIRE(::readlink("/proc/self/exe", exe, sizeof exe - 1) > 0);
    bool found = false;
    for (const Mapping& mapping : *mappings) {
        found = found || (mapping.path == exe && mapping.executable);
    }
    CHECK(found);
}

TEST_CASE("the maps of a process that does not exist are a not_found error") {
    auto mappings = read_process_maps(0x3fffffff);
    REQUIRE_FALSE(mappings);
    CHECK(mappings.error().code == ErrorCode::not_found);
    CHECK(mappings.error().message.starts_with("pid 1073741823: maps: "));
}

TEST_CASE("the file of a chrooted process's mapping is reached without doubling its root") {
    auto mappings = parse_maps(
        "7f0000000000-7f0000001000 r-xp 00001000 fe:00 42 "
        "/srv/rootfs/usr/lib/x86_64-linux-gnu/libssl.so.3\n");
    REQUIRE(mappings);
    MappingFile file = mapping_file(1234, mappings->front(), "/srv/rootfs");
    CHECK(file.path_in_process == "/usr/lib/x86_64-linux-gnu/libssl.so.3");
    CHECK(file.via_root == "/proc/1234/root/usr/lib/x86_64-linux-gnu/libssl.so.3");
    CHECK(file.via_map_files == "/proc/1234/map_files/7f0000000000-7f0000001000");
}

TEST_CASE("a mapping path outside the process's root, or a root of /, is kept as it is") {
    CHECK(path_in_process("/usr/lib/libssl.so.3", "/") == "/usr/lib/libssl.so.3");
    CHECK(path_in_process("/usr/lib/libssl.so.3", "") == "/usr/lib/libssl.so.3");
    // Another mount namespace prints its own paths; a sibling directory
    // whose name merely starts with the root's is not under it.
    CHECK(path_in_process("/srv/rootfs2/lib/x.so", "/srv/rootfs") == "/srv/rootfs2/lib/x.so");
}
