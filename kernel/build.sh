#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build holdfast's fuse.ko, virtiofs.ko and cuse.ko for the Debian 6.1
# guest kernel: Debian's fs/fuse + kernel/patches/6.1/series, out of tree
# against the matching linux-headers package (kernel/fetch-source.sh).
#
#   kernel/build.sh [--checkpatch]     ("make kernel")
#
# In ${HOLDFAST_CACHE:-$HOME/.cache/holdfast}/kernel/<ver>/:
#   src/   fs/fuse + include/uapi/linux/fuse.h with the series applied
#          (patch -p1, in series order) and fs/fuse/Kbuild = kernel/Kbuild.6.1;
#          the build runs there (make -C <headers> M=src/fs/fuse modules)
#   out/   fuse.ko virtiofs.ko cuse.ko (debug info stripped), Module.symvers,
#          build.log, and .stamp, a hash of the inputs: nothing is rebuilt
#          while the series, the patches and the glue are unchanged.
# Prints the out/ directory on stdout.  JOBS (default 2) is make's -j.
#
# --checkpatch: also run the kernel's scripts/checkpatch.pl on every patch of
# the series (report only; the build does not depend on it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
series=6.1
log() { echo "kernel-build: $*" >&2; }
die() { log "$*"; exit 1; }
checkpatch=0
[ "${1:-}" = --checkpatch ] && checkpatch=1

read -r ver kver cache < <("$here/fetch-source.sh" "$series") || die "fetch-source failed"
[ -n "${cache:-}" ] || die "fetch-source printed nothing"
pdir=$here/patches/$series
glue=$here/Kbuild.$series
[ -f "$pdir/series" ] || die "no $pdir/series"
mapfile -t patches < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$pdir/series")

if [ $checkpatch = 1 ]; then
	for p in "${patches[@]}"; do
		echo "== checkpatch $p" >&2
		perl "$cache/source/scripts/checkpatch.pl" --no-tree "$pdir/$p" >&2 || true
	done
fi

hdrdir=$cache/headers/usr/src/linux-headers-$kver
out=$cache/out
stamp=$({
	echo "$ver $kver $(gcc-12 --version | head -n1)"
	cat "$glue" "$pdir/series"
	for p in "${patches[@]}"; do cat "$pdir/$p"; done
} | sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ] &&
	[ -f "$out/fuse.ko" ] && [ -f "$out/virtiofs.ko" ] && [ -f "$out/cuse.ko" ]; then
	echo "$out"
	exit 0
fi

src=$cache/src
rm -rf "$src" "$out"
mkdir -p "$src" "$out"
cp -a "$cache/source/fs" "$cache/source/include" "$src/"
for p in "${patches[@]}"; do
	log "applying $p"
	patch -p1 --forward --batch --quiet -d "$src" <"$pdir/$p" || die "$p does not apply"
done
cp "$glue" "$src/fs/fuse/Kbuild"

log "building fuse.ko virtiofs.ko cuse.ko for $kver (linux-source $ver + ${#patches[@]} patches)"
t0=$(date +%s.%N)
if ! make -C "$hdrdir" M="$src/fs/fuse" -j"${JOBS:-2}" modules >"$out/build.log" 2>&1; then
	tail -30 "$out/build.log" >&2
	die "build failed (log: $out/build.log)"
fi
# Skipping BTF (no vmlinux in the headers) is expected; anything else is not.
if grep -E 'warning:|error:' "$out/build.log" >&2; then
	die "the build has warnings (log: $out/build.log)"
fi
for m in fuse virtiofs cuse; do
	strip --strip-debug -o "$out/$m.ko" "$src/fs/fuse/$m.ko"
done
cp "$src/fs/fuse/Module.symvers" "$out/"
echo "$stamp" >"$out/.stamp"
log "built in $(echo "$(date +%s.%N) - $t0" | bc | cut -c1-5)s: $(cd "$out" && ls *.ko | tr '\n' ' ')"
echo "$out"
