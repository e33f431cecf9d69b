#!/usr/bin/env bash
# Install every Debian package holdfast needs to build, test, demo and benchmark.
# Idempotent and fast when everything is present: dpkg is asked first, apt only
# runs for what is missing.  A package that fails to install is named.
set -euo pipefail

# Grouped by purpose so a reader sees why each package is here.
BUILD="build-essential g++ cmake ninja-build pkg-config liburing-dev libfuse3-dev"
RUNTIME="fuse3 attr acl"
TEST="libgtest-dev googletest xz-utils"
BENCH="fio meson dpkg-dev"
# make check-vm: QEMU (TCG) test VMs; the initramfs is busybox-static + kmod,
# packed with cpio; bc times the runs.
VM="qemu-system-x86 busybox-static kmod cpio bc"
# make fuzz: clang with libFuzzer and the sanitizer runtimes (libclang-rt),
# llvm-symbolizer for readable crash stacks.
FUZZ="clang-14 libclang-rt-14-dev llvm-14"

want="$BUILD $RUNTIME $TEST $BENCH $VM $FUZZ $*"

missing=()
for p in $want; do
	# "install ok installed" is the only state that means the package works.
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}" >&2
	echo "install-deps: run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
# A stale package list makes apt fail with 404s; refresh once per run.
apt-get update -qq >/dev/null || echo "install-deps: apt-get update failed, trying the cached lists" >&2
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/holdfast-apt.log 2>&1; then
	# Retry one by one so the failing package is named, not just "apt failed".
	for p in "${missing[@]}"; do
		if ! apt-get install -y -qq --no-install-recommends "$p" >>/tmp/holdfast-apt.log 2>&1; then
			echo "install-deps: failed to install Debian package '$p' (log: /tmp/holdfast-apt.log)" >&2
			exit 1
		fi
	done
fi
echo "install-deps: done"
