#!/usr/bin/env bash
# The unit tests and the multi-threaded host selftests once more, against a
# ThreadSanitizer build (build/tsan: -fsanitize=thread, the server, the fd
# store and the unit tests).  Ends with one line "N passed, N failed", like
# scripts/check.sh; scripts/check-asan.sh runs it as its "tsan" suite, so
# `make check` includes it.
#
#   scripts/check-tsan.sh              unit + host
#   scripts/check-tsan.sh unit         only the unit tests
#   TSAN_HOST="data locks" scripts/check-tsan.sh host
#
# Which host selftests: those where holdfastd serves from several threads
# at once (TSAN_HOST, default below): parallel I/O on the /dev/fuse
# readers and the io_uring queues, and spare workers started and parked
# while others wait (workers_test).
#
# A report fails the run even when no test noticed it: every process
# writes its reports to $log/san.<pid> (TSAN_OPTIONS log_path, exitcode=0
# so a report does not change what the tests see) and each report found
# there counts as one failure and is printed.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
root=${BUILD:-$top/build}
build=$root/tsan
t0=$(date +%s)
# shellcheck source=sanitize-lib.sh
. "$top/scripts/sanitize-lib.sh"
# Left out by default, each for a reason of its own (TSAN_HOST="recovery
# locks" runs them):
#  - recovery_test: clean of races, but its kill-during-restart timings do
#    not hold at TSan's speed (rec.kill_during_restart failed 1 run in 2:
#    no resent request seen by the third server).
#  - locks_test: until FLUSH drops POSIX locks synchronously.  The owner's
#    OFD lock lives as long as the fd store's copy of that fd, which the
#    store closes only when it gets to the (asynchronous) FDSTOREREMOVE; at
#    TSan's speed locks.posix_cross_process sees the lock still held after
#    close() returned.
#  - uring_test: TSan's mmap interceptor aborts on the io_uring buffer
#    memfd mapping ("ThreadSanitizer: mmap at bad address"), so the server
#    cannot start a ring under TSan at all.
host_tests=${TSAN_HOST:-data workers}

[ $# -gt 0 ] || set -- unit host

san_build check-tsan "$build" -DCMAKE_CXX_FLAGS="-fsanitize=thread" \
	-DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread"
san_selftests check-tsan "$@"
echo "check-tsan: built in $(($(date +%s) - t0)) s"

log=$(mktemp -d /tmp/holdfast-tsan.XXXXXX)
# Known races, reported and not fixed yet, go here with their fix; any
# other report fails the run.  (None now: status_json vs do_init and
# forget's record flags were fixed.)
: >"$log/suppressions"
export TSAN_OPTIONS="log_path=$log/san:exitcode=0:halt_on_error=0:second_deadlock_stack=1:history_size=4:suppressions=$log/suppressions"
export HOLDFASTD=$build/userspace/holdfastd
export HOLDFASTCTL=$build/userspace/holdfastctl
export O=$root/selftests

pass=0
fail=0
for suite in "$@"; do
	out=$log/$suite.txt
	t1=$(date +%s)
	case $suite in
	unit) BUILD=$build "$top/scripts/check.sh" unit ;;
	# shellcheck disable=SC2086
	host) "$top/selftests/run-host.sh" $host_tests ;;
	*) echo "check-tsan: unknown suite $suite"; echo "0 passed, 1 failed" ;;
	esac 2>&1 | tee "$out" | grep -v '^[0-9]* passed, [0-9]* failed'
	san_tally check-tsan "$suite" "$out"
	echo "check-tsan: $suite: $(($(date +%s) - t1)) s"
done

reports=$(grep -l 'WARNING: ThreadSanitizer' "$log"/san.* 2>/dev/null | wc -l)
if [ "$reports" -gt 0 ]; then
	echo "check-tsan: $reports process(es) with ThreadSanitizer reports:"
	for r in $(grep -l 'WARNING: ThreadSanitizer' "$log"/san.*); do
		echo "--- $r"
		grep -E 'WARNING: ThreadSanitizer|SUMMARY|^    #[0-3] ' "$r" | head -30
	done
	fail=$((fail + reports))
fi
echo "check-tsan: $(($(date +%s) - t0)) s; logs: $log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
