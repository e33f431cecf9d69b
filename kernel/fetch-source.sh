#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Fetch what the out-of-tree build of fs/fuse needs for one Debian kernel
# series, matching the guest kernel of the test VMs exactly:
#
#   kernel/fetch-source.sh [6.1]
#
# The kernel ABI and package version come from scripts/vm/fetch-kernel.sh
# (linux-image-6.1.0-N-cloud-amd64-unsigned_<ver>).  Four .debs of the
# same <ver> are downloaded (not installed) and only what is needed is
# kept, in
#
#   ${HOLDFAST_CACHE:-$HOME/.cache/holdfast}/kernel/<ver>/
#     source/   from linux-source-6.1: fs/fuse/, include/uapi/linux/fuse.h,
#               scripts/checkpatch.pl (+ spelling.txt, const_structs.checkpatch)
#     headers/  linux-headers-<kver>, linux-headers-<abi>-common and
#               linux-kbuild-6.1 unpacked into one root, so their relative
#               symlinks resolve; the flavour Makefile's absolute include
#               of /usr/src/linux-headers-<abi>-common is pointed at it.
#               The build directory is headers/usr/src/linux-headers-<kver>.
#
# Reused when present (a .complete stamp in each).  Prints "<ver> <kver>
# <cache dir>" on stdout, progress on stderr.
set -euo pipefail

series=${1:-6.1}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
log() { echo "fetch-source: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$series" = 6.1 ] || die "only the 6.1 series is supported (6.12 builds fuse in)"
kdir=$("$root/scripts/vm/fetch-kernel.sh" "$series") || die "no $series guest kernel"
# .../linux-image-6.1.0-56-cloud-amd64-unsigned_6.1.192-2
base=$(basename "$kdir")
ver=${base##*_}
kver=$(basename "$(ls -d "$kdir"/lib/modules/*/ | head -n1)")
abi=${kver%-cloud-amd64}
[ -n "$ver" ] && [ "$abi" != "$kver" ] || die "cannot parse kernel '$base' / '$kver'"

CACHE=${HOLDFAST_CACHE:-$HOME/.cache/holdfast}/kernel/$ver
src=$CACHE/source
hdr=$CACHE/headers
mkdir -p "$CACHE"

need_src=1
need_hdr=1
[ -f "$src/.complete" ] && need_src=0
[ -f "$hdr/.complete" ] && need_hdr=0
if [ $need_src = 0 ] && [ $need_hdr = 0 ]; then
	echo "$ver $kver $CACHE"
	exit 0
fi

for t in apt-get dpkg-deb xz tar; do command -v $t >/dev/null || die "$t not found"; done
tmp=$(mktemp -d "$CACHE/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pkgs=()
[ $need_src = 1 ] && pkgs+=("linux-source-$series=$ver")
[ $need_hdr = 1 ] && pkgs+=("linux-headers-$kver=$ver" "linux-headers-$abi-common=$ver"
	"linux-kbuild-$series=$ver")
log "downloading ${pkgs[*]} (linux-source is about 140 MB, once)"
# apt hands downloads to _apt, which cannot write under /root.
(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "${pkgs[@]}" >&2) ||
	die "apt-get download failed (apt-get update? is $ver still in bookworm-security?)"

if [ $need_src = 1 ]; then
	log "extracting fs/fuse, uapi fuse.h and checkpatch from linux-source-$series"
	deb=$(ls "$tmp"/linux-source-*.deb)
	tarball=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -m1 '/usr/src/linux-source-.*\.tar\.xz$') ||
		die "no kernel tarball in $(basename "$deb")"
	top=linux-source-$series
	mkdir -p "$tmp/s"
	dpkg-deb --fsys-tarfile "$deb" | tar -xO "$tarball" | xz -dc |
		tar -x -C "$tmp/s" --strip-components=1 --wildcards "$top/fs/fuse/*" \
			"$top/include/uapi/linux/fuse.h" "$top/scripts/checkpatch.pl" \
			"$top/scripts/spelling.txt" "$top/scripts/const_structs.checkpatch"
	[ -f "$tmp/s/fs/fuse/dev.c" ] || die "fs/fuse missing from $(basename "$deb")"
	echo "linux-source-$series $ver" >"$tmp/s/SOURCE"
	touch "$tmp/s/.complete"
	rm -rf "$src"
	mv "$tmp/s" "$src"
fi

if [ $need_hdr = 1 ]; then
	log "unpacking linux-headers-$kver (+ common, kbuild)"
	mkdir -p "$tmp/h"
	for deb in "$tmp"/linux-headers-*.deb "$tmp"/linux-kbuild-*.deb; do
		dpkg-deb -x "$deb" "$tmp/h"
	done
	rm -rf "$hdr"
	mv "$tmp/h" "$hdr"
	mk=$hdr/usr/src/linux-headers-$kver/Makefile
	sed -i "s|^include /usr/src/|include $hdr/usr/src/|" "$mk"
	grep -q "^include $hdr/" "$mk" || die "unexpected $mk"
	echo "linux-headers-$kver $ver" >"$hdr/SOURCE"
	touch "$hdr/.complete"
fi
log "ready in $CACHE"
echo "$ver $kver $CACHE"
