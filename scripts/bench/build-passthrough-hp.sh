#!/usr/bin/env bash
# Build libfuse's example/passthrough_hp (the peer columns of the benchmark)
# from Debian's fuse3 source package, into the ignored cache:
#   ${HOLDFAST_CACHE:-$HOME/.cache/holdfast}/peers/fuse3-<version>/
# Idempotent: a cached binary is reused.  Prints the binary path on stdout
# (and nothing else); progress goes to stderr.
#
#   build-passthrough-hp.sh [--suite=SUITE] [--variant=stock|auto] [--refresh]
#
#   --suite=bookworm (default)  the source of the installed libfuse3 (3.14 on
#       bookworm), through the system's apt sources.
#   --suite=sid (or trixie, ...)  the newest fuse3 of that suite (sid: 3.18,
#       with FUSE-over-io_uring `-o io_uring` and kernel passthrough, on by
#       default, `--nopassthrough` to turn it off).  Fetched through a private
#       apt configuration under peers/apt-SUITE/ (one deb-src entry, its own
#       lists and caches): the system's sources, its default release and its
#       libfuse3 are not touched.  The version found first is recorded in
#       peers/fuse3-SUITE.version and reused; --refresh asks the index again.
#       The binary runs against the libfuse built next to it (meson's rpath),
#       never the system's.  Built with io_uring support or not at all:
#       liburing-dev and libnuma-dev must be installed (bookworm's liburing
#       2.3 is enough: 3.18's meson only checks for IORING_SETUP_SQE128).
#   --variant=stock  example/passthrough_hp as shipped.
#   --variant=auto   passthrough_hp_auto: the same source with one change of
#       policy, to match holdfastd's default `--cache auto` (virtiofsd's
#       "auto"): entry/attr timeouts 1 s instead of 86400 s, no writeback
#       cache (so no O_WRONLY->O_RDWR / O_APPEND rewriting either), no
#       keep_cache / cache_readdir on open.  Everything else (splice,
#       multithreaded loop, default_permissions, 3.18's passthrough and
#       io_uring) is stock.  Neither 3.14 nor 3.18 has an option for this:
#       both offer only "--nocache" (0 s) or the default (86400 s +
#       writeback), hence the patched copy.
#   --refresh        non-default suites: look the suite's version up again.
#
# Needs (scripts/install-deps.sh installs them): dpkg-dev (dpkg-source),
# meson, ninja-build, g++, pkg-config, libfuse3-dev; for 3.18 liburing-dev,
# libnuma-dev.  For bookworm it adds a deb-src entry when none exists, and
# runs `apt-get update` only when the fuse3 source record is not known yet.
set -euo pipefail

log() { echo "build-passthrough-hp: $*" >&2; }
die() { log "error: $*"; exit 1; }

variant=stock
suite=bookworm
refresh=0
for arg in "$@"; do
	case "$arg" in
	--variant=stock) variant=stock ;;
	--variant=auto) variant=auto ;;
	--suite=*) suite=${arg#*=} ;;
	--refresh) refresh=1 ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//;/^set -e/d'; exit 0 ;;
	*) die "unknown argument '$arg' (use --suite=SUITE, --variant=stock|auto, --refresh)" ;;
	esac
done
[[ "$suite" =~ ^[a-z][a-z0-9-]*$ ]] || die "--suite wants a Debian suite name (bookworm, trixie, sid), not '$suite'"

CACHE=${HOLDFAST_CACHE:-${HOME:-/root}/.cache/holdfast}
PEERS=$CACHE/peers

# Bump RECIPE whenever the way we configure, patch or compile changes: a
# cached build with another recipe is thrown away and rebuilt.
#   2: -DHAVE_UTIMENSAT for the examples.  3.14's meson build puts it in
#      fuse_config.h, which the examples do not include, so passthrough_hp
#      answers SETATTR(times) on a file that is not open with EOPNOTSUPP
#      (`tar x` fails with "Cannot utime").  A build fix, not a policy change.
#      3.18's C++ code does include fuse_config.h (HAVE_LIBFUSE_PRIVATE_CONFIG_H
#      in its cpp project arguments): no flag there, see example_cppflags.
#   3: the auto variant is compiled and linked with the very commands meson
#      uses for the stock example (taken from `ninja -t commands`), so the
#      two differ only by the patch, on 3.14 and 3.18 alike.
RECIPE=3

example_cppflags() { # in the source tree: extra flags for the C++ examples
	# The add_project_arguments(... language: 'cpp') call of meson.build.
	awk '/add_project_arguments\(/ { b = "" } { b = b $0 }
		/language: *.cpp./ && b ~ /HAVE_LIBFUSE_PRIVATE_CONFIG_H/ { found = 1 }
		END { exit !found }' meson.build || echo "-DHAVE_UTIMENSAT"
}

cached() { # cached DIR: the binary exists and was built by this recipe
	[ -x "$(binpath "$1")" ] && [ "$(cat "$1/build/.holdfast-recipe" 2>/dev/null)" = "$RECIPE" ]
}

