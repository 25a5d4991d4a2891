#!/usr/bin/env bash
# Reboot-persistent reapplication on a booted Debian 12 system (issue 20,
# part 2): a QEMU VM (software emulation, no network) of a debootstrap'ed
# bookworm tree with the suture .deb installed (scripts/build-deb), nginx
# from the archive on the archive's libssl3 3.0.20-1~deb12u2 (pinned,
# containers/make-rootfs --pin), and the local feed set up and cached
# (suture-setup-local-feed, suture feed refresh). Three boots of one disk:
#   1. first boot: sutured (early, offline: data/systemd/sutured.service)
#      patches nginx's master and workers before their main(); a probe unit
#      ordered after nginx reads `suture status --json` at once, then curls
#      nginx (its first request), and reports on the serial console; then,
#      once the crash lock's watch is over (watch_seconds = 30 in the VM's
#      suture.conf), an automatic update removes the boot's lock, and the
#      VM reboots from inside (systemctl reboot);
#   2. after the reboot: the same report; then a revert and an apply (an
#      update) in one worker, "sync" withheld, and the host kills QEMU
#      (a hard reset after an apply, within its watch);
#   3. after the unclean stop: the crash lock of boot 2 holds its patches
#      back from sutured's first update and from its exec gate (nginx
#      starts unpatched, its request served, `suture status` says the lock
#      holds); the state database opens and the previous boots' records are
#      closed; after `suture crash-lock --release` an automatic update
#      patches every nginx process.
# Boots 1 and 2 must show every nginx process with every shipped patch for
# its libraries active at the probe's first look, and the request served.
# Prints the time from boot to "all patched" (the probe's uptime) per boot:
# docs/benchmarks.md. Slow suite (image build and three emulated boots:
# minutes). Needs root, debootstrap, Debian's archive, qemu-system-x86_64,
# mkfs.ext4. SUTURE_DEBS=DIR takes the .deb files from DIR instead of
# building them. SUTURE_VM_FROM_BUILD=BUILD_DIR installs suture, sutured,
# suture-feed, the units and the data from a meson build directory instead
# of the .deb, as the package lays them out (for a quick run when the
# package build would take too long; the slow suite uses the .deb).
source "$(dirname "$0")/lib.sh"
require_root
for tool in qemu-system-x86_64 mkfs.ext4 debootstrap; do
    command -v "$tool" >/dev/null || skip "needs $tool (scripts/install-deps installs it)"
done
boot_timeout=${SUTURE_VM_BOOT_TIMEOUT:-900}

# 1. The packages.
from_build=${SUTURE_VM_FROM_BUILD:-}
deb=""
if [ -z "$from_build" ]; then
    debs=${SUTURE_DEBS:-}
    if [ -z "$debs" ]; then
        debs=$scratch/debs
        "$SOURCE_ROOT/scripts/build-deb" "$debs" >"$scratch/build-deb.log" 2>&1 ||
            { cat "$scratch/build-deb.log"; fail_check "scripts/build-deb"; finish; }
    fi
    deb=$(ls "$debs"/suture_*_amd64.deb | head -1)
    [ -f "$deb" ] || { fail_check "no suture .deb in $debs"; finish; }
fi

