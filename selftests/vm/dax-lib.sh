# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash disable=SC2034
#
# Sourced by the DAX VM tests (dax-smoke.sh, dax-guest.sh): their TAP
# counters, and what both need before they boot a guest.  The caller sets
# `root` (the checkout) and `DAX_SCRIPT` (its name, for messages) first.

BUILD=${BUILD:-$root/build}
HOLDFASTD=${HOLDFASTD:-$BUILD/userspace/holdfastd}
pass=0
fail=0
n=0
ok() { n=$((n + 1)); pass=$((pass + 1)); echo "ok $n $*"; }
notok() { n=$((n + 1)); fail=$((fail + 1)); echo "not ok $n $*"; }
bail() {
	echo "$DAX_SCRIPT: $*" >&2
	echo "$pass passed, $((fail + 1)) failed"
	exit 1
}

# Root, holdfastd, our patched QEMU (QEMU, or what qemu/build.sh prints,
# building it the first time) and the 6.12 guest kernel (kdir, vmlinuz);
# bails out with the reason when one is missing.
dax_prereqs() {
	local props
	[ "$(id -u)" = 0 ] || bail "must run as root (holdfastd serves as root)"
	[ -x "$HOLDFASTD" ] || bail "$HOLDFASTD not built"
	if [ -z "${QEMU:-}" ]; then
		QEMU=$("$root/qemu/build.sh" | tail -n1) || bail "qemu/build.sh failed"
	fi
	[ -x "$QEMU" ] || bail "no QEMU at '$QEMU'"
	# (Captured first: "| grep -q" under pipefail fails when grep leaves early.)
	props=$("$QEMU" -device vhost-user-fs-pci,help 2>/dev/null)
	grep -q cache-size <<<"$props" ||
		bail "$QEMU has no vhost-user-fs-pci cache-size (not the patched QEMU)"
	kdir=$("$root/scripts/vm/fetch-kernel.sh" 6.12) || bail "no 6.12 guest kernel"
	vmlinuz=$(ls "$kdir"/boot/vmlinuz-* | head -n1)
}

# wait_vm PID T0 LABEL: until QEMU PID exits or TIMEOUT seconds from T0
# have passed (then it is killed); returns its exit status.
wait_vm() {
	while kill -0 "$1" 2>/dev/null && [ $(($(date +%s) - $2)) -lt "$TIMEOUT" ]; do sleep 0.5; done
	if kill -0 "$1" 2>/dev/null; then
		echo "# $3: VM still running after ${TIMEOUT}s: stopping it"
		kill -9 "$1"
	fi
	wait "$1"
}

# reap_backend PID: a back-end leaves when its QEMU does; 5 s later it is
# stopped.  Returns its exit status.
reap_backend() {
	for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$1" 2>/dev/null && kill "$1"
	wait "$1"
}

# vm_args MEM SERIAL_LOG INITRD APPEND: the QEMU arguments of a TCG guest
# of the 6.12 kernel with MEM of shared memory (vhost-user needs it), in
# the array vm; the caller adds its devices.
vm_args() {
	vm=(-accel tcg,thread=multi -m "$1"
		-object "memory-backend-memfd,id=mem,size=$1,share=on" -machine pc,memory-backend=mem
		-kernel "$vmlinuz" -initrd "$3" -append "console=ttyS0 loglevel=4 panic=-1 no_timer_check $4"
		-display none -nodefaults -no-reboot -serial "file:$2")
}
