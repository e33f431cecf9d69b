#!/usr/bin/env bash
# Runs test suites and ends with one line "N passed, N failed" summing them.
# Usage: check.sh [unit] [host] [vm] [migrate] [dax] [asan] ...   Exit status: 0 only if nothing failed.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$top/build}
log=$(mktemp -d /tmp/holdfast-check.XXXXXX)
pass=0
fail=0

add() { pass=$((pass + $1)); fail=$((fail + $2)); }

run_unit() {
	local bin=$build/userspace/holdfast_unit_tests out=$log/unit.txt
	if [ ! -x "$bin" ]; then
		echo "check: $bin missing (GoogleTest not found at configure time?)"
		add 0 1
		return
	fi
	"$bin" --gtest_brief=0 2>&1 | tee "$out" | grep -E '^\[  (FAILED|PASSED) |^\[==========\]' || true
	# GoogleTest's own summary: "[  PASSED  ] N tests." / "[  FAILED  ] N tests,"
	local p f
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	if [ -z "$p" ] && [ -z "$f" ]; then
		echo "check: unit tests produced no summary (crashed?)"
		add 0 1
		return
	fi
	echo "unit: ${p:-0} passed, ${f:-0} failed"
	add "${p:-0}" "${f:-0}"
}

# Runs a suite that ends with its own "N passed, N failed[, N skipped]"
# line and adds it in; a skip is not a pass, and no line is a failure.
run_counted() {
	local name=$1 out=$log/$1.txt line p f s
	shift
	"$@" 2>&1 | tee "$out"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
	if [ -z "$line" ]; then
		echo "check: $name produced no summary"
		add 0 1
		return
	fi
	p=$(echo "$line" | sed 's/^\([0-9]*\) passed.*/\1/')
	f=$(echo "$line" | sed 's/^[0-9]* passed, \([0-9]*\) failed.*/\1/')
	s=$(echo "$line" | sed -n 's/.*, \([0-9]*\) skipped.*/\1/p')
	add "$p" "$((f + ${s:-0}))"
}

# The host selftests against a real /dev/fuse mount.
run_host() {
	O=${O:-$build/selftests} HOLDFASTD=${HOLDFASTD:-$build/userspace/holdfastd} \
		HOLDFASTCTL=${HOLDFASTCTL:-$build/userspace/holdfastctl} \
		run_counted host "$top/selftests/run-host.sh"
}
# The guest suite in test VMs (both guest kernels, and ours on 6.1).
run_vm() { run_counted vm "$top/selftests/vm/check-vm.sh"; }
# Live migration between QEMUs: ping-pong (same-host fast path, then every
# file opened by handle), by path to a copy of the directory, and a
# destination that refuses.
run_migrate() {
	run_counted migrate "$top/selftests/vm/migrate-vm.sh"
	run_counted migrate-by-handle "$top/selftests/vm/migrate-vm.sh" -- --migration-fast-path off
	run_counted migrate-find-paths "$top/selftests/vm/migrate-vm.sh" --find-paths
	run_counted migrate-refuse "$top/selftests/vm/migrate-vm.sh" --refuse
}
# The virtio-fs DAX window end to end: our patched QEMU (qemu/build.sh,
# built once into the cache) and holdfastd --dax-window; then the guest
# selftests over it (dax=always, reclaim, truncate, dax=inode).
run_dax() {
	run_counted dax "$top/selftests/vm/dax-smoke.sh"
	run_counted dax-guest "$top/selftests/vm/dax-guest.sh"
}
# Unit tests and host selftests again under ASan/UBSan (its own build).
run_asan() { run_counted asan "$top/scripts/check-asan.sh"; }

[ $# -gt 0 ] || set -- unit host
for suite in "$@"; do
	echo "=== $suite"
	"run_$suite"
done
echo "logs: $log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
