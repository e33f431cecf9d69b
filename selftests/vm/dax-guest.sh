#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The DAX guest selftests: one TCG guest (Debian 6.12 cloud kernel) on our
# patched QEMU (qemu/patches/10.0, cache-size) with two vhost-user-fs
# devices, each served by its own holdfastd --dax-window:
#
#   daxa  cache-size 8M  (4 ranges of 2 MiB), mounted -o dax=always
#   daxi  cache-size 64M, --dax-inode flag,   mounted -o dax=inode
#
# The guest (selftests/vm/dax-guest-init) runs selftests/guest/dax_test.c:
# MAP_SHARED coherence between guest and host both ways, read()/write()
# against mmap, reclaim with many more ranges than the window holds from
# several processes, ftruncate of a mapped file (SIGBUS past EOF), and
# dax=inode (the host file with FS_XFLAG_DAX is DAX, the other not, and
# a chattr on the host takes effect in the guest).
# Its host-side checks go through request files that a watcher here
# answers (see dax_test.c).  Then, on the host: QEMU and both holdfastd
# exited cleanly, daxa's holdfastd counted FUSE_REMOVEMAPPING (the guest
# reclaimed), daxi's mapped only the flagged file's range, and the guest's
# writes are in the host files.
#
#   selftests/vm/dax-guest.sh
#
# The host directories are on /tmp (FS_XFLAG_DAX needs ext4 or xfs there;
# on tmpfs, an ext4 image is loop-mounted for daxi instead).
# Environment: QEMU (default: what qemu/build.sh prints), HOLDFASTD
# (default $BUILD/userspace/holdfastd), DAX_TEST (default
# $BUILD/selftests/guest/dax_test), BUILD, HOLDFAST_CACHE,
# HF_DAX_TIMEOUT (s, default 240), HF_VM_SERIAL=1 prints the serial console.
# Ends with "N passed, N failed".
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
DAX_SCRIPT=dax-guest
# shellcheck source-path=SCRIPTDIR source=dax-lib.sh
. "$here/dax-lib.sh"
TEST_BIN=${DAX_TEST:-$BUILD/selftests/guest/dax_test}
TIMEOUT=${HF_DAX_TIMEOUT:-240}
SMALL=$((8 << 20))
LARGE=$((64 << 20))
check() { if eval "$2"; then ok "$1"; else notok "$1"; fi; }

dax_prereqs
[ -x "$TEST_BIN" ] || bail "$TEST_BIN not built (make vm-selftests)"

W=$(mktemp -d /tmp/hf-daxg.XXXXXX)
chmod 755 "$W"
qpid=
apid=
ipid=
wpid=
loop=
cleanup() {
	local p
	for p in $qpid $apid $ipid $wpid; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ -n "$loop" ] && umount "$W/i"
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$root/scripts/vm/build-initramfs.sh" "$kdir" "$W/initrd.gz" "$here/dax-guest-init" \
	"$TEST_BIN=selftests/dax_test" >"$W/initramfs.log" 2>&1 ||
	{ cat "$W/initramfs.log" >&2; bail "initramfs build failed"; }

# The dax=inode directory: "flagged" (FS_XFLAG_DAX) and "plain", both
# filled with dax_test.c's pattern(off, 0).
mkdir -p "$W/a" "$W/i"
if ! touch "$W/i/.probe" || ! chattr +x "$W/i/.probe" 2>/dev/null; then
	echo "# $W has no FS_XFLAG_DAX: daxi serves an ext4 image"
	truncate -s 64M "$W/i.img" && mkfs.ext4 -q -F "$W/i.img" && mount -o loop "$W/i.img" "$W/i" ||
		bail "cannot make an ext4 image for the dax=inode directory"
	loop=1
