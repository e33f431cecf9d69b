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
# zeroes); then a device with a window unplugged and plugged again (QMP);
# and on the host that QEMU refuses a cache-size that is not a
# power of two, or that differs from the window size a back-end reports
# (GET_SHMEM_CONFIG), and to migrate a device with a window.
#
# Reading a file through DAX needs FUSE_SETUPMAPPING in the back-end
# (SHMEM_MAP): holdfastd is given the window (--dax-window) and the
# guest's read and write through DAX are checked (the write on the host
# too).
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
DAX_SCRIPT=dax-smoke
# shellcheck source-path=SCRIPTDIR source=dax-lib.sh
. "$here/dax-lib.sh"
SIZE=$((64 << 20))
TIMEOUT=${HF_DAX_TIMEOUT:-240}

dax_prereqs

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

# wait_serial NAME MARKER SECONDS: until the guest prints MARKER; fails
# if its QEMU is gone or the time is up.
wait_serial() {
	local i
	for ((i = 0; i < 2 * $3; i++)); do
		grep -q "$2" "$W/$1/serial.log" 2>/dev/null && return 0
		kill -0 "$qpid" 2>/dev/null || return 1
		sleep 0.5
	done
	return 1
}

# replug NAME SIZE: when the guest asks, unplug fs0 and plug a new one on
# the same chardev (dax-backend.py answers whatever comes on it).
replug() {
	local qmp=$W/$1/qmp.sock t
	wait_serial "$1" DAX-READY-UNPLUG 120 || kill -0 "$qpid" 2>/dev/null || return
	if t=$(python3 "$root/scripts/vm/qmp.py" "$qmp" unplug fs0 30 2>&1); then
		ok "$1: device_del fs0 (DEVICE_DELETED after ${t}s)"
	else
		notok "$1: device_del fs0: $t"
	fi
	# Until the guest saw it gone (it polls; the guest's own check fails
	# if it never does).
	wait_serial "$1" DAX-GONE 60 || kill -0 "$qpid" 2>/dev/null || return
	if t=$(python3 "$root/scripts/vm/qmp.py" "$qmp" exec device_add \
		"{\"driver\": \"vhost-user-fs-pci\", \"id\": \"fs0\", \"chardev\": \"c0\", \"tag\": \"dax\", \"cache-size\": $2}" 2>&1); then
		ok "$1: device_add fs0 with cache-size again"
	else
		notok "$1: device_add fs0 with cache-size again: $t"
	fi
}

# boot NAME CACHE_SIZE [map|plug]: one guest against its own holdfastd, or
# against dax-backend.py (--map with "map"; its TAP lines count too).
boot() {
	local name=$1 size=$2 mode=${3:-} dir=$W/$1/share sock=$W/$1/fs.sock t0 rc drc serve=0
	local window=()
	mkdir -p "$dir"
	echo "hello from the host" >"$dir/hello.txt"
	if [ "$mode" = map ] || [ "$mode" = plug ]; then
		python3 "$here/dax-backend.py" "$sock" --shmem-size "$size" $([ "$mode" = map ] && echo --map) \
			>"$W/$name/backend.tap" 2>"$W/$name/backend.log" &
	else
		# holdfastd serves the window (--dax-window): the guest's reads
		# and writes through it are checked too.
		if [ "$size" != 0 ]; then
			window=(--dax-window "$size")
			serve=1
		fi
		"$HOLDFASTD" --shared-dir "$dir" --socket-path "$sock" "${window[@]}" \
			>"$W/$name/backend.log" 2>&1 &
	fi
	dpid=$!
	for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
	[ -S "$sock" ] || { cat "$W/$name/backend.log" >&2; notok "$name: the back-end listens"; return; }
	t0=$(date +%s)
	vm_args 1G "$W/$name/serial.log" "$W/initrd.gz" \
		"iomem=relaxed dax.tag=dax dax.size=$size dax.mode=$mode dax.serve=$serve"
	"$QEMU" "${vm[@]}" \
		-qmp "unix:$W/$name/qmp.sock,server=on,wait=off" \
		-chardev "socket,id=c0,path=$sock" \
		-device "vhost-user-fs-pci,id=fs0,chardev=c0,tag=dax,cache-size=$size" \
		>"$W/$name/qemu.log" 2>&1 &
	qpid=$!
	[ "$mode" = plug ] && replug "$name" "$size"
	wait_vm "$qpid" "$t0" "$name"
	rc=$?
	qpid=
	reap_backend "$dpid"
	drc=$?
	dpid=
	[ "${HF_VM_SERIAL:-0}" = 1 ] && sed "s/^/# $name serial: /" "$W/$name/serial.log"
	echo "# $name: cache-size=$size, QEMU exit $rc after $(($(date +%s) - t0)) s, back-end exit $drc"
	sed "s/^/# $name qemu: /" "$W/$name/qemu.log"
	[ -n "$mode" ] && sed "s/^/# $name back-end: /" "$W/$name/backend.log"
	# The guest's (and back-end's) verdicts, renumbered into ours.
	{ tr -d '\r' <"$W/$name/serial.log" | sed -n 's/^DAX: //p'
	  [ -n "$mode" ] && cat "$W/$name/backend.tap"; } >"$W/$name/results"
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
	[ -z "$mode" ] && grep -E 'by opcode|SHMEM|DAX window' "$W/$name/backend.log" | sed "s/^/# $name holdfastd: /"
	if [ $serve = 1 ]; then
		if grep 'by opcode' "$W/$name/backend.log" | grep ' SETUPMAPPING=[1-9]' >/dev/null; then
			ok "$name: holdfastd answered FUSE_SETUPMAPPING (the guest used the window)"
		else
			notok "$name: holdfastd answered FUSE_SETUPMAPPING (the guest used the window)"
		fi
		if [ "$(cat "$dir/hello.txt")" = "HELLO from the host" ]; then
			ok "$name: the guest's write through DAX is in the host file"
		else
			notok "$name: the guest's write through DAX is in the host file ($(head -c 40 "$dir/hello.txt"))"
		fi
	fi
}

