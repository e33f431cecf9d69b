#!/usr/bin/env bash
# The main job, end to end: serve a temporary directory on a temporary
# mountpoint, do real work through the mount, show it on the host, clean up.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${BUILD:-$top/build}/userspace
work=$(mktemp -d /tmp/holdfast-demo.XXXXXX)
src=$work/shared
mnt=$work/mnt
mkdir -p "$src" "$mnt"
pid=

cleanup() {
	set +e
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	mountpoint -q "$mnt" && umount -l "$mnt"
	rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "start holdfastd: $src -> $mnt"
exec 3>"$work/ready"
"$bin/holdfastd" --shared-dir "$src" --mountpoint "$mnt" --xattr --ready-fd 3 \
	2>"$work/holdfastd.log" &
pid=$!
exec 3>&-
for _ in $(seq 100); do grep -q ready "$work/ready" 2>/dev/null && break; sleep 0.05; done
grep -q ready "$work/ready" || { cat "$work/holdfastd.log"; echo "holdfastd did not come up"; exit 1; }
grep " $mnt " /proc/mounts

step "work through the mount"
mkdir -p "$mnt/project/src"
for i in $(seq 1 200); do echo "line $i" > "$mnt/project/src/file$i.txt"; done
echo "200 files created"
dd if=/dev/urandom of="$mnt/project/blob.bin" bs=1M count=32 status=none
sum_mnt=$(sha256sum < "$mnt/project/blob.bin" | cut -d' ' -f1)
echo "32 MiB written, sha256 through the mount: $sum_mnt"
mv "$mnt/project/src/file1.txt" "$mnt/project/renamed.txt"
ln -s renamed.txt "$mnt/project/link"
setfattr -n user.demo -v holdfast "$mnt/project/renamed.txt"
tar -C /usr/include -cf - linux | tar -C "$mnt/project" -xf -
echo "unpacked /usr/include/linux: $(find "$mnt/project/linux" -type f | wc -l) files"
rm -f "$mnt/project/src/file2.txt"

step "the host directory sees the same"
sum_src=$(sha256sum < "$src/project/blob.bin" | cut -d' ' -f1)
echo "sha256 on the host:          $sum_src"
[ "$sum_mnt" = "$sum_src" ] || { echo "MISMATCH"; exit 1; }
echo "symlink on the host: $(readlink "$src/project/link")"
echo "xattr on the host:   $(getfattr --only-values -n user.demo "$src/project/renamed.txt")"
diff -r /usr/include/linux "$src/project/linux" && echo "tree identical to /usr/include/linux"
echo "files in src/: $(ls "$src/project/src" | wc -l) (200 - 1 renamed - 1 removed)"

step "kill -9 the server in the middle of a write"
# A writer streams 64 MiB through the mount in 64 KiB pieces while we
# SIGKILL the serving process (the child of holdfast-fdstore).
server=$(pgrep -P "$pid" holdfastd)
head -c $((64 << 20)) /dev/urandom > "$work/payload"
( dd if="$work/payload" of="$mnt/project/stream.bin" bs=64k oflag=sync status=none && \
  echo ok > "$work/writer.rc" || echo "FAILED: $?" > "$work/writer.rc" ) &
writer=$!
sleep 0.3
echo "writer running; kill -9 server pid $server"
kill -9 "$server"
sleep 0.2
server2=$(pgrep -P "$pid" holdfastd || true)
echo "kill -9 again (pid $server2) while the writer is still going"
[ -n "$server2" ] && kill -9 "$server2"
wait "$writer"
echo "writer finished: $(cat "$work/writer.rc")"
grep -q ok "$work/writer.rc" || { echo "the workload saw an error"; exit 1; }
cmp "$work/payload" "$src/project/stream.bin" && echo "64 MiB verified byte for byte on the host"
ls "$mnt/project/src" | wc -l | sed 's/^/files still listed through the mount: /'
echo "server now: pid $(pgrep -P "$pid" holdfastd)"

step "server status (holdfastctl status)"
"$bin/holdfastctl" status "$mnt"

step "stop: SIGTERM unmounts cleanly"
kill -TERM "$pid"
wait "$pid"
echo "holdfastd exited with status $?"
mountpoint -q "$mnt" && { echo "still mounted!"; exit 1; }
echo "unmounted; demo done"
