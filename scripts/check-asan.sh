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
# shellcheck source=sanitize-lib.sh
. "$top/scripts/sanitize-lib.sh"

[ $# -gt 0 ] || set -- unit host tsan
# The ASan build is needed unless only the tsan suite runs.
asan_needed=false
for s in "$@"; do [ "$s" = tsan ] || asan_needed=true; done

if $asan_needed; then
	san_build check-asan "$build" -DHOLDFAST_SANITIZE=ON \
		-DCMAKE_CXX_FLAGS="-fno-sanitize-recover=all"
fi
san_selftests check-asan "$@"
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
	san_tally check-asan "$suite" "$out"
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
