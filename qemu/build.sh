#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build a QEMU for the test VMs whose vhost-user-fs-pci has a DAX cache
# window (cache-size=), from Debian's QEMU 10.0 source package with
# qemu/patches/10.0/series applied:
#
#   qemu/build.sh            # prints the path of qemu-system-x86_64 last
#   QEMU=$(qemu/build.sh | tail -n1)
#
# Only x86_64-softmmu, TCG (and KVM), vhost-user, memfd and the devices the
# VMs use (pc/i440fx, virtio-pci, vhost-user-fs, virtio-serial, ISA serial)
# are built.  Firmware (SeaBIOS, linuxboot option ROMs) is the installed
# qemu-system-data's, found under /usr/share/qemu like Debian's binary does.
#
# Everything lives in ${HOLDFAST_CACHE:-$HOME/.cache/holdfast}/qemu/:
#   dl/<ver>/        the source package (apt-get source --download-only)
#   meson-<v>/       meson from bookworm-backports, unpacked (QEMU 10
#                    needs >= 1.5, bookworm has 1.0); not installed
#   <ver>-<key>/bin/qemu-system-x86_64   the result; <key> hashes the
#                    patch series, this script and the version, so a
#                    cached binary is printed at once
# A build tree is made in <ver>-<key>/.build and removed on success
# (HF_QEMU_KEEP=1 keeps it).
#
# Environment: HF_QEMU_VERSION (Debian version of the qemu source package;
# default: the installed qemu-system-x86 if it is a 10.0.x, else the one
# the patches were made against), HF_QEMU_JOBS (ninja -j, default nproc).
# Needs root the first time (apt-get install, a deb-src entry).  python3-pycotap
# (which configure insists on) comes from bookworm-backports.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
series_dir=$here/patches/10.0
CACHE=${HOLDFAST_CACHE:-${HOME:-/root}/.cache/holdfast}/qemu
DEFAULT_VERSION=1:10.0.2+ds-2+deb13u1~bpo12+1
MESON_VERSION=1.7.0-1~bpo12+1

log() { echo "qemu/build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

ver=${HF_QEMU_VERSION:-}
if [ -z "$ver" ]; then
	ver=$(dpkg-query -W -f '${Version}' qemu-system-x86 2>/dev/null || true)
	case $ver in 1:10.0.*) ;; *) ver=$DEFAULT_VERSION ;; esac
