#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the test VM's initramfs for one guest kernel.
#
#   scripts/vm/build-initramfs.sh KDIR OUT INIT [FILE=DEST ...]
#
#   KDIR   a kernel unpacked by scripts/vm/fetch-kernel.sh
#   OUT    the initramfs to write (gzip'ed newc cpio)
#   INIT   the guest's /init (a busybox sh script)
#   FILE=DEST  extra files (selftest binaries, ...) copied to DEST in the guest
#
# Two parts, concatenated (the kernel unpacks one cpio archive after the
# other):
#   base   busybox-static, kmod (+ its shared libraries), and, for kernels
#          whose virtio/fuse are modules, those modules with a modules.dep;
#          cached in ${HOLDFAST_CACHE:-$HOME/.cache/holdfast}/vm/initramfs/,
#          keyed by kernel, busybox and kmod versions;
#   top    /init and the extra files, rebuilt every time (cheap).
set -euo pipefail

KDIR=$(realpath "$1")
OUT=$(realpath -m "$2")
INIT=$(realpath "$3")
shift 3
CACHE=${HOLDFAST_CACHE:-$HOME/.cache/holdfast}/vm/initramfs
log() { echo "build-initramfs: $*" >&2; }
die() { log "$*"; exit 1; }

for t in busybox cpio gzip; do command -v $t >/dev/null || die "$t not found (scripts/install-deps.sh vm)"; done
[ -x /bin/kmod ] || die "/bin/kmod not found (Debian package kmod)"
BUSYBOX=$(command -v busybox)
# ldd fails on a static binary: that is what we want.
if ldd "$BUSYBOX" >/dev/null 2>&1; then
	die "$BUSYBOX is dynamically linked (install Debian package busybox-static)"
fi

kver=$(basename "$(ls -d "$KDIR"/lib/modules/*/ | head -n1)")
[ -n "$kver" ] || die "no lib/modules in $KDIR"
bbver=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || echo unknown)
kmodver=$(dpkg-query -W -f='${Version}' kmod 2>/dev/null || echo unknown)
# What the guest must load before it can mount virtiofs: the virtio stack,
# fuse and virtiofs, where they are modules (6.1 cloud); none when built in.
modules=()
for m in virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci fuse virtiofs; do
	if find "$KDIR/lib/modules/$kver/kernel" -name "$m.ko*" 2>/dev/null | grep -q .; then
		modules+=("$m")
	fi
done

base=$CACHE/base2-${kver}-bb${bbver}-kmod${kmodver}.cpio.gz
if [ ! -s "$base" ]; then
	mkdir -p "$CACHE"
	r=$(mktemp -d "$CACHE/.root.XXXXXX")
	trap 'rm -rf "$r"' EXIT
	# mktemp's 0700 would become the guest's / and lock out non-root users.
	chmod 755 "$r"
	mkdir -p "$r"/{bin,sbin,proc,sys,dev,mnt,tmp,run,etc,root,lib64,lib/x86_64-linux-gnu,usr/bin,usr/sbin}
	cp "$BUSYBOX" "$r/bin/busybox"
	for a in $("$BUSYBOX" --list); do
		[ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"
	done
	# kmod (dynamic) and its libraries; busybox's applets would shadow its
	# names in PATH, so the guest calls it as /sbin/modprobe.
	cp /bin/kmod "$r/bin/kmod"
	for lib in $(ldd /bin/kmod | awk '/=>/ { print $3 }'); do
		cp -L "$lib" "$r/lib/x86_64-linux-gnu/"
	done
	cp -L /lib64/ld-linux-x86-64.so.2 "$r/lib64/"
	for t in insmod rmmod modprobe lsmod modinfo depmod; do
		rm -f "$r/sbin/$t"
		ln -s /bin/kmod "$r/sbin/$t"
	done
	if [ ${#modules[@]} -gt 0 ]; then
		src=$KDIR/lib/modules/$kver
		dst=$r/lib/modules/$kver
		mkdir -p "$dst"
		cp "$src"/modules.order "$src"/modules.builtin "$src"/modules.builtin.modinfo "$dst"/ 2>/dev/null || true
		for m in "${modules[@]}"; do
			f=$(find "$src/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)
			[ -n "$f" ] || die "module $m not found in $src"
			mkdir -p "$dst/$(dirname "${f#"$src"/}")"
			cp "$f" "$dst/${f#"$src"/}"
		done
		depmod -b "$r" "$kver" || die "depmod failed"
	fi
	echo "$kver" >"$r/etc/hf-kernel"
	[ ${#modules[@]} -eq 0 ] || printf '%s\n' "${modules[@]}" >"$r/etc/hf-modules"
	(cd "$r" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$base.tmp"
	mv "$base.tmp" "$base"
	rm -rf "$r"
	trap - EXIT
	log "base for $kver: $(du -h "$base" | cut -f1) (modules: ${modules[*]:-built in})"
fi

top=$(mktemp -d "${TMPDIR:-/tmp}/hf-initrd.XXXXXX")
trap 'rm -rf "$top"' EXIT
chmod 755 "$top"
cp "$INIT" "$top/init"
chmod 755 "$top/init"
for spec in "$@"; do
	src=${spec%%=*}
	dst=${spec#*=}
	mkdir -p "$top/$(dirname "$dst")"
	cp -L "$src" "$top/$dst"
done
mkdir -p "$(dirname "$OUT")"
{
	cat "$base"
	(cd "$top" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1)
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "$OUT"
