# shellcheck shell=bash
# Access to a distribution's package archive through a private apt root, so
# that what the host's own /etc/apt lists does not matter: the suites come from
# the distribution's descriptor (distro-support/<id>/distro.json).
#
# Source this file; it defines:
#   archive_cache_dir                 where debs and apt state are cached
#   archive_apt ID apt-get|apt-cache ARGS...   run apt against ID's archive
#   archive_update ID                 refresh ID's package lists (once per run)
#   archive_versions ID PACKAGE       "VERSION SUITE" lines, one per suite whose
#                                     Packages index offers the binary package
#   archive_fetch ID PACKAGE VERSION  download the .deb, print its path (from
#                                     the pool if the index no longer has it)
#   archive_extract ID PACKAGE VERSION DEST   unpack the .deb's files into DEST
#   archive_source ID SOURCE VERSION DEST     unpack a source package into DEST
#   archive_rootfs ID [PACKAGE...]    a debootstrap'ed root filesystem of ID

archive_support_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [ -z "${SUTURE_ARCHIVE_CACHE:-}" ]; then
    if [ "$(id -u)" = 0 ]; then
        SUTURE_ARCHIVE_CACHE=/var/cache/suture-archive
    else
        SUTURE_ARCHIVE_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/suture-archive
    fi
fi
archive_cache_dir=$SUTURE_ARCHIVE_CACHE

archive_die() {
    echo "archive: error: $*" >&2
    exit 1
}

archive_descriptor() {
    local descriptor="$archive_support_dir/$1/distro.json"
    [ -f "$descriptor" ] || archive_die "$1: no descriptor $descriptor"
    echo "$descriptor"
}

archive_root() { echo "$archive_cache_dir/apt/$1"; }

# Writes the private apt root for ID: sources from the descriptor, an empty
# dpkg status so the host's installed packages play no part.
archive_prepare_root() {
    local id=$1 root descriptor
    root=$(archive_root "$id")
    descriptor=$(archive_descriptor "$id")
    mkdir -p "$root/etc/apt/sources.list.d" "$root/etc/apt/preferences.d" \
        "$root/var/lib/apt/lists/partial" "$root/var/cache/apt/archives/partial" "$root/debs"
    : > "$root/status"
    jq -r '.archive.keyring as $key | .archive.repositories[] | . as $repo | .suites[] |
        "deb [signed-by=\($key)] \($repo.uri) \(.) \($repo.components | join(" "))",
        "deb-src [signed-by=\($key)] \($repo.uri) \(.) \($repo.components | join(" "))"' \
        "$descriptor" > "$root/etc/apt/sources.list"
}

archive_apt() {
    local id=$1 tool=$2 root arch
    shift 2
    root=$(archive_root "$id")
    arch=$(jq -r .architecture "$(archive_descriptor "$id")")
    "$tool" -q \
        -o Dir::Etc::SourceList="$root/etc/apt/sources.list" \
        -o Dir::Etc::SourceParts="$root/etc/apt/sources.list.d" \
        -o Dir::Etc::Preferences="$root/etc/apt/preferences" \
        -o Dir::Etc::PreferencesParts="$root/etc/apt/preferences.d" \
        -o Dir::State="$root/var/lib/apt" \
        -o Dir::State::status="$root/status" \
        -o Dir::Cache="$root/var/cache/apt" \
        -o APT::Architecture="$arch" \
        -o APT::Architectures="$arch" \
        -o Acquire::Languages=none \
        -o APT::Sandbox::User=root \
        "$@"
}

declare -A archive_updated=()
archive_update() {
    local id=$1
    [ -n "${archive_updated[$id]:-}" ] && return 0
    archive_prepare_root "$id"
    echo "archive: $id: refreshing package lists" >&2
    archive_apt "$id" apt-get update > "$(archive_root "$id")/update.log" 2>&1 ||
        archive_die "$id: apt-get update failed; see $(archive_root "$id")/update.log"
    archive_updated[$id]=1
}

archive_versions() {
    local id=$1 package=$2
    archive_update "$id"
    # madison: "pkg | version | uri suite/component arch Packages" for the
    # binary package, and "source | version | uri suite/component Sources"
    # for its source package: only the Packages lines say that a suite
    # offers the binary (a suite's Sources can still list a source whose
    # binaries it has replaced).
    archive_apt "$id" apt-cache madison "$package" |
        awk -F'|' '$3 ~ / Packages *$/ { gsub(/ /, "", $2); split($3, where, " "); split(where[2], suite, "/");
                     print $2, suite[1] }'
}

archive_fetch() {
    local id=$1 package=$2 version=$3 root deb
    root=$(archive_root "$id")
    deb=$(find "$root/debs" -maxdepth 1 -name "${package}_$(archive_deb_version "$version")_*.deb" | head -n 1)
    if [ -z "$deb" ]; then
        archive_update "$id"
        echo "archive: $id: downloading $package=$version" >&2
        if ! (cd "$root/debs" && archive_apt "$id" apt-get download "$package=$version" >&2); then
            archive_fetch_superseded "$id" "$package" "$version" ||
                archive_die "$id: cannot download $package=$version"
        fi
        deb=$(find "$root/debs" -maxdepth 1 -name "${package}_$(archive_deb_version "$version")_*.deb" | head -n 1)
        [ -n "$deb" ] || archive_die "$id: $package=$version downloaded but not found in $root/debs"
    fi
    echo "$deb"
}

