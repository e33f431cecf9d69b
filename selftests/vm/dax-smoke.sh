#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Smoke test of the virtio-fs DAX cache window of our patched QEMU
# (qemu/patches/10.0, built by qemu/build.sh): boot a TCG guest (Debian
# 6.12 cloud kernel) whose vhost-user-fs-pci device, served by holdfastd,
# has cache-size=64M, and check in the guest (selftests/vm/dax-init) that
#   - BAR 2 is a 64-bit prefetchable memory BAR of 64 MiB,
#   - the VIRTIO_PCI_CAP_SHARED_MEMORY_CFG capability (id 0, the cache)
#     describes it,
#   - mount -t virtiofs -o dax=always succeeds (stock QEMU: "dax can't be
#     enabled as filesystem device does not support it"),
#   - the unmapped window reads zeroes and takes writes without hurting
#     QEMU, and a device reset empties it;
# then the same with cache-size=0 (no BAR, dax=always refused); then
# SHMEM_MAP/UNMAP end to end with selftests/vm/dax-backend.py --map, a
# back-end that serves no FUSE but maps a memfd into the window (bad
# requests refused, the file seen by the guest read-write and read-only,
# a write through the read-only mapping kept private, UNMAP back to
# zeroes); and on the host that QEMU refuses a cache-size that is not a
# power of two.
#
# Reading a file through DAX needs FUSE_SETUPMAPPING in the back-end
# (SHMEM_MAP); its outcome is printed as "# info", not judged.
#
#   selftests/vm/dax-smoke.sh
#
# Environment: QEMU (default: the binary qemu/build.sh prints, building it
# the first time, ~6 min), HOLDFASTD (default $BUILD/userspace/holdfastd),
# BUILD, HOLDFAST_CACHE, HF_VM_SERIAL=1 prints the serial consoles.
# Ends with "N passed, N failed".
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
HOLDFASTD=${HOLDFASTD:-$BUILD/userspace/holdfastd}
SIZE=$((64 << 20))
TIMEOUT=${HF_DAX_TIMEOUT:-240}

pass=0
fail=0
n=0
ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n $*"; }
notok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n $*"; }
bail() {
	echo "dax-smoke: $*" >&2
	echo "$pass passed, $((fail + 1)) failed"
	exit 1
}

[ "$(id -u)" = 0 ] || bail "must run as root (holdfastd serves as root)"
[ -x "$HOLDFASTD" ] || bail "$HOLDFASTD not built"
if [ -z "${QEMU:-}" ]; then
	QEMU=$("$root/qemu/build.sh" | tail -n1) || bail "qemu/build.sh failed"
fi
[ -x "$QEMU" ] || bail "no QEMU at '$QEMU'"
"$QEMU" -device vhost-user-fs-pci,help 2>/dev/null | grep -q cache-size ||
	bail "$QEMU has no vhost-user-fs-pci cache-size (not the patched QEMU)"
kdir=$("$root/scripts/vm/fetch-kernel.sh" 6.12) || bail "no 6.12 guest kernel"
vmlinuz=$(ls "$kdir"/boot/vmlinuz-* | head -n1)

