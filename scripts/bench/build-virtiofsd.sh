#!/usr/bin/env bash
# Provide virtiofsd (the peer of the VM benchmark, scripts/bench/vm.sh).
# Debian bookworm has no virtiofsd package (nor does bookworm-backports), so
# it comes from a minimal trixie debootstrap in the ignored cache:
#   ${HOLDFAST_CACHE:-$HOME/.cache/holdfast}/peers/trixie/
# The binary is run on this host through the chroot's own dynamic loader
# (see virtiofsd_cmd below), so no chroot, bind mount or pivot_root is
# needed at run time and virtiofsd keeps its default namespace sandbox.
#
# Idempotent: a finished chroot (marked by .holdfast-ok) is reused; a
# half-built one (interrupted debootstrap) is removed and built again.
# Installs debootstrap on the host with apt-get when it is missing.
#
#   build-virtiofsd.sh           prints the command prefix that runs
#                                virtiofsd, one word per line
#   build-virtiofsd.sh --version prints virtiofsd's version
# Progress goes to stderr.  Needs root and the Debian archive.
set -euo pipefail

log() { echo "build-virtiofsd: $*" >&2; }
die() { log "error: $*"; exit 1; }

CACHE=${HOLDFAST_CACHE:-${HOME:-/root}/.cache/holdfast}
R=$CACHE/peers/trixie
MIRROR=${HOLDFAST_DEBIAN_MIRROR:-http://deb.debian.org/debian}

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"

unmount_all() {
	local m
	for m in "$R/sys" "$R/dev" "$R/proc"; do
		mountpoint -q "$m" 2>/dev/null && umount -l "$m"
	done
	return 0
}

if [ ! -f "$R/.holdfast-ok" ] || [ ! -x "$R/usr/libexec/virtiofsd" ]; then
	if ! command -v debootstrap >/dev/null; then
		log "installing debootstrap"
		DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >&2 ||
			{ apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >&2; } ||
			die "cannot install debootstrap"
	fi
	[ -e /usr/share/debootstrap/scripts/trixie ] || die "this debootstrap has no trixie script"
	unmount_all
	if [ -e "$R" ]; then
		log "removing the unfinished chroot $R"
		rm -rf --one-file-system "$R"
	fi
	mkdir -p "$(dirname "$R")"
	log "debootstrap --variant=minbase trixie $R (about 30 s)"
	debootstrap --variant=minbase trixie "$R.tmp" "$MIRROR" >"$CACHE/peers/trixie-debootstrap.log" 2>&1 ||
		{ tail -20 "$CACHE/peers/trixie-debootstrap.log" >&2; rm -rf --one-file-system "$R.tmp"; die "debootstrap failed"; }
	mv "$R.tmp" "$R"
	trap unmount_all EXIT
	mount --bind /proc "$R/proc"
	mount --bind /dev "$R/dev"
	mount --bind /sys "$R/sys"
	log "apt-get install virtiofsd (inside the chroot)"
	chroot "$R" apt-get update >&2
	chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends virtiofsd >&2
	chroot "$R" apt-get clean >&2
	unmount_all
	trap - EXIT
	[ -x "$R/usr/libexec/virtiofsd" ] || die "no /usr/libexec/virtiofsd after the install"
	chroot "$R" dpkg-query -W -f='${Version}\n' virtiofsd >"$R/.holdfast-ok"
	log "virtiofsd $(cat "$R/.holdfast-ok") ready in $R"
fi

cmd=("$R/lib64/ld-linux-x86-64.so.2" --library-path "$R/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu"
	"$R/usr/libexec/virtiofsd")
if [ "${1:-}" = --version ]; then
	"${cmd[@]}" --version
	exit 0
fi
printf '%s\n' "${cmd[@]}"