# A build the archive's Packages indexes no longer list (a superseded
# security update) can still sit in the pool next to its source package,
# whose Sources entry is still signed. Downloads it from there. Its bytes are
# not covered by any signed index: callers must authenticate them another
# way (suture-build does: it accepts them only if a rebuild from the signed
# source is byte-identical).
archive_fetch_superseded() {
    local id=$1 package=$2 version=$3 root arch dsc_uri deb_name
    root=$(archive_root "$id")
    arch=$(jq -r .architecture "$(archive_descriptor "$id")")
    dsc_uri=$(archive_apt "$id" apt-get --print-uris source "$package=$version" 2>/dev/null |
        sed -n "s/^'\([^']*\.dsc\)' .*/\1/p" | head -n 1)
    [ -n "$dsc_uri" ] || return 1
    deb_name=${package}_$(archive_deb_version "$version")_$arch.deb
    echo "archive: $id: $package=$version is no longer in the Packages index; trying the pool at ${dsc_uri%/*}/ (not covered by a signed index)" >&2
    curl -sSf --retry 3 -o "$root/debs/$deb_name.part" "${dsc_uri%/*}/${deb_name//~/%7e}" >&2 || {
        rm -f "$root/debs/$deb_name.part"
        return 1
    }
    mv "$root/debs/$deb_name.part" "$root/debs/$deb_name"
}

# The version as it appears in a .deb file name: an epoch's ':' becomes %3a.
archive_deb_version() { echo "${1//:/%3a}"; }

archive_extract() {
    local id=$1 package=$2 version=$3 dest=$4 deb
    deb=$(archive_fetch "$id" "$package" "$version") || exit 1
    mkdir -p "$dest"
    dpkg-deb -x "$deb" "$dest"
}

# Downloads and unpacks SOURCE=VERSION into DEST (which must not exist yet).
# The .dsc, tarballs and signatures stay cached under the apt root's sources/.
archive_source() {
    local id=$1 source=$2 version=$3 dest=$4 root dsc
    root=$(archive_root "$id")
    mkdir -p "$root/sources"
    dsc=$root/sources/${source}_$(archive_deb_version "${version#*:}").dsc
    if [ ! -f "$dsc" ]; then
        archive_update "$id"
        echo "archive: $id: downloading source $source=$version" >&2
        (cd "$root/sources" && archive_apt "$id" apt-get source --download-only "$source=$version" >&2) ||
            archive_die "$id: cannot download source $source=$version (are deb-src entries reachable?)"
        [ -f "$dsc" ] || archive_die "$id: source $source=$version downloaded but $dsc is missing"
    fi
    [ ! -e "$dest" ] || archive_die "$dest already exists"
    mkdir -p "$(dirname "$dest")"
    dpkg-source --no-check -x "$dsc" "$dest" >&2 ||
        archive_die "$id: cannot unpack $dsc"
}

# Prints the path of a root filesystem of ID (a debian-family descriptor) with
# PACKAGE... installed, building it with debootstrap on first use. Trees are
# cached under $archive_cache_dir/rootfs/, keyed by distribution and package
# list, and built under a lock so parallel callers wait for one build. This is
# the container stand-in where no container engine runs (enter it with
# `unshare --mount --pid --fork chroot ROOTFS ...`) and the build root of
# suture-build for releases other than the host's. Needs root and debootstrap.
archive_rootfs() {
    local id=$1 descriptor codename mirror packages rootfs lock
    shift
    descriptor=$(archive_descriptor "$id")
    [ "$(jq -r .family "$descriptor")" = debian ] || archive_die "$id: only debian-family rootfs are built here"
    command -v debootstrap >/dev/null || archive_die "debootstrap is not installed"
    codename=$(jq -r .codename "$descriptor")
    mirror=$(jq -r '.archive.repositories[0].uri' "$descriptor")
    packages=$(printf '%s\n' "$@" | sed '/^$/d' | sort -u | paste -sd, -)
    rootfs="$archive_cache_dir/rootfs/$id${packages:+-${packages//,/-}}"
    mkdir -p "$archive_cache_dir/rootfs"
    exec {lock}>"$rootfs.lock"
    flock "$lock"
    if [ ! -f "$rootfs/.suture-rootfs-complete" ]; then
        rm -rf "$rootfs.tmp"
        echo "archive: debootstrap $codename${packages:+ with $packages} into $rootfs (a few minutes, once)" >&2
        debootstrap --variant=minbase ${packages:+--include="$packages"} "$codename" "$rootfs.tmp" "$mirror" \
            >"$rootfs.log" 2>&1 ||
            { exec {lock}>&-; archive_die "debootstrap $codename failed; see $rootfs.log"; }
        touch "$rootfs.tmp/.suture-rootfs-complete"
        rm -rf "$rootfs"
        mv "$rootfs.tmp" "$rootfs"
    fi
    exec {lock}>&-
    echo "$rootfs"
}
