#!/usr/bin/env bash
# The unit tests and the host selftests once more, against an ASan + UBSan
# build (build/asan, -DHOLDFAST_SANITIZE=ON, every UBSan finding fatal),
# then the "tsan" suite: scripts/check-tsan.sh (the unit tests and the
# multi-threaded host selftests against a ThreadSanitizer build).
# Ends with one line "N passed, N failed", like scripts/check.sh.
#
#   scripts/check-asan.sh              unit + host + tsan
#   scripts/check-asan.sh unit         only the unit tests (ASan)
#   scripts/check-asan.sh tsan         only scripts/check-tsan.sh
#
# A sanitizer report fails the run even when no test noticed it: the fd
# store restarts a server that died of an ASan abort, and the tests would
# pass on the restarted one.  So every process writes its reports to
# $log/san.<pid> (ASAN_OPTIONS/UBSAN_OPTIONS log_path) and each report
# found there counts as one failure and is printed.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
root=${BUILD:-$top/build}
build=$root/asan
t0=$(date +%s)
mkdir -p "$build"

[ $# -gt 0 ] || set -- unit host tsan
# The ASan build is needed unless only the tsan suite runs.
asan_needed=false
for s in "$@"; do [ "$s" = tsan ] || asan_needed=true; done

if $asan_needed && [ ! -f "$build/userspace/build.ninja" ]; then
	cmake -S "$top/userspace" -B "$build/userspace" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DHOLDFAST_SANITIZE=ON -DCMAKE_CXX_FLAGS="-fno-sanitize-recover=all" \
		>"$build.configure.log" 2>&1 || {
		cat "$build.configure.log" >&2
		echo "0 passed, 1 failed"
		exit 1
	}
fi
# holdfast-fdstore must sit next to holdfastd: the server re-executes
# itself under the store it finds there.
if $asan_needed && ! ninja -C "$build/userspace" holdfast_unit_tests holdfastd holdfastctl \
	holdfast-fdstore >"$build/ninja.log" 2>&1; then
	tail -40 "$build/ninja.log" >&2
	echo "check-asan: build failed"
	echo "0 passed, 1 failed"
	exit 1
fi
for s in "$@"; do
	if [ "$s" = host ]; then
		# The selftest clients themselves need no sanitizer; build them as usual.
		make -s -C "$top/selftests" O="$root/selftests" >/dev/null || {
			echo "check-asan: selftests failed to build"
			echo "0 passed, 1 failed"
			exit 1
		}
	fi
done
echo "check-asan: built in $(($(date +%s) - t0)) s"

log=$(mktemp -d /tmp/holdfast-asan.XXXXXX)
# Leaks are reported by the unit tests only: the daemons leave through
# exit paths (quick_exit on handover, exec) that LSan cannot judge.
export ASAN_OPTIONS="log_path=$log/san:abort_on_error=1:detect_leaks=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="log_path=$log/san:print_stacktrace=1:halt_on_error=1"
export HOLDFASTD=$build/userspace/holdfastd
export HOLDFASTCTL=$build/userspace/holdfastctl
export O=$root/selftests

# check.sh finds the unit test binary under $BUILD/userspace; one suite at
# a time, since only the unit tests are checked for leaks.
pass=0
fail=0
for suite in "$@"; do
	out=$log/$suite.txt
	opts=$ASAN_OPTIONS
	[ "$suite" = unit ] && opts="$opts:detect_leaks=1"
	if [ "$suite" = tsan ]; then
		BUILD=$root "$top/scripts/check-tsan.sh"
	else
		ASAN_OPTIONS=$opts BUILD=$build "$top/scripts/check.sh" "$suite"
	fi 2>&1 | tee "$out" | grep -v '^[0-9]* passed, [0-9]* failed$'
	last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -1)
	p=$(echo "$last" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
	f=$(echo "$last" | sed -n 's/^[0-9]* passed, \([0-9]*\) failed.*/\1/p')
	if [ -z "$p" ]; then
		echo "check-asan: $suite: no totals"
		p=0
		f=1
	fi
	echo "check-asan: $suite: $p passed, $f failed"
	pass=$((pass + p))
	fail=$((fail + f))
done

reports=$(ls "$log"/san.* 2>/dev/null | wc -l)
if [ "$reports" -gt 0 ]; then
	echo "check-asan: $reports sanitizer report(s):"
	for r in "$log"/san.*; do
		echo "--- $r"
		grep -E 'ERROR|SUMMARY|runtime error|^    #[0-9] ' "$r" | head -15
	done
	fail=$((fail + reports))
fi
echo "check-asan: $(($(date +%s) - t0)) s; logs: $log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
