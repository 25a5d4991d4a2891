#!/usr/bin/env bash
# The Debian packages (debian/): `dpkg-buildpackage -b -uc -us` builds
# suture and suture-builder, lintian finds no error or warning (its
# overrides each give a reason), and `apt install ./suture_*.deb` installs
# suture into a fresh Debian 12 root filesystem (a copy of the debootstrap'ed
# tree of containers/make-rootfs) with its dependencies from the archive.
# Then: the binaries run, the units are enabled, the bus and polkit policies,
# man pages and bash completion are in place, /etc/suture's files are
# conffiles, no feed keys were made by the installation, and the documented
# post-install step (suture-setup-local-feed) makes a local feed with
# root-only keys that `suture feed list` reads. Slow suite: the package
# build is a full optimised build (several minutes on 2 cores).
#
# (An override's reason is the comment block right above it.)
# Needs root (chroot), dpkg-buildpackage, lintian, debootstrap and Debian's
# archive. SUTURE_DEBS=DIR reuses packages scripts/build-deb left in DIR.
source "$(dirname "$0")/lib.sh"
require_root
for tool in dpkg-buildpackage lintian debootstrap; do
    command -v "$tool" >/dev/null || skip "needs $tool (scripts/install-deps installs it)"
done

# 1. The packages (SUTURE_DEBS=DIR: the .deb and .changes files of an
#    earlier scripts/build-deb run of the same tree instead).
if [ -n "${SUTURE_DEBS:-}" ]; then
    mkdir -p "$scratch/debs"
    cp "$SUTURE_DEBS"/*.deb "$SUTURE_DEBS"/*.changes "$SUTURE_DEBS"/*.buildinfo "$scratch/debs/"
else
    "$SOURCE_ROOT/scripts/build-deb" "$scratch/debs" >"$scratch/build-deb.log" 2>&1 ||
        { cat "$scratch/build-deb.log"; fail_check "scripts/build-deb"; finish; }
fi
for package in suture suture-builder; do
    deb=$(ls "$scratch"/debs/"${package}"_*_amd64.deb 2>/dev/null | head -1)
    [ -n "$deb" ] && pass "built $(basename "$deb")" || fail_check "no $package .deb"
done

# 2. lintian: no error and no warning (info and pedantic tags are printed).
if lintian --fail-on error,warning "$scratch"/debs/*.changes >"$scratch/lintian.log" 2>&1; then
    pass "lintian: no errors or warnings ($(grep -c '^[IP]:' "$scratch/lintian.log" || true) info tags)"
else
    cat "$scratch/lintian.log"
    fail_check "lintian"
fi
while read -r override; do
    case $override in '' | '#'*) continue ;; esac
    fail_check "lintian override without a reason comment before it: $override"
done < <(awk '/^#/ { reason = 1; next } /^$/ { reason = 0; next } !reason { print }' \
    "$SOURCE_ROOT"/debian/*.lintian-overrides 2>/dev/null)

# 3. A fresh Debian 12 root filesystem, the packages installed by apt.
base=$("$SOURCE_ROOT/containers/make-rootfs" debian-12 openssl) || { fail_check "make-rootfs"; finish; }
root=$scratch/root
cp -a "$base" "$root"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# No services start in the chroot (invoke-rc.d's documented hook).
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true; cleanup' EXIT
cp "$scratch"/debs/*.deb "$root/tmp/"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
in_root apt-get update -q >"$scratch/apt.log" 2>&1 &&
    (cd "$root/tmp" && in_root sh -c 'cd /tmp && apt-get install -y -q ./suture_*_amd64.deb') >>"$scratch/apt.log" 2>&1 &&
    pass "apt install ./suture_*.deb in a fresh Debian 12 tree (dependencies from the archive)" ||
    { tail -30 "$scratch/apt.log"; fail_check "apt install suture"; finish; }
check_eq "suture is installed" "install ok installed" \
    "$(in_root dpkg-query -W -f '${Status}' suture)"

# 4. What the package put in place.
version=$(in_root suture --version 2>&1) && pass "suture --version: $version" || fail_check "suture --version: $version"
version=$(in_root sutured --version 2>&1) && pass "sutured --version: $version" || fail_check "sutured --version"
in_root suture-feed --help >/dev/null && pass "suture-feed runs" || fail_check "suture-feed --help"
code=0
in_root suture status --json >"$scratch/status.json" 2>"$scratch/status.err" || code=$?
{ [ "$code" = 0 ] || [ "$code" = 3 ]; } && jq -e .summary "$scratch/status.json" >/dev/null &&
    pass "suture status --json in the tree (exit $code)" || { cat "$scratch/status.err"; fail_check "suture status (exit $code)"; }
for unit in multi-user.target.wants/sutured.service timers.target.wants/suture-update.timer \
    multi-user.target.wants/suture-boot.service; do
    [ -L "$root/etc/systemd/system/$unit" ] && pass "enabled: $unit" || fail_check "not enabled: $unit"
done
for file in /lib/systemd/system/sutured.service /lib/systemd/system/suture-update.service \
    /lib/systemd/system/suture-update.timer /lib/systemd/system/suture-boot.service \
    /usr/share/dbus-1/system.d/org.suture.Suture1.conf /usr/share/polkit-1/actions/org.suture.policy \
    /usr/share/man/man8/suture.8.gz /usr/share/man/man8/sutured.8.gz \
    /usr/share/man/man8/suture-setup-local-feed.8.gz /usr/share/man/man1/suture-feed.1.gz \
    /usr/share/bash-completion/completions/suture /usr/share/suture/distro-support/debian-12/builds.json \
    /usr/share/doc/suture/operator-guide.md.gz; do
    [ -e "$root$file" ] && pass "installed $file" || fail_check "missing $file"
done
for conffile in /etc/suture/remotes.d/vendor.conf.example /etc/needrestart/conf.d/suture.conf; do
    grep -qx "$conffile" "$root/var/lib/dpkg/info/suture.conffiles" &&
        pass "conffile $conffile" || fail_check "not a conffile: $conffile"
done
[ ! -e "$root/var/lib/suture/feed-keys" ] && [ ! -e "$root/etc/suture/remotes.d/local.conf" ] &&
    pass "the installation made no feed keys and configured no feed" || fail_check "keys or a feed appeared at install"
completion=$(in_root bash -c 'source /usr/share/bash-completion/completions/suture
    COMP_WORDS=(suture update --of); COMP_CWORD=2; _suture; echo "${COMPREPLY[*]}"')
check_eq "bash completion of 'suture update --of'" "--offline" "$completion"

# 5. The documented post-install step: the local feed, keys for root only.
in_root suture-setup-local-feed --advisories >"$scratch/setup.log" 2>&1 &&
    pass "suture-setup-local-feed --advisories" || { cat "$scratch/setup.log"; fail_check "suture-setup-local-feed"; }
check_eq "feed keys are root's alone" "700 root" "$(stat -c '%a %U' "$root/var/lib/suture/feed-keys" 2>/dev/null)"
in_root suture feed refresh >"$scratch/refresh.log" 2>&1 || { cat "$scratch/refresh.log"; fail_check "feed refresh"; }
listed=$(in_root suture feed list --json | jq '[.. | objects | select(has("patch_id"))] | length' 2>/dev/null || echo 0)
[ "$listed" -gt 0 ] && pass "suture feed list: $listed cached patchsets from the local feed" ||
    fail_check "the local feed lists no patchsets"

# 6. suture-builder installs next to it and its tools run.
(in_root sh -c 'cd /tmp && apt-get install -y -q ./suture-builder_*_amd64.deb') >>"$scratch/apt.log" 2>&1 &&
    pass "apt install ./suture-builder_*.deb" || { tail -20 "$scratch/apt.log"; fail_check "apt install suture-builder"; }
for tool in suture-build suture-make-patch suture-pack; do
    in_root "$tool" --help >/dev/null 2>&1 && pass "$tool --help runs" || fail_check "$tool --help"
done
finish
