#!/usr/bin/env bash
# Build libfuse's example/passthrough_hp (the peer column of the benchmark)
# from Debian's fuse3 source package, into the ignored cache:
#   ${HOLDFAST_CACHE:-$HOME/.cache/holdfast}/peers/fuse3-<version>/
# Idempotent: a cached binary is reused.  Prints the binary path on stdout
# (and nothing else); progress goes to stderr.
#
#   build-passthrough-hp.sh                  stock example/passthrough_hp
#   build-passthrough-hp.sh --variant=auto   passthrough_hp_auto: the same
#       source with one change of policy, to match holdfastd's default
#       `--cache auto` (virtiofsd's "auto"): entry/attr timeouts 1 s instead
#       of 86400 s, no writeback cache (so no O_WRONLY->O_RDWR / O_APPEND
#       rewriting either), no keep_cache / cache_readdir on open.  Everything
#       else (splice, multithreaded loop, default_permissions) is stock.
#       3.14's passthrough_hp offers only "--nocache" (0 s) or its default
#       (86400 s + writeback), hence the patched copy.
#
# Needs (scripts/install-deps.sh installs them): dpkg-dev (dpkg-source),
# meson, ninja-build, g++, pkg-config, libfuse3-dev.
# Adds a deb-src entry for bookworm when none exists, and runs
# `apt-get update` only when the fuse3 source record is not known yet.
set -euo pipefail

log() { echo "build-passthrough-hp: $*" >&2; }
die() { log "error: $*"; exit 1; }

variant=stock
case "${1:-}" in
"" | --variant=stock) ;;
--variant=auto) variant=auto ;;
-h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;/^set -e/d'; exit 0 ;;
*) die "unknown argument '$1' (use --variant=stock|auto)" ;;
esac

CACHE=${HOLDFAST_CACHE:-${HOME:-/root}/.cache/holdfast}
PEERS=$CACHE/peers