binpath() {
	if [ "$variant" = auto ]; then echo "$1/build/holdfast/passthrough_hp_auto"
	else echo "$1/build/example/passthrough_hp"; fi
}

upstream() { local v=${1%%-*}; echo "${v#*:}"; } # 1:3.14.0-4 -> 3.14.0

need_tools() {
	[ "$(id -u)" -eq 0 ] || die "must run as root (apt sources, apt-get update)"
	local t
	for t in dpkg-source meson ninja g++ pkg-config; do
		command -v "$t" >/dev/null || die "missing '$t' (run scripts/install-deps.sh)"
	done
}

if [ "$suite" = bookworm ]; then
	# Version: the one installed (libfuse3-dev) pins which source we want,
	# so the peer is built from the same release as the system library.
	ver=$(dpkg-query -W -f='${Version}' libfuse3-dev 2>/dev/null || true)
	[ -n "$ver" ] || ver=$(dpkg-query -W -f='${Version}' fuse3 2>/dev/null || true)
	upver=$(upstream "$ver")
	[ -n "$upver" ] || upver=unknown

	# Fast path: a cached build for the installed version.
	if [ "$upver" != unknown ] && cached "$PEERS/fuse3-$upver"; then
		binpath "$PEERS/fuse3-$upver"
		exit 0
	fi
	need_tools

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
	APT=()
else
	# Another suite: a private apt configuration, so the system's apt never
	# sees it (no sid entry that `apt-get source X` elsewhere could pick).
	aptdir=$PEERS/apt-$suite
	verfile=$PEERS/fuse3-$suite.version
	if [ "$refresh" = 0 ] && [ -s "$verfile" ]; then
		ver=$(cat "$verfile")
		upver=$(upstream "$ver")
		if cached "$PEERS/fuse3-$upver"; then
			binpath "$PEERS/fuse3-$upver"
			exit 0
		fi
	fi
	need_tools
	mkdir -p "$aptdir/sources" "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
	cat >"$aptdir/sources/holdfast-$suite-src.sources" <<SRC
# holdfast scripts/bench/build-passthrough-hp.sh --suite=$suite: the fuse3
# source package for the benchmark's passthrough_hp peer.  Private to this
# directory (apt -o Dir::Etc::SourceParts=...); not a system apt source.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	APT=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$aptdir/sources"
		-o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache"
		-o APT::Sandbox::User=root) # _apt cannot write into root's cache
	[ "$refresh" = 0 ] || rm -f "$aptdir/lists/"*Sources* "$verfile"
	ver=""
	upver=unknown
fi

# 2. apt-get update only if the source record is unknown.  With several
# records, the installed version (bookworm) or else the newest one.
srcver() {
	local all
	all=$(apt-cache "${APT[@]}" showsrc fuse3 2>/dev/null | awk '/^Package: /{p=$2} /^Version:/ && p == "fuse3" {print $2}')
	if [ -n "$ver" ] && grep -qxF -- "$ver" <<<"$all"; then echo "$ver"; return; fi
	sort -V <<<"$all" | tail -n1
}
if [ -z "$(srcver)" ]; then
	log "apt-get update (source lists${APT[*]:+ of $suite, private})"
	apt-get "${APT[@]}" update -qq >/dev/null || log "apt-get update failed; trying the cached lists"
fi
sv=$(srcver)
[ -n "$sv" ] || die "apt knows no source package fuse3 in $suite (deb-src missing or update failed)"
srcup=$(upstream "$sv")
if [ "$upver" != unknown ] && [ "$srcup" != "$upver" ]; then
	log "note: source fuse3 $sv differs from installed libfuse3 $ver; building the source's version"
fi
upver=$srcup
[ "$suite" = bookworm ] || echo "$sv" >"$verfile"
dir=$PEERS/fuse3-$upver
bin=$(binpath "$dir")
if cached "$dir"; then echo "$bin"; exit 0; fi

