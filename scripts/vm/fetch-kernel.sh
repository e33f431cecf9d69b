#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Fetch a Debian cloud kernel image for the test VMs into the cache and
# print the directory it was unpacked into (the only thing on stdout):
#
#   scripts/vm/fetch-kernel.sh 6.1     linux-image-6.1.0-N-cloud-amd64-unsigned
#                                      (fuse, virtiofs and virtio_pci are modules)
#   scripts/vm/fetch-kernel.sh 6.12    linux-image-6.12.N+debM-cloud-amd64-unsigned
#                                      (fuse and virtiofs built in)
#
# The newest ABI apt knows is taken from the cloud meta-packages
# (linux-image-cloud-amd64 for 6.1, linux-image-6.12-cloud-amd64 for 6.12;
# both are in bookworm + bookworm-security, no backports entry needed).
# The .deb is downloaded (not installed) and unpacked into
#
#   ${HOLDFAST_CACHE:-$HOME/.cache/holdfast}/vm/kernel/<package>_<version>/
#       boot/vmlinuz-<kver>   boot/config-<kver>   lib/modules/<kver>/...
#
# and reused when present.  With no apt metadata, the newest cached entry
# for the series is used.
set -euo pipefail

series=${1:-6.12}
CACHE=${HOLDFAST_CACHE:-$HOME/.cache/holdfast}/vm/kernel
log() { echo "fetch-kernel: $*" >&2; }
die() { log "$*"; exit 1; }

case $series in
6.1) meta=linux-image-cloud-amd64 ;;
6.12) meta=linux-image-6.12-cloud-amd64 ;;
*) die "unknown series '$series' (6.1 or 6.12)" ;;
esac

complete() { [ -f "$1/.complete" ] && ls "$1"/boot/vmlinuz-* >/dev/null 2>&1; }

# The versioned image package the meta-package depends on.
img=$(apt-cache depends "$meta" 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1 || true)
ver=
if [ -n "$img" ]; then
	pkg=$img-unsigned
	ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n1 || true)
fi
if [ -z "$ver" ]; then
	# No metadata: fall back to the newest cached kernel of this series.
	cached=$(ls -1d "$CACHE"/linux-image-"$series"[.-]*/ 2>/dev/null | sort -V | tail -n1 || true)
	if [ -n "$cached" ] && complete "${cached%/}"; then
		echo "${cached%/}"
		exit 0
	fi
	die "apt knows no '$meta' (run 'apt-get update'; it is in bookworm/bookworm-security)"
fi

dir=$CACHE/${pkg}_$ver
if complete "$dir"; then
	echo "$dir"
	exit 0
fi

command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "downloading $pkg $ver (about 27 MB, once)"
# apt hands downloads to _apt, which cannot write under /root.
(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2) ||
	die "apt-get download of '$pkg=$ver' failed"
deb=$(ls -1 "$tmp"/*.deb | head -n1)
mkdir -p "$tmp/x"
# Only the kernel, its config and the modules the VMs can need.
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards \
	'./boot/vmlinuz-*' './boot/config-*' './lib/modules/*/modules.*' \
	'./lib/modules/*/kernel/fs/fuse/*' './lib/modules/*/kernel/drivers/virtio/*' \
	'./usr/lib/modules/*/modules.*' './usr/lib/modules/*/kernel/fs/fuse/*' \
	'./usr/lib/modules/*/kernel/drivers/virtio/*' 2>/dev/null ||
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards './boot/*' './lib/modules/*'
# Merged-/usr packages keep modules under usr/lib.
if [ -d "$tmp/x/usr/lib/modules" ] && [ ! -d "$tmp/x/lib/modules" ]; then
	mkdir -p "$tmp/x/lib"
	mv "$tmp/x/usr/lib/modules" "$tmp/x/lib/modules"
fi
ls "$tmp"/x/boot/vmlinuz-* >/dev/null 2>&1 || die "no vmlinuz in $(basename "$deb")"
echo "$pkg $ver" >"$tmp/x/SOURCE"
touch "$tmp/x/.complete"
rm -rf "$dir.partial"
mv "$tmp/x" "$dir.partial"
if ! mv -T "$dir.partial" "$dir" 2>/dev/null; then
	rm -rf "$dir.partial"
	complete "$dir" || die "could not create $dir"
fi
log "unpacked into $dir"
echo "$dir"