fi
rm -f "$W/i/.probe"
python3 - "$W/i/flagged" $((2 << 20)) "$W/i/plain" $((16 << 20)) <<'EOF' || bail "cannot write the dax=inode files"
import sys
# pattern(off, 0) = (off / 4096) * 7 + off % 251, a byte
mod = bytes(i % 251 for i in range(4096 + 251))
for path, size in zip(sys.argv[1::2], sys.argv[2::2]):
    with open(path, "wb") as f:
        for p in range(int(size) // 4096):
            start = (p * 4096) % 251
            table = bytes((j + p * 7) & 0xFF for j in range(256))
            f.write(mod[start:start + 4096].translate(table))
EOF
chattr +x "$W/i/flagged" || bail "chattr +x $W/i/flagged failed"
lsattr "$W/i/flagged" "$W/i/plain" | sed 's/^/# lsattr: /'

# The guest's host-side requests (dax_test.c, host()).
python3 - "$W/a" "$W/i" <<'EOF' >"$W/watcher.log" 2>&1 &
import fcntl, os, struct, sys, time
roots = {"a": os.path.realpath(sys.argv[1]), "i": os.path.realpath(sys.argv[2])}
reqdir = os.path.join(roots["i"], ".hf-req")

def resolve(p):
    top, _, rest = p.partition("/")
    base = roots[top]
    full = os.path.realpath(os.path.join(base, rest))
    if not full.startswith(base + "/"):
        raise ValueError("outside the share: " + p)
    return full

def run(cmd):
    w = cmd.split()
    if w[0] == "read":
        off, n = int(w[2]), int(w[3])
        with open(resolve(w[1]), "rb") as f:
            f.seek(off)
            b = f.read(n)
        if len(b) < n:
            return "short %d" % len(b)
        return str(b[0]) if b.count(b[:1]) == n else "mixed"
    if w[0] == "write":
        off, n, v = int(w[2]), int(w[3]), int(w[4])
        fd = os.open(resolve(w[1]), os.O_WRONLY)
        try:
            os.pwrite(fd, bytes([v]) * n, off)
        finally:
            os.close(fd)
        return "ok"
    if w[0] == "setdax":
        # struct fsxattr (28 bytes), fsx_xflags first; FS_XFLAG_DAX 0x8000
        fd = os.open(resolve(w[1]), os.O_RDONLY)
        try:
            fa = bytearray(fcntl.ioctl(fd, 0x801C581F, bytes(28)))  # FS_IOC_FSGETXATTR
            x = struct.unpack_from("I", fa)[0]
            x = x | 0x8000 if w[2] == "1" else x & ~0x8000
            struct.pack_into("I", fa, 0, x)
            fcntl.ioctl(fd, 0x401C5820, bytes(fa))  # FS_IOC_FSSETXATTR
        finally:
            os.close(fd)
        return "ok"
    if w[0] == "size":
        return str(os.stat(resolve(w[1])).st_size)
    return "unknown command"

while True:
    try:
        names = os.listdir(reqdir)
    except FileNotFoundError:
        names = []
    for name in names:
        if not name.endswith(".req"):
            continue
        path = os.path.join(reqdir, name)
        with open(path) as f:
            cmd = f.read()
        try:
            ans = run(cmd)
        except Exception as e:
            ans = "error: %s" % e
        print(cmd, "->", ans, flush=True)
        tmp = path[:-4] + ".atmp"
        with open(tmp, "w") as f:
            f.write(ans + "\n")
        os.rename(tmp, path[:-4] + ".ans")
        os.unlink(path)
    time.sleep(0.05)
EOF
wpid=$!

"$HOLDFASTD" --shared-dir "$W/a" --socket-path "$W/a.sock" --dax-window "$SMALL" \
	>"$W/a.log" 2>&1 &
apid=$!
"$HOLDFASTD" --shared-dir "$W/i" --socket-path "$W/i.sock" --dax-window "$LARGE" \
	--dax-inode flag >"$W/i.log" 2>&1 &
ipid=$!
for _ in $(seq 1 100); do [ -S "$W/a.sock" ] && [ -S "$W/i.sock" ] && break; sleep 0.05; done
[ -S "$W/a.sock" ] && [ -S "$W/i.sock" ] || { cat "$W/a.log" "$W/i.log" >&2; bail "holdfastd does not listen"; }

echo "# dax-guest: QEMU $QEMU, kernel $(basename "$vmlinuz")"
t0=$(date +%s)
vm_args 512M "$W/serial.log" "$W/initrd.gz" ""
"$QEMU" "${vm[@]}" -smp 2 \
	-chardev "socket,id=ca,path=$W/a.sock" \
	-device "vhost-user-fs-pci,id=fsa,chardev=ca,tag=daxa,cache-size=$SMALL" \
	-chardev "socket,id=ci,path=$W/i.sock" \
	-device "vhost-user-fs-pci,id=fsi,chardev=ci,tag=daxi,cache-size=$LARGE" \
	>"$W/qemu.log" 2>&1 &
qpid=$!
wait_vm "$qpid" "$t0" dax-guest
rc=$?
qpid=
secs=$(($(date +%s) - t0))
reap_backend "$apid"
apid_rc=$?
apid=
reap_backend "$ipid"
ipid_rc=$?
ipid=
kill "$wpid" 2>/dev/null
wait "$wpid" 2>/dev/null
wpid=

[ "${HF_VM_SERIAL:-0}" = 1 ] && sed 's/^/# serial: /' "$W/serial.log"
echo "# QEMU exit $rc after $secs s; holdfastd exits: daxa $apid_rc, daxi $ipid_rc"
sed 's/^/# qemu: /' "$W/qemu.log"
sed 's/^/# watcher: /' "$W/watcher.log" | tail -n 40

# The guest's TAP, renumbered into ours; its comments shown.
tr -d '\r' <"$W/serial.log" | sed -n 's/^DAXG: //p' >"$W/results"
guest_oks=0
plan=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$W/results" | head -n1)
while IFS= read -r l; do
	case $l in
	"ok "*"# SKIP"*) notok "guest: $(echo "$l" | cut -d' ' -f3-) (skipped)" ;;
	"ok "*) ok "guest: $(echo "$l" | cut -d' ' -f3-)"; guest_oks=$((guest_oks + 1)) ;;
	"not ok "*) notok "guest: $(echo "$l" | cut -d' ' -f4-)" ;;
	*) echo "# guest: $l" ;;
	esac