# 3. Fetch the source (into a temp dir, then move, so a failed run leaves no half tree).
mkdir -p "$PEERS"
if [ ! -f "$dir/meson.build" ]; then
	tmp=$(mktemp -d "$PEERS/.fetch.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	log "apt-get source fuse3=$sv ($suite)"
	# _apt cannot write into root's cache: download as root explicitly.
	(cd "$tmp" && apt-get -o APT::Sandbox::User=root "${APT[@]}" source -qq "fuse3=$sv" >&2 2>"$tmp/apt.log") \
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
# meson project, found through meson's rpath), so the peer is exactly that
# upstream release (+ Debian patches), whatever libfuse3 the system has.
cd "$dir"
if [ -d build ] && [ "$(cat build/.holdfast-recipe 2>/dev/null)" != "$RECIPE" ]; then
	log "cached build is from another recipe: rebuilding"
	rm -rf build
fi
if [ ! -f build/build.ninja ]; then
	log "meson setup ($dir/build)"
	meson setup build --buildtype=release -Dexamples=true -Dutils=false -Dtests=false \
		-Dcpp_args="$(example_cppflags)" >build-setup.log 2>&1 \
		|| { tail -30 build-setup.log >&2; die "meson setup failed (log: $dir/build-setup.log)"; }
fi
# A release that can speak FUSE-over-io_uring (meson option enable-io-uring,
# 3.18) must have been configured with it: otherwise `-o io_uring` would
# silently serve over /dev/fuse and the io_uring columns would lie.
if grep -q "enable-io-uring" meson_options.txt && ! grep -q '^#define HAVE_URING' build/fuse_config.h; then
	rm -rf build
	die "fuse3 $upver configured without io_uring support: install liburing-dev and libnuma-dev (scripts/install-deps.sh), then run again"
fi
stock=build/example/passthrough_hp
if [ ! -x "$stock" ]; then
	log "ninja example/passthrough_hp"
	ninja -C build example/passthrough_hp >build-ninja.log 2>&1 \
		|| { tail -30 build-ninja.log >&2; die "build failed (log: $dir/build-ninja.log)"; }
fi
[ -x "$stock" ] || die "build produced no $dir/$stock"

if [ "$variant" = auto ]; then
	# Patched copy; of each list of alternatives (one per libfuse release),
	# exactly one must hit exactly once, or we stop rather than benchmark
	# something we did not mean to.
	mkdir -p build/holdfast
	f=build/holdfast/passthrough_hp_auto.cc
	cp example/passthrough_hp.cc "$f"
	sub() { # sub OLD NEW [OLD NEW]...: fixed-string replace of the one OLD present
		local n hits=0 old="" new="" all=""
		while [ $# -gt 0 ]; do
			n=$(grep -cF -- "$1" "$f" || true)
			all="$all '$1' ($n)"
			if [ "$n" != 0 ]; then hits=$((hits + 1)); [ "$n" = 1 ] && { old=$1; new=$2; }; fi
			shift 2
		done
		{ [ "$hits" = 1 ] && [ -n "$old" ]; } \
			|| die "patch for auto variant: want exactly one of$all once in passthrough_hp.cc"
		OLD=$old NEW=$new perl -0pi -e 's/\Q$ENV{OLD}\E/$ENV{NEW}/' "$f"
	}
	sub 'fs.timeout = options.count("nocache") ? 0 : 86400.0;' \
	    'fs.timeout = options.count("nocache") ? 0 : 1.0; /* holdfast: --cache auto */'
	sub 'if (fs.timeout && conn->capable & FUSE_CAP_WRITEBACK_CACHE)' \
	    'if (0 /* holdfast: no writeback */ && conn->capable & FUSE_CAP_WRITEBACK_CACHE)' \
	    'if (fs.timeout && !fs.passthrough)' \
	    'if (0 /* holdfast: no writeback */ && !fs.passthrough)'
	sub 'if (fs.timeout && (fi->flags & O_ACCMODE) == O_WRONLY) {' \
	    'if (0 /* holdfast: no writeback */ && (fi->flags & O_ACCMODE) == O_WRONLY) {'
	sub 'if (fs.timeout && fi->flags & O_APPEND)' \
	    'if (0 /* holdfast: no writeback */ && fi->flags & O_APPEND)'
	sub 'fi->keep_cache = (fs.timeout != 0);' \
	    'fi->keep_cache = 0; /* holdfast: auto */'
	sub 'if(fs.timeout) {' \
	    'if(0 /* holdfast: auto, no keep_cache/cache_readdir on dirs */) {' \
	    'if (fs.timeout) {' \
	    'if (0 /* holdfast: auto, no keep_cache/cache_readdir on dirs */) {'
	# Compile and link with meson's own commands for the stock example,
	# only the source and the object/binary names changed.
	cmds=$(ninja -C build -t commands example/passthrough_hp)
	ccmd=$(grep -E ' -c [^ ]*example/passthrough_hp\.cc$' <<<"$cmds" | tail -n1)
	lcmd=$(grep -E '^c\+\+ .*-o example/passthrough_hp ' <<<"$cmds" | tail -n1)
	{ [ -n "$ccmd" ] && [ -n "$lcmd" ]; } || die "cannot find meson's compile/link commands for example/passthrough_hp"
	obj=example/passthrough_hp.p/passthrough_hp.cc.o
	ccmd=${ccmd//"$obj"/holdfast/passthrough_hp_auto.o}
	ccmd="${ccmd% -c *} -c holdfast/passthrough_hp_auto.cc"
	lcmd=${lcmd//"$obj"/holdfast/passthrough_hp_auto.o}
	lcmd=${lcmd/"-o example/passthrough_hp "/"-o holdfast/passthrough_hp_auto "}
	# The stock example's rpath is $ORIGIN/../lib: from build/holdfast/ that
	# is build/lib too.
	log "c++ passthrough_hp_auto"
	(cd build && echo "$ccmd" && eval "$ccmd" && echo "$lcmd" && eval "$lcmd") >build-auto.log 2>&1 \
		|| { tail -30 build-auto.log >&2; die "auto variant build failed (log: $dir/build-auto.log)"; }
fi
[ -x "$bin" ] || die "build produced no $bin"
echo "$RECIPE" >build/.holdfast-recipe
echo "$bin"
