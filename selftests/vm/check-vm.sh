#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The VM part of "make check": the guest suite on both guest kernels,
#   Debian 6.12 cloud  fuse and virtiofs built in; 2 vCPUs and 2 request
#                      queues per device (multiqueue virtio-fs)
#   Debian 6.1 cloud   fuse, virtiofs and virtio_pci as modules (kmod)
#   6.1-holdfast       the 6.1 guest with holdfast's fuse.ko/virtiofs.ko
#                      (kernel/build.sh, "make kernel"): smoke on one
#                      device + resend_test (FUSE_NOTIFY_RESEND backport)
#   6.1-reconnect      holdfast's modules, virtio-fs reconnect (patch 0003,
#                      selftests/guest/reconnect_test.c with
#                      selftests/vm/reconnect-host.sh): a workload runs while
#                      the host SIGKILLs the server HF_RC_KILLS (20) times and
#                      holdfastd re-plugs its device through QMP
#   6.1-replug         the same with the host re-plugging the device (QMP
#                      device_del + device_add, as a VM manager would), 3 times
#   6.1-suspend        the guest suspends to RAM 3 times under the workload
#                      (freeze parks, restore reattaches; QMP system_wakeup)
#   6.1-timeout        no new device: the waiting syscall fails with
#                      ECONNABORTED after reconnect_timeout, umount works
#   6.1-dax-reconnect  the same as 6.1-reconnect on a device with a DAX window
#                      (our patched QEMU, qemu/build.sh; patch 0006) mounted
#                      dax=always, with workers that read and write through
#                      mmap: HF_RC_DAX_KILLS (6) kills
#   6.1-dax-timeout    6.1-timeout on a DAX mount whose file is mapped: the
#                      mapped access waits for the window, then gets SIGBUS
#   6.1-stock-reconnect  the distribution's modules, same kill: the guest hangs
#                      in the removal of the dead device (bounded; the host
#                      checks that DEVICE_DELETED never comes)
# each one VM booted by run-vm.sh.  The two VMs run at the same time when
# HF_VM_PARALLEL=1 (default: one after the other).  Ends with the sum as
# "N passed, N failed".
#
#   selftests/vm/check-vm.sh [6.12] [6.1] [6.1-holdfast] [6.1-reconnect] ...
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] ||
	kernels=(6.12 6.1 6.1-holdfast 6.1-reconnect 6.1-dax-reconnect 6.1-replug 6.1-suspend
		6.1-timeout 6.1-dax-timeout 6.1-stock-reconnect)
log=$(mktemp -d /tmp/holdfast-vm.XXXXXX)
t0=$(date +%s)

# The reconnect VMs: device "ctl" (control channel) and "rc" (under test).
reconnect_vm() {
	local k=$1 mode cycles=3 rct=60 dev=rc:@nomount,--cache=never ctl=ctl:--cache=never twice=0
	local mods=() hang=() st qemu=${QEMU:-qemu-system-x86_64} append=
	case $k in
	# Every 5th kill also kills the restarted server at once, in the
	# middle of its re-plug.
	6.1-reconnect) mode=selfheal cycles=${HF_RC_KILLS:-20} dev=$dev,@qmp twice=${HF_RC_TWICE:-5} ;;
	6.1-dax-reconnect) mode=selfheal cycles=${HF_RC_DAX_KILLS:-6} dev=$dev,@qmp twice=3 ;;
	6.1-replug) mode=reconnect ;;
	# Every mount must be able to park: the test mounts ctl itself.
	6.1-suspend) mode=suspend ctl=ctl:@nomount,--cache=never ;;
	6.1-timeout | 6.1-dax-timeout) mode=timeout rct=3 ;;
	*) mode=stock hang=(--expect-hang) ;;
	esac
	case $k in
	# An 8 MiB window (four 2 MiB ranges) for a 12 MiB mmap'ed file and
	# more: the guest reclaims ranges all along, across the kills too.
	6.1-dax-*)
		dev=$dev,@dax=8M append=hf.rcdax=1
		qemu=$("$here/../../qemu/build.sh" 2>"$log/$k.txt" | tail -n1) ||
			{ echo "0 passed, 1 failed" >>"$log/$k.txt"; return; }
		;;
	esac
	if [ $mode != stock ]; then
		moddir=$("$here/../../kernel/build.sh" 2>"$log/$k.txt") ||
			{ echo "0 passed, 1 failed" >>"$log/$k.txt"; return; }
		mods=(--modules "$moddir")
	fi
	st=$log/$k-selftests
	mkdir -p "$st"
	cp "${BUILD:-$here/../../build}/selftests/guest/reconnect_test" "$st/" 2>>"$log/$k.txt"
	HF_RC_MODE=$mode HF_RC_CYCLES=$cycles HF_RC_TWICE=$twice QEMU=$qemu \
		"$here/run-vm.sh" --kernel 6.1 --run suite \
		--dev "$ctl" --dev "$dev" "${mods[@]}" --selftests "$st" \
		--host-script "$here/reconnect-host.sh" --append "hf.rc=$mode hf.rct=$rct${append:+ $append}" \
		"${hang[@]}" --timeout "${HF_VM_TIMEOUT:-420}" >"$log/$k.txt" 2>&1
}

one() {
	local k=$1 args=() moddir st
	case $k in
	6.1-reconnect | 6.1-dax-reconnect | 6.1-replug | 6.1-suspend | 6.1-timeout | 6.1-dax-timeout | \
		6.1-stock-reconnect)
		reconnect_vm "$k"
		return
		;;
	6.12) args=(--smp 2 --queues 2) ;;
	6.1-holdfast)
		moddir=$("$here/../../kernel/build.sh" 2>"$log/$k.txt") ||
			{ echo "0 passed, 1 failed" >>"$log/$k.txt"; return; }
		st=$log/$k-selftests
		mkdir -p "$st"
		cp "${BUILD:-$here/../../build}/selftests/guest/resend_test" "$st/" 2>>"$log/$k.txt"
		"$here/run-vm.sh" --kernel 6.1 --run suite --dev auto --modules "$moddir" \
			--selftests "$st" --timeout "${HF_VM_TIMEOUT:-420}" >"$log/$k.txt" 2>&1
		return
		;;
	*) args=(--smp 1 --queues 1) ;;
	esac
	"$here/run-vm.sh" --kernel "$k" --run suite --timeout "${HF_VM_TIMEOUT:-420}" "${args[@]}" \
		>"$log/$k.txt" 2>&1
}

if [ "${HF_VM_PARALLEL:-0}" = 1 ]; then
	for k in "${kernels[@]}"; do one "$k" & done
	wait
else
	for k in "${kernels[@]}"; do one "$k"; done
fi

pass=0
fail=0
for k in "${kernels[@]}"; do
	echo "# ======== guest kernel $k"
	cat "$log/$k.txt"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log/$k.txt" | tail -1)
	if [ -z "$line" ]; then
		echo "# check-vm: no result for kernel $k"
		fail=$((fail + 1))
		continue
	fi
	p=${line%% passed*}
	f=$(echo "$line" | sed 's/^[0-9]* passed, \([0-9]*\) failed.*/\1/')
	echo "# check-vm: kernel $k: $p passed, $f failed"
	pass=$((pass + p))
	fail=$((fail + f))
done
rm -rf "$log"
echo "# check-vm: $(($(date +%s) - t0)) s for ${kernels[*]}"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
