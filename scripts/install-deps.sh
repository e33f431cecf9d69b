#!/usr/bin/env bash
# Install every Debian package holdfast needs to build, test, demo and benchmark.
# Idempotent and fast when everything is present: dpkg is asked first, apt only
# runs for what is missing.  A package that fails to install is named.
set -euo pipefail

# Grouped by purpose so a reader sees why each package is here.
BUILD="build-essential g++ cmake ninja-build pkg-config liburing-dev libfuse3-dev"
RUNTIME="fuse3 attr acl"
TEST="libgtest-dev googletest xz-utils"
BENCH="fio meson dpkg-dev"

want="$BUILD $RUNTIME $TEST $BENCH $*"

missing=()
for p in $want; do
	# "install ok installed" is the only state that means the package works.
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}" >&2
	echo "install-deps: run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
# A stale package list makes apt fail with 404s; refresh once per run.
apt-get update -qq >/dev/null || echo "install-deps: apt-get update failed, trying the cached lists" >&2
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/holdfast-apt.log 2>&1; then
	# Retry one by one so the failing package is named, not just "apt failed".
	for p in "${missing[@]}"; do
		if ! apt-get install -y -qq --no-install-recommends "$p" >>/tmp/holdfast-apt.log 2>&1; then
			echo "install-deps: failed to install Debian package '$p' (log: /tmp/holdfast-apt.log)" >&2
			exit 1
		fi
	done
fi
echo "install-deps: done"
