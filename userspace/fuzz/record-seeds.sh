#!/usr/bin/env bash
# Regenerates the seed corpora from real traffic: each workload below runs on
# a real FUSE mount served by holdfast-fuzz-recorder (the real Engine and
# Passthrough over the fuzz scratch tree), which records every request the
# kernel sends.  Writes:
#   corpus/fuzz_engine/seed-<workload>     one request sequence per workload
#   corpus/fuzz_request/seed-<op>-<n>      single requests, a few per opcode
# Run as root, from anywhere:  userspace/fuzz/record-seeds.sh [BUILD_DIR]
# BUILD_DIR is the fuzz build (default build/fuzz, made by scripts/fuzz.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${1:-$top/build/fuzz}
rec=$build/fuzz/holdfast-fuzz-recorder
[ -x "$rec" ] || ninja -C "$build" holdfast-fuzz-recorder >/dev/null
# The recorder is an ASan build; its shutdown is not what we test here.
export ASAN_OPTIONS=detect_leaks=0

tmp=$(mktemp -d /tmp/holdfast-seeds.XXXXXX)
trap 'umount -l "$tmp/mnt" 2>/dev/null || true; rm -rf "$tmp"' EXIT

# Each workload: a name and a shell snippet run inside the mount ($m).
wl_names=(browse write namespace xattr-locks special)
wl_browse='ls -la "$m" "$m/dir" >/dev/null; stat "$m/file" "$m/link_rel" >/dev/null
cat "$m/file" "$m/dir/nested" >/dev/null; head -c 5000 "$m/big" >/dev/null
readlink "$m/link_rel" "$m/link_up" >/dev/null; find "$m" >/dev/null; df "$m" >/dev/null
test -r "$m/file"; test -x "$m/suid"; cat "$m/link_rel" >/dev/null'
wl_write='echo hello >"$m/new"; echo more >>"$m/new"; dd if=/dev/zero of="$m/zeros" bs=1k count=3 status=none
truncate -s 100 "$m/new"; truncate -s 0 "$m/zeros"; cp "$m/file" "$m/copy"
touch -d @1000000 "$m/copy"; chmod 600 "$m/copy"; chown 1:1 "$m/copy"; sync "$m/copy"
printf abc | dd of="$m/file" bs=1 seek=2 conv=notrunc status=none; cat "$m/new" >/dev/null'
wl_namespace='mkdir "$m/d1"; mkdir -p "$m/d1/d2/d3"; ln "$m/file" "$m/d1/hard2"; ln -s ../file "$m/d1/sym"
mv "$m/d1/hard2" "$m/d1/d2/moved"; mv -T "$m/d1/d2/d3" "$m/d3"; rm "$m/d1/sym"; rmdir "$m/d3"
mknod "$m/fifo" p; rm "$m/fifo"; touch "$m/a" "$m/b"; mv -f "$m/a" "$m/b"; rm -r "$m/d1"
python3 -c "import os; os.rename(\"$m/b\", \"$m/c\")"; ls -R "$m" >/dev/null'
wl_xattr_locks='setfattr -n user.k -v v1 "$m/file"; getfattr -d "$m/file" >/dev/null; getfattr -n user.holdfast "$m/file" >/dev/null
setfattr -x user.k "$m/file"; getfattr -d "$m/dir" >/dev/null || true
flock "$m/file" true; flock -s "$m/big" true
python3 - "$m" <<"PY"
import fcntl, os, sys
m = sys.argv[1]
fd = os.open(m + "/file", os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 4, 0)
fcntl.fcntl(fd, fcntl.F_GETLK, bytes(32))
fcntl.lockf(fd, fcntl.LOCK_UN, 4, 0)
fcntl.flock(fd, fcntl.LOCK_EX)
fcntl.flock(fd, fcntl.LOCK_UN)
os.close(fd)
PY'
wl_special='python3 - "$m" <<"PY"
import os, sys
m = sys.argv[1]
fd = os.open(m, os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(fd, b"tmp"); os.close(fd)
a = os.open(m + "/big", os.O_RDONLY)
b = os.open(m + "/cfr", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
os.copy_file_range(a, b, 3000)
os.posix_fallocate(b, 0, 8192)
os.lseek(b, 0, os.SEEK_DATA)
os.fsync(b); os.fdatasync(b)
os.close(a); os.close(b)
os.statvfs(m)
os.truncate(m + "/cfr", 10)
os.unlink(m + "/cfr")
d = os.open(m + "/dir", os.O_RDONLY | os.O_DIRECTORY)
os.fsync(d); os.close(d)
os.sync()
PY
stat -c %B "$m/empty" >/dev/null; ls "$m/dir/sub" >/dev/null'

for name in "${wl_names[@]}"; do
	var=wl_${name//-/_}
	out=$tmp/out-$name
	mkdir -p "$tmp/mnt" "$out"
	"$rec" "$tmp/work-$name" "$tmp/mnt" "$out" >"$tmp/ready" 2>"$tmp/rec-$name.log" &
	pid=$!
	for _ in $(seq 100); do
		grep -q ready "$tmp/ready" 2>/dev/null && break
		sleep 0.05
	done
	m=$tmp/mnt bash -c "m=\$0; ${!var}" "$tmp/mnt" || echo "record-seeds: workload $name: exit $?" >&2
	umount "$tmp/mnt"
	wait "$pid" || { cat "$tmp/rec-$name.log" >&2; exit 1; }
	cp "$out/engine.seed" "$here/corpus/fuzz_engine/seed-$name"
	for f in "$out"/request-*.bin; do
		b=$(basename "$f" .bin)
		cp "$f" "$here/corpus/fuzz_request/seed-${b#request-}"
	done
	echo "record-seeds: $name: $(stat -c %s "$out/engine.seed") bytes, $(ls "$out" | wc -l) files"
done
du -sh "$here/corpus"
