#!/usr/bin/env bash
# Install every Debian package holdfast needs to build, test, demo and benchmark.
# Idempotent and fast when everything is present: dpkg is asked first, apt only
# runs for what is missing.  A package that fails to install is named.
set -euo pipefail

# Grouped by purpose so a reader sees why each package is here.
BUILD="build-essential g++ cmake ninja-build pkg-config liburing-dev libfuse3-dev"
RUNTIME="fuse3 attr acl"
TEST="libgtest-dev googletest xz-utils"
# libnuma-dev: libfuse 3.18 (the benchmark's sid peer) builds its
# FUSE-over-io_uring support only with liburing and libnuma.
BENCH="fio meson dpkg-dev libnuma-dev"
# make check-vm: QEMU (TCG) test VMs; the initramfs is busybox-static + kmod,
# packed with cpio; bc times the runs; python3 speaks QMP.  QEMU itself must
# be >= 10 (see below).
VM="qemu-system-x86 busybox-static kmod cpio bc python3"
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

# Live migration of a vhost-user-fs device needs QEMU >= 8.2 (the back-end's
# state travels via SET_DEVICE_STATE_FD); bookworm has 7.2, so on bookworm
# QEMU comes from bookworm-backports (10.0).
BACKPORTS_LIST=/etc/apt/sources.list.d/holdfast-bookworm-backports.list
BACKPORTS_LINE="deb http://deb.debian.org/debian bookworm-backports main"
qemu_major() {
	dpkg-query -W -f='${Status} ${Version}\n' qemu-system-x86 2>/dev/null |
		sed -n 's/^install ok installed \([0-9]*:\)\{0,1\}\([0-9]*\).*/\2/p'
}
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
want_backports=0
if [ "$codename" = bookworm ]; then
	m=$(qemu_major)
	if [ -z "$m" ] || [ "$m" -lt 10 ]; then
		want_backports=1
	fi
fi

if [ ${#missing[@]} -eq 0 ] && [ $want_backports = 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}" >&2
	echo "install-deps: run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
: >/tmp/holdfast-apt.log
install_missing() {
	echo "install-deps: installing ${missing[*]}"
	# A stale package list makes apt fail with 404s; refresh once per run.
	apt-get update -qq >/dev/null || echo "install-deps: apt-get update failed, trying the cached lists" >&2
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >>/tmp/holdfast-apt.log 2>&1 && return
	# Retry one by one so the failing package is named, not just "apt failed".
	for p in "${missing[@]}"; do
		if ! apt-get install -y -qq --no-install-recommends "$p" >>/tmp/holdfast-apt.log 2>&1; then
			echo "install-deps: failed to install Debian package '$p' (log: /tmp/holdfast-apt.log)" >&2
			exit 1
		fi
	done
}
[ ${#missing[@]} -eq 0 ] || install_missing
if [ $want_backports = 1 ]; then
	echo "install-deps: QEMU $(qemu_major) is too old; installing qemu-system-x86 from bookworm-backports"
	[ -f "$BACKPORTS_LIST" ] || echo "$BACKPORTS_LINE" >"$BACKPORTS_LIST"
	apt-get update -qq >/dev/null || echo "install-deps: apt-get update failed" >&2
	if ! apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 \
		>>/tmp/holdfast-apt.log 2>&1; then
		echo "install-deps: failed to install qemu-system-x86 from bookworm-backports (log: /tmp/holdfast-apt.log)" >&2
		exit 1
	fi
	[ "$(qemu_major)" -ge 10 ] 2>/dev/null ||
		{ echo "install-deps: qemu-system-x86 from bookworm-backports is still $(qemu_major)" >&2; exit 1; }
fi
echo "install-deps: done"