# Version: the one installed (libfuse3-dev) pins which source we want, so the
# peer is built from the same release as the system library.
ver=$(dpkg-query -W -f='${Version}' libfuse3-dev 2>/dev/null || true)
[ -n "$ver" ] || ver=$(dpkg-query -W -f='${Version}' fuse3 2>/dev/null || true)
upver=${ver%%-*}          # 3.14.0-4 -> 3.14.0
upver=${upver#*:}         # strip an epoch if any
[ -n "$upver" ] || upver=unknown

# Bump RECIPE whenever the way we configure, patch or compile changes: a
# cached build with another recipe is thrown away and rebuilt.
#   2: -DHAVE_UTIMENSAT for the examples.  3.14's meson build puts it in
#      fuse_config.h, which the examples do not include, so passthrough_hp
#      answers SETATTR(times) on a file that is not open with EOPNOTSUPP
#      (`tar x` fails with "Cannot utime").  A build fix, not a policy change.
RECIPE=2
EXAMPLE_CPPFLAGS="-DHAVE_UTIMENSAT"

cached() { # cached DIR: the binary exists and was built by this recipe
	[ -x "$(binpath "$1")" ] && [ "$(cat "$1/build/.holdfast-recipe" 2>/dev/null)" = "$RECIPE" ]
}

binpath() {
	if [ "$variant" = auto ]; then echo "$1/build/holdfast/passthrough_hp_auto"
	else echo "$1/build/example/passthrough_hp"; fi
}

# Fast path: a cached build for any version we know about.
if [ "$upver" != unknown ]; then
	if cached "$PEERS/fuse3-$upver"; then
		binpath "$PEERS/fuse3-$upver"
		exit 0
	fi
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (adds an apt source, apt-get update)"
for t in dpkg-source meson ninja g++ pkg-config; do
	command -v "$t" >/dev/null || die "missing '$t' (run scripts/install-deps.sh)"
done

# 1. deb-src entry.  Any existing deb-src line for bookworm main is enough.
has_debsrc() {
	grep -rqsE '^[[:space:]]*deb-src[[:space:]].*bookworm' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null && return 0
	# deb822: a stanza with Types containing deb-src and Suites containing bookworm
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'BEGIN{RS="";FS="\n"} /(^|\n)Types:[^\n]*deb-src/ && /(^|\n)Suites:[^\n]*bookworm([ \n]|$)/ {found=1} END{exit !found}' "$f" && return 0
	done
	return 1
}
if ! has_debsrc; then
	log "adding /etc/apt/sources.list.d/holdfast-src.sources (deb-src bookworm main)"
	cat >/etc/apt/sources.list.d/holdfast-src.sources <<'SRC'
# Added by holdfast scripts/bench/build-passthrough-hp.sh: source packages
# (apt-get source fuse3) for the benchmark's libfuse passthrough_hp peer.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

# 2. apt-get update only if the source record is unknown.
srcver() { apt-cache showsrc fuse3 2>/dev/null | awk '/^Version:/{print $2; exit}'; }
if [ -z "$(srcver)" ]; then
	log "apt-get update (source lists)"
	apt-get update -qq >/dev/null || log "apt-get update failed; trying the cached lists"
fi
sv=$(srcver)
[ -n "$sv" ] || die "apt knows no source package fuse3 (deb-src missing or update failed)"
srcup=${sv%%-*}; srcup=${srcup#*:}
if [ "$upver" != unknown ] && [ "$srcup" != "$upver" ]; then
	log "note: source fuse3 $sv differs from installed libfuse3 $ver; building the source's version"
fi
upver=$srcup
dir=$PEERS/fuse3-$upver
bin=$(binpath "$dir")
if cached "$dir"; then echo "$bin"; exit 0; fi

# 3. Fetch the source (into a temp dir, then move, so a failed run leaves no half tree).
mkdir -p "$PEERS"
if [ ! -f "$dir/meson.build" ]; then
	tmp=$(mktemp -d "$PEERS/.fetch.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	log "apt-get source fuse3=$sv"
	# _apt cannot write into root's cache: download as root explicitly.
	(cd "$tmp" && apt-get source -qq "fuse3=$sv" >&2 2>"$tmp/apt.log") \
		|| { cat "$tmp/apt.log" >&2; die "apt-get source fuse3 failed"; }
	src=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d -name 'fuse3-*' | head -n1)
	{ [ -n "$src" ] && [ -f "$src/meson.build" ]; } || die "unpacked source not found in $tmp"
	rm -rf "$dir"
	mv "$src" "$dir"
	rm -rf "$tmp"
	trap - EXIT
fi

# 4. Configure + build only the example (and the library it links against).
# We link against the source tree's own libfuse (built as part of the same
# meson project), so the peer is exactly upstream 3.14 (+ Debian patches).
cd "$dir"
if [ -d build ] && [ "$(cat build/.holdfast-recipe 2>/dev/null)" != "$RECIPE" ]; then
	log "cached build is from another recipe: rebuilding"
	rm -rf build
fi
if [ ! -f build/build.ninja ]; then
	log "meson setup ($dir/build)"
	meson setup build --buildtype=release -Dexamples=true -Dutils=false -Dtests=false \
		-Dcpp_args="$EXAMPLE_CPPFLAGS" >build-setup.log 2>&1 \
		|| { tail -30 build-setup.log >&2; die "meson setup failed (log: $dir/build-setup.log)"; }
fi
stock=build/example/passthrough_hp
if [ ! -x "$stock" ]; then
	log "ninja example/passthrough_hp"
	ninja -C build example/passthrough_hp >build-ninja.log 2>&1 \
		|| { tail -30 build-ninja.log >&2; die "build failed (log: $dir/build-ninja.log)"; }
fi
[ -x "$stock" ] || die "build produced no $dir/$stock"

if [ "$variant" = auto ]; then
	# Patched copy; every substitution must hit exactly once, or we stop
	# rather than benchmark something we did not mean to.
	mkdir -p build/holdfast
	cp example/passthrough_hp.cc build/holdfast/passthrough_hp_auto.cc
	f=build/holdfast/passthrough_hp_auto.cc
	sub() { # sub OLD NEW: fixed-string replace, exactly one occurrence
		local n
		n=$(grep -cF -- "$1" "$f" || true)
		[ "$n" = 1 ] || die "patch for auto variant: '$1' found $n times in passthrough_hp.cc"
		OLD=$1 NEW=$2 perl -0pi -e 's/\Q$ENV{OLD}\E/$ENV{NEW}/' "$f"
	}
	sub 'fs.timeout = options.count("nocache") ? 0 : 86400.0;' \
	    'fs.timeout = options.count("nocache") ? 0 : 1.0; /* holdfast: --cache auto */'
	sub 'if (fs.timeout && conn->capable & FUSE_CAP_WRITEBACK_CACHE)' \
	    'if (0 /* holdfast: no writeback */ && conn->capable & FUSE_CAP_WRITEBACK_CACHE)'
	sub 'if (fs.timeout && (fi->flags & O_ACCMODE) == O_WRONLY) {' \
	    'if (0 /* holdfast: no writeback */ && (fi->flags & O_ACCMODE) == O_WRONLY) {'
	sub 'if (fs.timeout && fi->flags & O_APPEND)' \
	    'if (0 /* holdfast: no writeback */ && fi->flags & O_APPEND)'
	sub 'fi->keep_cache = (fs.timeout != 0);' \
	    'fi->keep_cache = 0; /* holdfast: auto */'
	sub 'if(fs.timeout) {' \
	    'if(0 /* holdfast: auto, no keep_cache/cache_readdir on dirs */) {'
	log "c++ passthrough_hp_auto"
	# Same flags meson uses for the stock example (see compile_commands.json).
	c++ -std=c++11 -O3 -Wall -Wno-sign-compare -D_FILE_OFFSET_BITS=64 -D_REENTRANT \
		-DHAVE_CONFIG_H -D_GNU_SOURCE $EXAMPLE_CPPFLAGS -fno-strict-aliasing -pthread \
		-Iexample -Ibuild -Iinclude -Ilib -I. \
		-o build/holdfast/passthrough_hp_auto "$f" \
		-Wl,-rpath,"$dir/build/lib" -Lbuild/lib -lfuse3 -ldl -lrt \
		>build-auto.log 2>&1 \
		|| { tail -30 build-auto.log >&2; die "auto variant build failed (log: $dir/build-auto.log)"; }
fi
[ -x "$bin" ] || die "build produced no $bin"
echo "$RECIPE" >build/.holdfast-recipe
echo "$bin"