boot dax $SIZE
boot nodax 0
boot map $SIZE map
boot plug $SIZE plug

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

# A back-end whose GET_SHMEM_CONFIG names another window size fails realize.
mkdir -p "$W/config"
python3 "$here/dax-backend.py" "$W/config/fs.sock" --shmem-size $((32 << 20)) \
	>"$W/config/backend.tap" 2>&1 &
dpid=$!
for _ in $(seq 1 100); do [ -S "$W/config/fs.sock" ] && break; sleep 0.05; done
out=$(timeout 20 "$QEMU" -S -machine pc -nodefaults -display none \
	-object memory-backend-memfd,id=mem,size=256M,share=on -m 256M -machine memory-backend=mem \
	-chardev "socket,id=c0,path=$W/config/fs.sock" \
	-device vhost-user-fs-pci,chardev=c0,tag=x,cache-size=64M 2>&1 </dev/null)
rc=$?
kill "$dpid" 2>/dev/null
wait "$dpid" 2>/dev/null
dpid=
echo "# qemu: $out"
case $rc:$out in
0:* | 124:*) notok "QEMU refuses cache-size=64M against a back-end with a 32M window (status $rc)" ;;
*"DAX window is 33554432 bytes but cache-size is 67108864"*)
	ok "QEMU refuses cache-size=64M against a back-end with a 32M window (GET_SHMEM_CONFIG)" ;;
*) notok "QEMU refuses cache-size=64M against a back-end with a 32M window (other error)" ;;
esac

# A device with a window blocks migration (the mappings cannot travel).
mkdir -p "$W/mig"
python3 "$here/dax-backend.py" "$W/mig/fs.sock" --shmem-size $SIZE >"$W/mig/backend.tap" 2>&1 &
dpid=$!
for _ in $(seq 1 100); do [ -S "$W/mig/fs.sock" ] && break; sleep 0.05; done
"$QEMU" -S -machine pc -nodefaults -display none \
	-object memory-backend-memfd,id=mem,size=256M,share=on -m 256M -machine memory-backend=mem \
	-chardev "socket,id=c0,path=$W/mig/fs.sock" -qmp "unix:$W/mig/qmp.sock,server=on,wait=off" \
	-device vhost-user-fs-pci,chardev=c0,tag=x,cache-size=64M >"$W/mig/qemu.log" 2>&1 </dev/null &
qpid=$!
for _ in $(seq 1 100); do [ -S "$W/mig/qmp.sock" ] && break; sleep 0.05; done
out=$(python3 "$root/scripts/vm/qmp.py" "$W/mig/qmp.sock" exec migrate '{"uri": "exec:cat >/dev/null"}' 2>&1)
rc=$?
python3 "$root/scripts/vm/qmp.py" "$W/mig/qmp.sock" exec quit >/dev/null 2>&1
wait "$qpid" 2>/dev/null
qpid=
kill "$dpid" 2>/dev/null
wait "$dpid" 2>/dev/null
dpid=
echo "# qmp migrate: ${out:-succeeded}"
case $rc:$out in
1:*"DAX window (cache-size) cannot migrate"*) ok "QEMU refuses to migrate a device with a window" ;;
*) notok "QEMU refuses to migrate a device with a window (status $rc)" ;;
esac

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