fi
uver=${ver#*:}      # 10.0.2+ds-2+deb13u1~bpo12+1
key=$( { echo "$ver"; cat "$0" "$series_dir/series";
	{ grep -v '^[[:space:]]*\(#\|$\)' "$series_dir/series" || true; } |
		while read -r p _; do cat "$series_dir/$p"; done; } |
	sha256sum | cut -c1-12)
out=$CACHE/$uver-$key
bin=$out/bin/qemu-system-x86_64
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

# One build at a time (2 cores); trees left by failed builds go.
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
for d in "$CACHE"/*/.build; do
	[ -d "$d" ] && rm -rf "$d" && rmdir --ignore-fail-on-non-empty "${d%/.build}"
done

# 1. Build dependencies (a minimal list, not build-dep).
deps=(gcc make ninja-build pkgconf python3 python3-venv libglib2.0-dev
	dpkg-dev xz-utils patch python3-pycotap)
missing=()
for p in "${deps[@]}"; do
	dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
		>/tmp/holdfast-qemu-apt.log 2>&1; then
		for p in "${missing[@]}"; do
			apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]' ||
				log "package '$p' is not available (apt-get update?)"
		done
		die "apt-get install ${missing[*]} failed (log: /tmp/holdfast-qemu-apt.log)"
	fi
fi

# 2. A deb-src entry for bookworm-backports, added once.
has_debsrc() {
	grep -rqsE '^[[:space:]]*deb-src[[:space:]].*[[:space:]]bookworm-backports([[:space:]]|$)' \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null && return 0
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'BEGIN{RS="";FS="\n"} /(^|\n)Types:[^\n]*deb-src/ && /(^|\n)Suites:[^\n]*bookworm-backports/ {found=1}
			END{exit !found}' "$f" && return 0
	done
	return 1
}
if ! has_debsrc; then
	log "adding /etc/apt/sources.list.d/holdfast-qemu-src.list (deb-src bookworm-backports main)"
	cat >/etc/apt/sources.list.d/holdfast-qemu-src.list <<'SRC'
# Added by holdfast qemu/build.sh: QEMU's source package (apt-get source qemu).
deb-src http://deb.debian.org/debian bookworm-backports main
SRC
fi
known() { apt-cache showsrc qemu 2>/dev/null | grep -x "Version: $ver" >/dev/null; }
if ! known; then
	log "apt-get update (source record qemu $ver unknown)"
	apt-get update -qq >&2 || true
	known || die "no source package qemu $ver (is bookworm-backports still serving it?)"
fi

# 3. The source.  apt hands downloads to _apt, which cannot write under
# /root: do it as root.
dl=$CACHE/dl/$uver
mkdir -p "$dl"
if ! [ -f "$dl/.complete" ]; then
	log "downloading the qemu $ver source package"
	if (cd "$dl" && apt-get source -q --download-only -o APT::Sandbox::User=root "qemu=$ver" >&2); then
		touch "$dl/.complete"
	fi
fi
orig=$(ls "$dl"/qemu_*.orig.tar.xz 2>/dev/null | head -n1 || true)
[ -n "$orig" ] || die "could not download the qemu $ver source"
mesondir=$CACHE/meson-${MESON_VERSION%%-*}
if ! [ -f "$mesondir/.complete" ]; then
	log "fetching meson $MESON_VERSION (unpacked into the cache, not installed)"
	t=$(mktemp -d "$CACHE/.meson.XXXXXX")
	(cd "$t" && apt-get download -q -o APT::Sandbox::User=root "meson=$MESON_VERSION" >&2) ||
		{ rm -rf "$t"; die "apt-get download meson=$MESON_VERSION failed (bookworm-backports in sources?)"; }
	rm -rf "$mesondir"
	dpkg-deb -x "$t"/meson_*.deb "$mesondir"
	rm -rf "$t"
	touch "$mesondir/.complete"
fi

rm -rf "$out/.build"
mkdir -p "$out/.build"
src=$out/.build/src
dsc=$(ls "$dl"/qemu_*.dsc 2>/dev/null | head -n1 || true)
if [ -f "$dl/.complete" ] && [ -n "$dsc" ]; then
	log "unpacking $(basename "$dsc") (with Debian's patches)"
	dpkg-source --no-check -x "$dsc" "$src" >&2
else
	# The mirror serves the upstream tarball but not (any more) the
	# .dsc/.debian.tar.xz of this version: build upstream QEMU.
	log "warning: the .dsc of qemu $ver is not available; building $(basename "$orig") without Debian's patches"
	mkdir -p "$src"
	tar -xJf "$orig" -C "$src" --strip-components=1
	# The +ds tarball has no edk2 blobs (Debian's packaging builds them).
	sed -i 's/^if unpack_edk2_blobs$/if false/' "$src/pc-bios/meson.build"
fi

# 4. Our patches.
while read -r p _; do
	case $p in '' | \#*) continue ;; esac
	log "applying $p"
	patch -d "$src" -p1 --forward --quiet <"$series_dir/$p" >&2 || die "$p does not apply"
done <"$series_dir/series"

# 5. Configure and build.  Without default devices, the board and the
# devices the VMs use are listed explicitly.
cat >>"$src/configs/devices/i386-softmmu/default.mak" <<'MAK'
# holdfast qemu/build.sh: only what the test VMs use.
CONFIG_I440FX=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_SERIAL=y
CONFIG_VHOST_USER_FS=y
MAK
b=$out/.build/b
mkdir -p "$b"
log "configuring"
(cd "$b" && PYTHONPATH=$mesondir/usr/lib/python3/dist-packages "$src/configure" \
	--python=/usr/bin/python3 --target-list=x86_64-softmmu --without-default-features --without-default-devices \
	--enable-tcg --enable-kvm --enable-vhost-user --disable-docs --disable-install-blobs \
	--disable-relocatable --disable-download --disable-werror --disable-debug-info \
	--prefix=/usr --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu \
	--extra-cflags=-O2 >"$out/.build/configure.log" 2>&1) ||
	{ tail -n 30 "$out/.build/configure.log" >&2; die "configure failed (log: $out/.build/configure.log)"; }
t0=$(date +%s)
log "building with ninja -j${HF_QEMU_JOBS:-$(nproc)} (load: $(cut -d' ' -f1-3 /proc/loadavg))"
ninja -C "$b" -j "${HF_QEMU_JOBS:-$(nproc)}" qemu-system-x86_64 >"$out/.build/ninja.log" 2>&1 ||
	{ grep -m5 -B2 -A8 'error' "$out/.build/ninja.log" >&2 || tail -n 30 "$out/.build/ninja.log" >&2
	  die "build failed (log: $out/.build/ninja.log)"; }
log "built in $(($(date +%s) - t0)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
"$b/qemu-system-x86_64" -device vhost-user-fs-pci,help 2>/dev/null | grep 'cache-size' >/dev/null ||
	{ [ "$(grep -vc '^[[:space:]]*\(#\|$\)' "$series_dir/series" || true)" = 0 ] ||
		die "the built QEMU has no vhost-user-fs-pci cache-size property"; }

mkdir -p "$out/bin"
cp "$b/qemu-system-x86_64" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "$ver" >"$out/VERSION"
[ "${HF_QEMU_KEEP:-0}" = 1 ] || rm -rf "$out/.build"
echo "$bin"