# install_from_build: what the suture package installs, from $from_build,
# under the build's prefix, with the runtime dependencies from the archive.
install_from_build() {
    local prefix unit
    prefix=$(meson introspect "$from_build" --buildoptions | jq -r '.[] | select(.name == "prefix") | .value')
    in_tree apt-get install -y -q --no-install-recommends jq python3 libelf1 libsodium23 libcurl4 \
        libsqlite3-0 libunwind8 libsystemd0 || return 1
    mkdir -p "$tree$prefix/bin" "$tree$prefix/sbin" "$tree$prefix/share/suture/distro-support/debian-12" \
        "$tree$prefix/share/suture/patchsets" "$tree/usr/share/dbus-1/system.d" "$tree/usr/share/polkit-1/actions" \
        "$tree/etc/systemd/system/multi-user.target.wants" "$tree/etc/systemd/system/timers.target.wants"
    cp "$from_build/src/cli/suture" "$from_build/feed-client/suture-feed" "$tree$prefix/bin/"
    cp "$from_build/src/daemon/sutured" "$tree$prefix/sbin/"
    cp "$SOURCE_ROOT/scripts/setup-local-feed" "$tree$prefix/sbin/suture-setup-local-feed"
    cp "$SOURCE_ROOT"/distro-support/debian-12/*.json "$tree$prefix/share/suture/distro-support/debian-12/"
    cp "$SOURCE_ROOT/distro-support/generate-advisories" "$tree$prefix/share/suture/distro-support/"
    cp -a "$SOURCE_ROOT/patchsets/openssl" "$tree$prefix/share/suture/patchsets/"
    cp "$SOURCE_ROOT/data/org.suture.Suture1.conf" "$tree/usr/share/dbus-1/system.d/"
    cp "$SOURCE_ROOT/data/org.suture.policy" "$tree/usr/share/polkit-1/actions/"
    for unit in sutured.service suture-boot.service suture-update.service suture-update.timer; do
        cp "$from_build/data/systemd/$unit" "$tree/lib/systemd/system/$unit"
    done
    ln -sf /lib/systemd/system/sutured.service /lib/systemd/system/suture-boot.service \
        "$tree/etc/systemd/system/multi-user.target.wants/"
    ln -sf /lib/systemd/system/suture-update.timer "$tree/etc/systemd/system/timers.target.wants/"
}

# 2. The VM's tree: bookworm with a kernel, systemd, dbus, nginx on the pinned
#    libssl3; the .deb installed by apt; the local feed set up and cached.
base=$("$SOURCE_ROOT/containers/make-rootfs" --pin libssl3=3.0.20-1~deb12u2 debian-12 \
    curl dbus initramfs-tools linux-image-amd64 nginx-light systemd-sysv udev) ||
    { fail_check "make-rootfs"; finish; }
tree=$scratch/tree
cp -a "$base" "$tree"
rm -f "$tree/.suture-rootfs-complete"
cp /etc/resolv.conf "$tree/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$tree/usr/sbin/policy-rc.d"
chmod 755 "$tree/usr/sbin/policy-rc.d"
mount -t proc proc "$tree/proc"
# (Under set -e: a kill of a QEMU that already exited must not end the trap
# before cleanup, with status 1 after every check passed.)
trap 'umount "$tree/proc" 2>/dev/null || true; [ -z "${qemu_pid:-}" ] || kill -9 "$qemu_pid" 2>/dev/null || true; cleanup' EXIT
in_tree() { chroot "$tree" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
if [ -n "$deb" ]; then
    cp "$deb" "$tree/tmp/"
    { in_tree apt-get update -q && in_tree sh -c 'apt-get install -y -q /tmp/suture_*_amd64.deb'; } \
        >"$scratch/apt.log" 2>&1 || { tail -30 "$scratch/apt.log"; fail_check "apt install suture"; finish; }
else
    { in_tree apt-get update -q && install_from_build; } >"$scratch/apt.log" 2>&1 ||
        { tail -30 "$scratch/apt.log"; fail_check "install from $from_build"; finish; }
    pass "installed from $from_build (not the .deb)"
fi
check_eq "libssl3 in the VM" "3.0.20-1~deb12u2" "$(in_tree dpkg-query -W -f '${Version}' libssl3)"
{ in_tree suture-setup-local-feed --advisories && in_tree suture feed refresh; } >"$scratch/feed.log" 2>&1 ||
    { cat "$scratch/feed.log"; fail_check "local feed in the VM tree"; finish; }
# A small initrd: the modules to mount a virtio disk, nothing else.
printf 'MODULES=list\nCOMPRESS=gzip\n' >"$tree/etc/initramfs-tools/conf.d/suture-vm.conf"
printf 'virtio_pci\nvirtio_blk\next4\n' >>"$tree/etc/initramfs-tools/modules"
kernel_version=$(ls "$tree/lib/modules" | sort -V | tail -1)
in_tree update-initramfs -u -k "$kernel_version" >"$scratch/initramfs.log" 2>&1 ||
    { cat "$scratch/initramfs.log"; fail_check "update-initramfs"; finish; }
umount "$tree/proc"
rm -f "$tree/usr/sbin/policy-rc.d" "$tree/tmp"/*.deb
echo '/dev/vda / ext4 defaults 0 1' >"$tree/etc/fstab"
echo suture-vm >"$tree/etc/hostname"
expected=$(shipped_patch_count libssl.so.3 libcrypto.so.3)
echo "$expected" >"$tree/etc/suture-vm-expected-patches"
# A short crash-lock watch, so that boot 1 sees its lock go before it
# reboots (the default 300 s would hold the patches back after the reboot).
mkdir -p "$tree/etc/suture"
echo 'watch_seconds = 30' >"$tree/etc/suture/suture.conf"
[ -L "$tree/etc/systemd/system/multi-user.target.wants/nginx.service" ] ||
    ln -s /lib/systemd/system/nginx.service "$tree/etc/systemd/system/multi-user.target.wants/nginx.service"
cat >"$tree/usr/local/sbin/suture-vm-probe" <<'PROBE'
#!/bin/bash
# Runs once per boot, right after nginx started: what suture status says of
# nginx at that moment, then nginx's first request; a line for the host.
exec >/dev/ttyS0 2>&1
count_file=/var/lib/suture-vm-boots
boot=$(( $(cat "$count_file" 2>/dev/null || echo 0) + 1 ))
echo "$boot" >"$count_file"
sync
uptime_s=$(cut -d' ' -f1 /proc/uptime)
status=$(suture status --json 2>/dev/null)
expected=$(cat /etc/suture-vm-expected-patches)
read -r nginx patched < <(jq -r --argjson n "$expected" '[.processes[] | select(.comm == "nginx")] |
    "\(length) \([.[] | select(([.patches[]? | select(.state == "active")] | length) >= $n)] | length)"' <<<"$status")
code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/ || echo none)
ready_us=$(systemctl show -p ActiveEnterTimestampMonotonic --value sutured.service)
basic_us=$(systemctl show -p ActiveEnterTimestampMonotonic --value basic.target)
nginx_us=$(systemctl show -p ExecMainStartTimestampMonotonic --value nginx.service)
closed=$(suture history --json --limit 100000 2>/dev/null | jq '[.. | objects | select(.message? // "" | test("rebooted"))] | length')
before_main=$(journalctl -b -u sutured.service -o cat 2>/dev/null | grep -c 'before main()' || true)
echo "SUTURE-PROBE boot=$boot uptime=$uptime_s nginx=$nginx patched=$patched expected=$expected http=$code sutured_ready_s=$(awk "BEGIN{print $ready_us/1e6}") basic_target_s=$(awk "BEGIN{print $basic_us/1e6}") nginx_start_s=$(awk "BEGIN{print $nginx_us/1e6}") closed_by_reboot=$closed before_main_lines=$before_main"
journalctl -b -u sutured.service -o cat --no-pager 2>/dev/null | sed 's/^/SUTURE-LOG /' | tail -40
case $boot in
    1) # The crash lock of this boot (sutured's first update applied to
       # what already ran) goes once its watch is over, at the next run.
       # A run that applies something again (a process the gate did not
       # reach) starts a new watch: wait for that one too (at most 5).
       lock=/var/lib/suture/crash-lock.json
       round=0
       while [ -f "$lock" ] && [ "$round" -lt 5 ]; do
           round=$((round + 1))
           until_s=$(( $(jq .at "$lock") + 30 - $(date +%s) ))
           [ "$until_s" -gt 0 ] && sleep "$until_s"
           sleep 1
           applied=$(suture --direct update --offline --automatic --json 2>/dev/null |
               jq -r '[.actions[]? | select(.outcome == "applied") | "\(.pid)/\(.comm)"] | unique | join(",")')
           echo "SUTURE-PROBE watch round=$round applied=${applied:-none}"
       done
       [ -f "$lock" ] && lock_left=yes || lock_left=no
       echo "SUTURE-PROBE lock_after_watch=$lock_left rebooting"; systemctl reboot ;;
    2) worker=$(jq -r '[.processes[] | select(.comm == "nginx") | .pid] | max' <<<"$status")
       suture --direct revert --pid "$worker" >/dev/null 2>&1
       revert_exit=$?
       suture --direct update --offline >/dev/null 2>&1
       echo "SUTURE-PROBE applied pid=$worker revert_exit=$revert_exit update_exit=$? kill-me-now" ;;
    *) holding=$(jq -r '.crash_lock.holding // false' <<<"$status")
       suture crash-lock --release >/dev/null 2>&1
       release_exit=$?
       suture --direct update --offline --automatic >/dev/null 2>&1
       update_exit=$?
       released_s=$(cut -d' ' -f1 /proc/uptime)
       read -r nginx patched < <(suture status --json 2>/dev/null | jq -r --argjson n "$expected" '[.processes[] | select(.comm == "nginx")] |
           "\(length) \([.[] | select(([.patches[]? | select(.state == "active")] | length) >= $n)] | length)"')
       code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/ || echo none)
       echo "SUTURE-PROBE crash_lock_holding=$holding release_exit=$release_exit update_exit=$update_exit nginx=$nginx patched=$patched http=$code uptime=$released_s after-release"
       echo "SUTURE-PROBE done"; systemctl poweroff ;;
esac
PROBE
chmod 755 "$tree/usr/local/sbin/suture-vm-probe"
cat >"$tree/etc/systemd/system/suture-vm-probe.service" <<'UNIT'
[Unit]
Description=suture VM test probe (serial console)
After=nginx.service sutured.service
Wants=nginx.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/suture-vm-probe
[Install]
WantedBy=multi-user.target
UNIT
ln -s /etc/systemd/system/suture-vm-probe.service "$tree/etc/systemd/system/multi-user.target.wants/"
# No login prompt on the serial console: agetty's vhangup() at its start
# cuts off whoever has ttyS0 open, and a probe that opened it just before
# wrote its report into nothing (boot 3 of a run: the VM powered off
# without a line on the console).
ln -sf /dev/null "$tree/etc/systemd/system/serial-getty@ttyS0.service"
for unit in multi-user.target.wants/sutured.service multi-user.target.wants/suture-boot.service; do
    [ -L "$tree/etc/systemd/system/$unit" ] && pass "the package enabled $unit" || fail_check "not enabled: $unit"
done

# 3. The disk image.
image=$scratch/disk.img
mkfs.ext4 -q -F -L root -d "$tree" "$image" 3G || { fail_check "mkfs.ext4 -d"; finish; }
vmlinuz=$(ls "$tree"/boot/vmlinuz-"$kernel_version")
initrd=$(ls "$tree"/boot/initrd.img-"$kernel_version")
pass "image $(du -h --apparent-size "$image" | cut -f1), initrd $(du -h "$initrd" | cut -f1)"

# boot_vm LOG: starts QEMU on the image, serial console to LOG.
boot_vm() {
    nice -n 10 qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 1024 -smp 2 -nic none \
        -kernel "$vmlinuz" -initrd "$initrd" \
        -append "root=/dev/vda rw console=ttyS0 quiet systemd.show_status=0" \
        -drive file="$image",format=raw,if=virtio -display none -monitor none \
        -serial file:"$1" </dev/null >>"$scratch/qemu.log" 2>&1 &
    qemu_pid=$!
}
# wait_serial LOG PATTERN: waits for a line of LOG matching PATTERN.
wait_serial() {
    local waited=0
    until grep -q "$2" "$1" 2>/dev/null; do
        kill -0 "$qemu_pid" 2>/dev/null || return 1
        [ "$waited" -lt "$boot_timeout" ] || return 1
        sleep 1
        waited=$((waited + 1))
    done
}
# check_boot LOG N [held]: the probe line of boot N, checked: every nginx
# process patched (or, with "held", none: the crash lock holds).
check_boot() {
    local line
    line=$(grep -a "SUTURE-PROBE boot=$2 " "$1" | tail -1)
    echo "$line"
    local nginx patched http
    nginx=$(field "$line" nginx)
    patched=$(field "$line" patched)
    http=$(field "$line" http)
    if [ "${3:-}" = held ]; then
        [ "${nginx:-0}" -ge 2 ] && [ "$patched" = 0 ] &&
            pass "boot $2: the crash lock held the patches back from all $nginx nginx processes (exec gate and first update)" ||
            fail_check "boot $2: $patched of $nginx nginx processes patched despite the crash lock"
    else
        [ "${nginx:-0}" -ge 2 ] && [ "$patched" = "$nginx" ] &&
            pass "boot $2: all $nginx nginx processes (master and workers) had all $expected patches at the probe's first look, $(field "$line" uptime) s after boot" ||
            fail_check "boot $2: $patched of $nginx nginx processes patched"
    fi
    check_eq "boot $2: nginx's first request" 200 "$http"
    awk -v s="$(field "$line" sutured_ready_s)" -v n="$(field "$line" nginx_start_s)" 'BEGIN { exit !(s < n) }' &&
        pass "boot $2: sutured was ready before nginx started" ||
        fail_check "boot $2: nginx started before sutured was ready (a start that failed or timed out)"
}

# 4. Boot, reboot from inside, and a hard reset after an apply.
serial=$scratch/serial-1.log
boot_vm "$serial"
wait_serial "$serial" "SUTURE-PROBE boot=1 " && check_boot "$serial" 1 ||
    { tail -50 "$serial"; fail_check "boot 1: no probe report within $boot_timeout s"; }
wait_serial "$serial" "SUTURE-PROBE lock_after_watch=" || true
lock_left=$(field "$(grep -a 'SUTURE-PROBE lock_after_watch=' "$serial" | tail -1)" lock_after_watch)
check_eq "boot 1: the crash lock gone once its watch was over" no "$lock_left"
wait_serial "$serial" "SUTURE-PROBE boot=2 " && check_boot "$serial" 2 ||
    { tail -50 "$serial"; fail_check "boot 2 (reboot from inside): no probe report"; }
if wait_serial "$serial" "kill-me-now"; then
    kill -9 "$qemu_pid"
    wait "$qemu_pid" 2>/dev/null || true
    applied=$(grep -a "SUTURE-PROBE applied" "$serial" | tail -1)
    echo "$applied"
    { [ "$(field "$applied" revert_exit)" = 0 ] &&
        [[ " 0 21 " == *" $(field "$applied" update_exit) "* ]]; } &&
        pass "hard reset: QEMU killed right after a revert and an apply in nginx worker $(field "$applied" pid)" ||
        fail_check "boot 2: the revert and apply before the hard reset failed: $applied"
else
    fail_check "boot 2: no apply before the hard reset"
    kill -9 "$qemu_pid" 2>/dev/null || true
fi
serial=$scratch/serial-3.log
boot_vm "$serial"
if wait_serial "$serial" "SUTURE-PROBE boot=3 "; then
    check_boot "$serial" 3 held
    closed=$(field "$(grep -a 'SUTURE-PROBE boot=3 ' "$serial")" closed_by_reboot)
    [ "${closed:-0}" -gt 0 ] && pass "boot 3: $closed records of earlier boots closed (history)" ||
        fail_check "boot 3: no record closed as of an earlier boot"
    if wait_serial "$serial" "after-release"; then
        line=$(grep -a "after-release" "$serial" | tail -1)
        echo "$line"
        check_eq "boot 3: suture status said the crash lock holds" true "$(field "$line" crash_lock_holding)"
        check_eq "boot 3: suture crash-lock --release" 0 "$(field "$line" release_exit)"
        { [ "$(field "$line" nginx)" -ge 2 ] && [ "$(field "$line" patched)" = "$(field "$line" nginx)" ]; } &&
            pass "boot 3: after the release, an automatic update patched all $(field "$line" nginx) nginx processes ($(field "$line" uptime) s after boot)" ||
            fail_check "boot 3: after the release: $line"
        check_eq "boot 3: nginx serves after the release" 200 "$(field "$line" http)"
    else
        tail -50 "$serial"
        fail_check "boot 3: no report after the release"
    fi
else
    tail -50 "$serial"
    fail_check "boot 3 (after the hard reset): no probe report"
fi
wait "$qemu_pid" 2>/dev/null || true
grep -a "SUTURE-LOG" "$scratch"/serial-*.log | grep -i "before main\|error\|warning\|timed out" | head -20 || true
finish
