#!/usr/bin/env bash
# A process keeps running the library it loaded even after the file is
# deleted or replaced on disk (as an upgrade does). suture must report the
# build ID of what is mapped, not of what is on disk now, and flag it.
source "$(dirname "$0")/lib.sh"
require_root "reading a deleted mapped file needs /proc/PID/map_files"

libdir=usr/lib/x86_64-linux-gnu
fetch_archive_package debian-12 libssl3 3.0.17-1~deb12u2 "$scratch/old"
fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/new"
old_crypto_id=$(build_id_of "$scratch/old/$libdir/libcrypto.so.3")
new_crypto_id=$(build_id_of "$scratch/new/$libdir/libcrypto.so.3")

# 1. Deleted: the library directory is removed after the process started.
mkdir -p "$scratch/deleted"
cp "$scratch/old/$libdir"/lib{ssl,crypto}.so.3 "$scratch/deleted/"
hold deleted_pid "$scratch/deleted" libssl.so.3
rm -f "$scratch/deleted"/*
json=$(status_json "$deleted_pid")
check_eq "deleted libcrypto build ID" "$old_crypto_id" "$(library "$json" "$deleted_pid" libcrypto.so.3 build_id)"
check_eq "deleted libcrypto flagged" true "$(library "$json" "$deleted_pid" libcrypto.so.3 deleted)"
check_eq "deleted libcrypto not replaced" false "$(library "$json" "$deleted_pid" libcrypto.so.3 replaced)"
check_eq "deleted libcrypto package" "3.0.17-1~deb12u2" "$(library "$json" "$deleted_pid" libcrypto.so.3 package.version)"
check_eq "deleted libssl flagged" true "$(library "$json" "$deleted_pid" libssl.so.3 deleted)"

# 2. Replaced: a newer build is renamed over the path, the way dpkg upgrades.
mkdir -p "$scratch/replaced"
cp "$scratch/old/$libdir"/lib{ssl,crypto}.so.3 "$scratch/replaced/"
hold replaced_pid "$scratch/replaced" libssl.so.3
cp "$scratch/new/$libdir/libcrypto.so.3" "$scratch/replaced/libcrypto.so.3.new"
mv "$scratch/replaced/libcrypto.so.3.new" "$scratch/replaced/libcrypto.so.3"
json=$(status_json "$replaced_pid")
check_eq "replaced libcrypto still reports the mapped build" "$old_crypto_id" \
    "$(library "$json" "$replaced_pid" libcrypto.so.3 build_id)"
check_eq "replaced libcrypto deleted (old inode unlinked)" true "$(library "$json" "$replaced_pid" libcrypto.so.3 deleted)"
check_eq "replaced libcrypto flagged replaced" true "$(library "$json" "$replaced_pid" libcrypto.so.3 replaced)"
check_eq "replaced libcrypto on-disk build" "$new_crypto_id" "$(library "$json" "$replaced_pid" libcrypto.so.3 on_disk_build_id)"
check_eq "untouched libssl not replaced" false "$(library "$json" "$replaced_pid" libssl.so.3 replaced)"

# 3. The table flags both processes as needing a restart or a patch.
table=$("$SUTURE" status --pid "$deleted_pid" --pid "$replaced_pid")
echo "$table"
grep -q "map a file deleted or replaced on disk" <<<"$table" &&
    pass "table flags stale libraries" || fail_check "table does not flag stale libraries"
finish
