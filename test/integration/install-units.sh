#!/usr/bin/env bash
# `meson install` puts binaries, systemd units, the D-Bus bus policy and
# interface, the polkit policy and the man pages in place, and the units
# pass `systemd-analyze verify` (against the installed binaries).
#
# Usage (meson passes it): install-units.sh BUILD_DIR
source "$(dirname "$0")/lib.sh"
build=${1:?}
command -v systemd-analyze >/dev/null || skip "needs systemd-analyze"
dest=$scratch/root
meson install -C "$build" --destdir "$dest" --no-rebuild >"$scratch/install.log" 2>&1 ||
    { cat "$scratch/install.log"; fail_check "meson install"; finish; }
prefix=$(meson introspect "$build" --buildoptions | jq -r '.[] | select(.name == "prefix") | .value')
for file in bin/suture bin/suture-feed bin/suture-build bin/suture-make-patch sbin/sutured \
    lib/systemd/system/sutured.service lib/systemd/system/suture-update.service \
    lib/systemd/system/suture-update.timer lib/systemd/system/suture-boot.service \
    lib/systemd/system/suture-shutdown.service share/dbus-1/system.d/org.suture.Suture1.conf share/dbus-1/interfaces/org.suture.Suture1.xml \
    share/polkit-1/actions/org.suture.policy share/man/man8/suture.8 share/man/man8/sutured.8; do
    [ -e "$dest$prefix/$file" ] && pass "installed $file" || fail_check "missing $prefix/$file"
done
grep -q "ExecStart=$prefix/sbin/sutured" "$dest$prefix/lib/systemd/system/sutured.service" &&
    pass "sutured.service runs the installed sutured" || fail_check "sutured.service ExecStart"
# The operation lock's directory is sutured's to write (ProtectSystem=strict
# makes /run read-only), and stays when sutured stops (a CLI run may hold it).
unit=$dest$prefix/lib/systemd/system/sutured.service
grep -q '^ReadWritePaths=.*/run/suture' "$unit" && grep -q '^RuntimeDirectory=suture$' "$unit" &&
    grep -q '^RuntimeDirectoryPreserve=yes$' "$unit" &&
    pass "sutured may write the operation lock in /run/suture" || fail_check "sutured.service: /run/suture"

# Each unit's suture command line parses (suture-boot.service once had
# `suture update --offline --direct`, a usage error: --direct comes first).
for unit in suture-boot.service:ExecStart suture-update.service:ExecStart suture-shutdown.service:ExecStop; do
    key=${unit#*:}
    unit=${unit%:*}
    command=$(sed -n "s/^$key=//p" "$dest$prefix/lib/systemd/system/$unit")
    read -r -a words <<<"$command"
    "$dest${words[0]}" "${words[@]:1}" --help >/dev/null 2>"$scratch/parse.log" &&
        pass "$unit: '$command' parses" || { cat "$scratch/parse.log"; fail_check "$unit: '$command' is a usage error"; }
done

# systemd-analyze verify in the install root, with the system's own units
# (targets, dbus.socket) beside ours.
mkdir -p "$dest/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$dest/usr/lib/systemd/"
units=("$dest$prefix"/lib/systemd/system/suture*)
if systemd-analyze verify --man=no --root="$dest" "${units[@]}" >"$scratch/verify.log" 2>&1 &&
    [ ! -s "$scratch/verify.log" ]; then
    pass "systemd-analyze verify: ${#units[@]} units clean"
else
    cat "$scratch/verify.log"
    fail_check "systemd-analyze verify"
fi
# The check can fail: a unit whose program does not exist is reported.
printf '[Service]\nExecStart=/nonexistent/sutured\n' >"$dest$prefix/lib/systemd/system/suture-broken.service"
if systemd-analyze verify --man=no --root="$dest" "$dest$prefix/lib/systemd/system/suture-broken.service" \
    >"$scratch/broken.log" 2>&1 && [ ! -s "$scratch/broken.log" ]; then
    fail_check "a broken unit passed verify"
else
    pass "a broken unit is reported: $(head -1 "$scratch/broken.log")"
fi
xmllint --noout "$dest$prefix/share/dbus-1/interfaces/org.suture.Suture1.xml" \
    "$dest$prefix/share/polkit-1/actions/org.suture.policy" \
    "$dest$prefix/share/dbus-1/system.d/org.suture.Suture1.conf" 2>"$scratch/xml.log" &&
    pass "the D-Bus and polkit files are well-formed XML" || { cat "$scratch/xml.log"; fail_check "XML"; }
finish
