#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the host selftests and finish with one line: "N passed, M failed".
#
#   selftests/run-host.sh              every $O/host/*_test
#   selftests/run-host.sh data locks   only data_test and locks_test
#
# Environment:
#   O             build dir (default <repo>/build/selftests)
#   HOLDFASTD     server binary (default <repo>/build/userspace/holdfastd)
#   HOLDFASTCTL   control tool (default <repo>/build/userspace/holdfastctl)
#   HOLDFAST_LOG_LEVEL  passed to holdfastd as --log-level
#   HOLDFAST_SHOW_LOG=1 print every server log, not only failing tests'
#   HF_BIN_TIMEOUT      seconds per test binary (default 1800); the harness
#                       already bounds every single test, this is a backstop
#
# The TAP of every binary is printed as it runs (stderr merged, so the
# harness's diagnostics stay next to their test).  The exit status is
# non-zero if any test failed, was skipped, or a binary did not finish.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
O=${O:-$root/build/selftests}
export HOLDFASTD=${HOLDFASTD:-$root/build/userspace/holdfastd}
export HOLDFASTCTL=${HOLDFASTCTL:-$root/build/userspace/holdfastctl}

bins=()
if [ $# -gt 0 ]; then
	for n in "$@"; do
		n=${n%_test}
		bins+=("$O/host/${n}_test")
	done
else
	for b in "$O"/host/*_test; do
		[ -x "$b" ] && bins+=("$b")
	done
fi
if [ ${#bins[@]} -eq 0 ]; then
	echo "run-host: no test binaries in $O/host; build them with: make -C selftests" >&2
	echo "0 passed, 1 failed"
	exit 1
fi
[ -x "$HOLDFASTD" ] ||
	echo "# run-host: warning: $HOLDFASTD is not executable; every test will fail" >&2
if [ "$(id -u)" -ne 0 ]; then
	echo "# run-host: not root: the tests will be skipped, which counts as failed" >&2
fi

logs=$(mktemp -d /tmp/holdfast-ksft.XXXXXX)
trap 'rm -rf "$logs"' EXIT
rc=0
for b in "${bins[@]}"; do
	name=$(basename "$b")
	log=$logs/$name.tap
	if [ ! -x "$b" ]; then
		echo "# run-host: $b missing" | tee "$log"
		# A plan with no results: ksft-totals counts one error for it.
		printf 'TAP version 13\n1..1\n' >>"$log"
		rc=1
		continue
	fi
	echo "# ==== $name"
	timeout -k 10 "${HF_BIN_TIMEOUT:-1800}" "$b" 2>&1 | tee "$log"
	st=${PIPESTATUS[0]}
	if [ "$st" -eq 124 ] || [ "$st" -eq 137 ]; then
		echo "# run-host: $name killed after ${HF_BIN_TIMEOUT:-1800}s" | tee -a "$log"
	fi
	[ "$st" -ne 0 ] && rc=1
done

"$root/scripts/ksft-totals.sh" "$logs"/*.tap
trc=$?
[ $trc -ne 0 ] && rc=1
exit $rc
