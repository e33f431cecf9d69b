#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Provide the kselftest harness headers (kselftest_harness.h, kselftest.h)
# for the host selftests without copying GPL kernel sources into the repo.
#
# They come from the Debian linux-source-6.1 package: the .deb is downloaded
# (not installed) into the cache, the kernel tarball inside it is streamed
# through tar, and only the two headers are kept.  The result is keyed by
# the package version:
#
#   ${HOLDFAST_CACHE:-$HOME/.cache/holdfast}/kselftest/<pkgversion>/
#
# On success the include directory is the only thing printed on stdout, so
# callers can do: KSFT_INC=$(scripts/fetch-kselftest.sh).  Progress goes to
# stderr.  A second run with a populated cache does no network or xz work.
set -euo pipefail

PKG=${KSELFTEST_PKG:-linux-source-6.1}
CACHE=${HOLDFAST_CACHE:-$HOME/.cache/holdfast}/kselftest
HEADERS="kselftest_harness.h kselftest.h"

log() { echo "fetch-kselftest: $*" >&2; }
die() { log "$*"; exit 1; }

have_headers() {
	local h
	for h in $HEADERS; do
		[ -s "$1/$h" ] || return 1
	done
}

# The candidate version is known from the local apt lists, no network needed.
ver=$(apt-cache show --no-all-versions "$PKG" 2>/dev/null |
	sed -n 's/^Version: //p' | head -n1 || true)

if [ -z "$ver" ]; then
	# No apt metadata (e.g. lists were cleaned): an existing cache entry is
	# still good, the headers do not change within a stable release.
	cached=$(ls -1d "$CACHE"/*/ 2>/dev/null | sort -V | tail -n1 || true)
	if [ -n "$cached" ] && have_headers "$cached"; then
		echo "${cached%/}"
		exit 0
	fi
	die "Debian package '$PKG' is not known to apt" \
	    "(run 'apt-get update'; it is in bookworm main/security)"
fi

dir=$CACHE/$ver
if have_headers "$dir"; then
	echo "$dir"
	exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found; need Debian package '$PKG'"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (Debian package 'dpkg')"
command -v xz >/dev/null || die "xz not found (Debian package 'xz-utils')"

mkdir -p "$CACHE"
# Work in a private temp dir next to the final one so a crash or a parallel
# run never leaves a half-written cache entry that looks complete.
tmp=$(mktemp -d "$CACHE/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

log "downloading $PKG $ver (about 140 MB, once)"
# apt would hand the download to the _apt user, which can not write into
# a cache under /root; downloading as root is fine for a file we only unpack.
if ! (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$PKG=$ver" >&2); then
	die "apt-get download failed: Debian package '$PKG' (version $ver)" \
	    "is missing or unreachable"
fi
deb=$(ls -1 "$tmp"/*.deb 2>/dev/null | head -n1 || true)
[ -n "$deb" ] || die "apt-get download produced no .deb for '$PKG'"

log "extracting $HEADERS"
# The deb holds ./usr/src/linux-source-6.1.tar.xz; stream it out of the deb and
# into a second tar so the 1.4 GB kernel tree never touches the disk.
src_tar=$(dpkg-deb --fsys-tarfile "$deb" | tar -t |
	grep -m1 '/usr/src/linux-source-.*\.tar\.xz$' || true)
[ -n "$src_tar" ] || die "no kernel tarball inside $(basename "$deb")"
mkdir -p "$tmp/x"
dpkg-deb --fsys-tarfile "$deb" | tar -xO "$src_tar" |
	tar -xJf - -C "$tmp/x" --wildcards \
		'*/tools/testing/selftests/kselftest_harness.h' \
		'*/tools/testing/selftests/kselftest.h'

mkdir -p "$tmp/out"
for h in $HEADERS; do
	f=$(find "$tmp/x" -path "*/tools/testing/selftests/$h" | head -n1)
	[ -n "$f" ] || die "$h not found in $src_tar"
	cp "$f" "$tmp/out/$h"
done
echo "$PKG $ver" >"$tmp/out/SOURCE"

# Publish atomically; if another run won the race, keep theirs.
rm -rf "$dir.partial"
mv "$tmp/out" "$dir.partial"
if ! mv -T "$dir.partial" "$dir" 2>/dev/null; then
	rm -rf "$dir.partial"
	have_headers "$dir" || die "could not create $dir"
fi
echo "$dir"
