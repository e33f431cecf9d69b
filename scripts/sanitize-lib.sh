#!/usr/bin/env bash
# Shared by scripts/check-asan.sh and scripts/check-tsan.sh (sourced; $top
# is the checkout, $root the build root).  Each script builds its own
# sanitizer build of the unit tests and daemons, runs suites that end with
# "N passed, N failed" and adds them up in $pass and $fail.

# san_abort NAME WHY: the one-line verdict of a run that could not start.
san_abort()
{
	echo "$1: $2"
	echo "0 passed, 1 failed"
	exit 1
}

# san_build NAME DIR CMAKE_ARGS...: configures DIR/userspace once, then
# builds the unit tests, holdfastd, holdfastctl and holdfast-fdstore (which
# must sit next to holdfastd: the server re-executes itself under the store
# it finds there).
san_build()
{
	local name=$1 dir=$2
	shift 2
	mkdir -p "$dir"
	if [ ! -f "$dir/userspace/build.ninja" ]; then
		cmake -S "$top/userspace" -B "$dir/userspace" -G Ninja \
			-DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$dir.configure.log" 2>&1 || {
			cat "$dir.configure.log" >&2
			san_abort "$name" "configure failed"
		}
	fi
	ninja -C "$dir/userspace" holdfast_unit_tests holdfastd holdfastctl holdfast-fdstore \
		>"$dir/ninja.log" 2>&1 || {
		tail -40 "$dir/ninja.log" >&2
		san_abort "$name" "build failed"
	}
}

# san_selftests NAME SUITES...: builds the host selftest clients (no
# sanitizer: they only drive the server) if "host" is among SUITES.
san_selftests()
{
	local name=$1 s
	shift
	for s in "$@"; do
		if [ "$s" = host ]; then
			make -s -C "$top/selftests" O="$root/selftests" >/dev/null ||
				san_abort "$name" "selftests failed to build"
		fi
	done
}

# san_tally NAME SUITE OUT: adds the last "N passed, N failed" line of OUT
# (a suite's output) to $pass and $fail; no such line counts as a failure.
san_tally()
{
	local last p f
	last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$3" | tail -1)
	p=$(echo "$last" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
	f=$(echo "$last" | sed -n 's/^[0-9]* passed, \([0-9]*\) failed.*/\1/p')
	if [ -z "$p" ]; then
		echo "$1: $2: no totals"
		p=0
		f=1
	fi
	echo "$1: $2: $p passed, $f failed"
	pass=$((pass + p))
	fail=$((fail + f))
}