W=$(mktemp -d /tmp/hf-dax.XXXXXX)
chmod 755 "$W"
qpid=
dpid=
cleanup() {
	[ -n "$qpid" ] && kill -9 "$qpid" 2>/dev/null
	[ -n "$dpid" ] && kill -9 "$dpid" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$root/scripts/vm/build-initramfs.sh" "$kdir" "$W/initrd.gz" "$here/dax-init" >"$W/initramfs.log" 2>&1 ||
	{ cat "$W/initramfs.log" >&2; bail "initramfs build failed"; }
echo "# dax-smoke: QEMU $QEMU, kernel $(basename "$vmlinuz")"

# boot NAME CACHE_SIZE [map]: one guest against its own holdfastd, or
# with "map" against dax-backend.py --map (its TAP lines count too).
boot() {
	local name=$1 size=$2 mode=${3:-} dir=$W/$1/share sock=$W/$1/fs.sock t0 rc drc
	mkdir -p "$dir"
	echo "hello from the host" >"$dir/hello.txt"
	if [ "$mode" = map ]; then
		python3 "$here/dax-backend.py" "$sock" --map >"$W/$name/backend.tap" 2>"$W/$name/backend.log" &
	else
		"$HOLDFASTD" --shared-dir "$dir" --socket-path "$sock" >"$W/$name/backend.log" 2>&1 &
	fi
	dpid=$!
	for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
	[ -S "$sock" ] || { cat "$W/$name/backend.log" >&2; notok "$name: the back-end listens"; return; }
	t0=$(date +%s)
	"$QEMU" -accel tcg,thread=multi -m 1G \
		-object memory-backend-memfd,id=mem,size=1G,share=on -machine pc,memory-backend=mem \
		-kernel "$vmlinuz" -initrd "$W/initrd.gz" \
		-append "console=ttyS0 loglevel=4 panic=-1 no_timer_check iomem=relaxed dax.tag=dax dax.size=$size dax.mode=$mode" \
		-display none -nodefaults -no-reboot -serial "file:$W/$name/serial.log" \
		-chardev "socket,id=c0,path=$sock" \
		-device "vhost-user-fs-pci,id=fs0,chardev=c0,tag=dax,cache-size=$size" \
		>"$W/$name/qemu.log" 2>&1 &
	qpid=$!
	while kill -0 "$qpid" 2>/dev/null && [ $(($(date +%s) - t0)) -lt "$TIMEOUT" ]; do sleep 0.5; done
	if kill -0 "$qpid" 2>/dev/null; then
		echo "# $name: VM still running after ${TIMEOUT}s: stopping it"
		kill -9 "$qpid"
	fi
	wait "$qpid"
	rc=$?
	qpid=
	# The back-end leaves when QEMU does.
	for _ in $(seq 1 50); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$dpid" 2>/dev/null && kill "$dpid"
	wait "$dpid"
	drc=$?
	dpid=
	[ "${HF_VM_SERIAL:-0}" = 1 ] && sed "s/^/# $name serial: /" "$W/$name/serial.log"
	echo "# $name: cache-size=$size, QEMU exit $rc after $(($(date +%s) - t0)) s, back-end exit $drc"
	sed "s/^/# $name qemu: /" "$W/$name/qemu.log"
	[ "$mode" = map ] && sed "s/^/# $name back-end: /" "$W/$name/backend.log"
	# The guest's (and back-end's) verdicts, renumbered into ours.
	{ tr -d '\r' <"$W/$name/serial.log" | sed -n 's/^DAX: //p'
	  [ "$mode" = map ] && cat "$W/$name/backend.tap"; } >"$W/$name/results"
	while IFS= read -r l; do
		case $l in
		"ok "*) ok "$name: $(echo "$l" | cut -d' ' -f3-)" ;;
		"not ok "*) notok "$name: $(echo "$l" | cut -d' ' -f4-)" ;;
		*) echo "# $name: $l" ;;
		esac
	done <"$W/$name/results"
	if grep -q '^DAX-DONE' "$W/$name/serial.log"; then
		ok "$name: guest ran to the end"
	else
		notok "$name: guest ran to the end"
		tail -n 30 "$W/$name/serial.log" | sed "s/^/# $name serial: /"
	fi
	if [ "$rc" = 0 ]; then ok "$name: QEMU exited cleanly"; else notok "$name: QEMU exited cleanly (status $rc)"; fi
}

boot dax $SIZE
boot nodax 0
boot map $SIZE map

# Realize checks cache-size before it talks to the back-end.
if out=$(timeout 20 "$QEMU" -S -machine pc -nodefaults -display none -chardev null,id=c0 \
	-device vhost-user-fs-pci,chardev=c0,tag=x,cache-size=3M 2>&1 </dev/null); then
	notok "QEMU refuses cache-size=3M"
else
	echo "# qemu: $out"
	case $out in
	*"power of 2"*) ok "QEMU refuses cache-size=3M (not a power of two)" ;;
	*) notok "QEMU refuses cache-size=3M (not a power of two)" ;;
	esac
fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