done <"$W/results"
# All the tests of dax_test's plan ran and passed (none lost to a crash).
check "the guest ran all of dax_test's ${plan:-?} tests and they passed ($guest_oks)" \
	'[ -n "$plan" ] && [ "$plan" -gt 0 ] && [ "$guest_oks" = "$plan" ]'
if grep -q '^DAXG-DONE' "$W/serial.log"; then
	ok "guest ran to the end"
else
	notok "guest ran to the end"
	tail -n 30 "$W/serial.log" | sed 's/^/# serial: /'
fi
check "the guest unmounted both (DESTROY)" 'grep -q "^DAXG-UNMOUNTED" "$W/serial.log"'
check "QEMU exited cleanly (status $rc)" '[ "$rc" = 0 ]'
check "daxa holdfastd exited cleanly (status $apid_rc)" '[ "$apid_rc" = 0 ]'
check "daxi holdfastd exited cleanly (status $ipid_rc)" '[ "$ipid_rc" = 0 ]'

# opcount LOG OP: holdfastd's count of OP ("requests by opcode" at exit).
opcount() {
	local v
	v=$(grep 'by opcode' "$1" | tail -n1 | grep -o " $2=[0-9]*" | cut -d= -f2)
	echo "${v:-0}"
}
grep -E 'by opcode|DAX|SHMEM|INIT' "$W/a.log" | sed 's/^/# daxa holdfastd: /'
grep -E 'by opcode|DAX|SHMEM|INIT' "$W/i.log" | sed 's/^/# daxi holdfastd: /'
a_setup=$(opcount "$W/a.log" SETUPMAPPING)
a_remove=$(opcount "$W/a.log" REMOVEMAPPING)
i_setup=$(opcount "$W/i.log" SETUPMAPPING)
echo "# daxa (window $((SMALL >> 20)) MiB): SETUPMAPPING $a_setup, REMOVEMAPPING $a_remove"
echo "# daxi (window $((LARGE >> 20)) MiB): SETUPMAPPING $i_setup"
# 3 files x 6 ranges, twice, through 4 ranges: far more mappings than
# ranges, and ranges taken back to make room.  Without reclaim the only
# REMOVEMAPPINGs would be the umount's: one per inode that still has
# ranges, so at most one per range of the window.
ranges=$((SMALL >> 21))
check "daxa: more SETUPMAPPINGs than the window has ranges ($a_setup > $ranges)" \
	'[ "$a_setup" -gt "$ranges" ]'
check "daxa: the guest reclaimed ranges (REMOVEMAPPING $a_remove > $ranges)" \
	'[ "$a_remove" -gt "$ranges" ]'
# The flagged file is one range: mapped read-only then writable is at
# most 2 SETUPMAPPINGs (+2 to spare); the plain one would need 8 more.
check "daxi: only the flagged file was mapped (1 <= SETUPMAPPING $i_setup <= 4)" \
	'[ "$i_setup" -ge 1 ] && [ "$i_setup" -le 4 ]'

# hostbyte FILE OFF: the byte at OFF, decimal.
hostbyte() { od -An -tu1 -j "$2" -N1 "$1" | tr -d ' '; }
check "host: the guest's mmap store in flagged is in the file" \
	'[ "$(hostbyte "$W/i/flagged" $(((2 << 20) - 8192)))" = 241 ]'
check "host: the guest's mmap store in plain is in the file" \
	'[ "$(hostbyte "$W/i/plain" $(((16 << 20) - 8192)))" = 225 ]'
check "host: trunc has the size the guest grew it back to (4 MiB)" \
	'[ "$(stat -c %s "$W/a/trunc")" = $((4 << 20)) ]'
check "host: trunc has the guest's store after growing it" \
	'[ "$(hostbyte "$W/a/trunc" $(((2 << 20) + 5 * 4096)))" = 66 ]'

echo "# dax-guest: $secs s in the VM"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
