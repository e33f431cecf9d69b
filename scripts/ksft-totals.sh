#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Turn kselftest TAP into the one closing line CI understands:
#
#   N passed, M failed
#
# Reads TAP from the files given, or from stdin.  Several test binaries may
# be concatenated; each "TAP version" line starts a new one.  For each, the
# harness's own "# Totals: pass:X fail:Y xfail:.. xpass:.. skip:Z error:E"
# line is used; a binary that died before printing it is counted from its
# "ok"/"not ok" lines, and every test its plan ("1..N") announced but never
# reported counts as failed.
#
# Counting: passed = pass + xfail.  failed = fail + xpass + skip + error.
# A skipped test did not show that anything works, so it is not a pass; the
# line before the totals says how many of the failures were skips/errors.
# Exit status: 0 only if nothing failed (and some TAP was seen at all).
set -euo pipefail

awk '
function flush() {
	if (!in_seg)
		return
	if (have_totals) {
		P += t_pass; F += t_fail; XF += t_xfail; XP += t_xpass
		SK += t_skip; ER += t_error
	} else {
		# No Totals line: the binary crashed or was killed.
		P += c_pass; F += c_fail; SK += c_skip
		missing = plan - (c_pass + c_fail + c_skip)
		if (missing > 0)
			ER += missing
		if (plan == 0 && c_pass + c_fail + c_skip == 0)
			ER += 1
		incomplete++
	}
	in_seg = 0
}
function field(s, key,    re) {
	re = key ":[0-9]+"
	if (match(s, re))
		return substr(s, RSTART + length(key) + 1, RLENGTH - length(key) - 1) + 0
	return 0
}
/^TAP version/ {
	flush()
	in_seg = 1; segs++; have_totals = 0; plan = 0
	c_pass = c_fail = c_skip = 0
	next
}
!in_seg { next }
/^1\.\.[0-9]+/ { plan = substr($1, 4) + 0; next }
/^# Totals: / {
	have_totals = 1
	t_pass = field($0, "pass"); t_fail = field($0, "fail")
	t_xfail = field($0, "xfail"); t_xpass = field($0, "xpass")
	t_skip = field($0, "skip"); t_error = field($0, "error")
	next
}
/^not ok [0-9]+/ { c_fail++; next }
/^ok [0-9]+/ {
	if ($0 ~ /# [Ss][Kk][Ii][Pp]/)
		c_skip++
	else
		c_pass++
	next
}
END {
	flush()
	if (segs == 0) {
		print "ksft-totals: no TAP output found" > "/dev/stderr"
		print "0 passed, 0 failed"
		exit 2
	}
	passed = P + XF
	failed = F + XP + SK + ER
	if (SK || ER || XP || incomplete)
		printf("# %d binaries; of the failures: %d skipped, %d errors/missing, %d xpass%s\n",
		       segs, SK, ER, XP,
		       incomplete ? sprintf("; %d binaries ended without totals", incomplete) : "")
	printf("%d passed, %d failed\n", passed, failed)
	exit failed ? 1 : 0
}
' "$@"
