#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan + UBSan, UBSan fatal) and runs
# each for FUZZ_SECONDS, then prints executions, exec/s and coverage per
# target and ends with "fuzz: N passed, N failed" (a target passes when it
# found nothing: no crash, leak, timeout or failed check).
#
#   scripts/fuzz.sh                      every target, FUZZ_SECONDS each
#   scripts/fuzz.sh fuzz_engine          one target
#   FUZZ_SECONDS=600 scripts/fuzz.sh     a longer local run
#
# Environment:
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_ARGS      extra libFuzzer flags (e.g. "-seed=1 -dict=...")
#   BUILD          build root (default <repo>/build); uses BUILD/fuzz
#
# Inputs: the committed seeds in userspace/fuzz/corpus/<target>/ (including
# regressions/, except the files named in regressions/UNFIXED: reproducers
# of bugs not fixed yet, which would fail every run).  New inputs found go
# to BUILD/fuzz/corpus/<target>/ (kept between local runs); a crashing input
# is saved in BUILD/fuzz/artifacts/<target>/ and its path printed.  Every
# crash found must become a file in corpus/<target>/regressions/ and a test
# in userspace/tests/fuzz_regression_test.cc.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$top/build}/fuzz
secs=${FUZZ_SECONDS:-20}
all=(fuzz_request fuzz_engine fuzz_region fuzz_vhost_msg fuzz_virtqueue fuzz_migration)
[ $# -gt 0 ] && all=("$@")

cxx=${FUZZ_CXX:-clang++-14}
cc=${FUZZ_CC:-clang-14}
if ! command -v "$cxx" >/dev/null; then
	echo "fuzz: $cxx not found (Debian: clang-14 libclang-rt-14-dev; make deps)" >&2
	echo "fuzz: 0 passed, 1 failed"
	exit 1
fi

t0=$(date +%s)
mkdir -p "$build"
if [ ! -f "$build/build.ninja" ]; then
	cmake -S "$top/userspace" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
		-DHOLDFAST_FUZZ=ON -DHOLDFAST_SANITIZE=ON \
		-DCMAKE_CXX_FLAGS="-fno-sanitize-recover=all" >"$build.configure.log" 2>&1 || {
		cat "$build.configure.log" >&2
		echo "fuzz: 0 passed, 1 failed"
		exit 1
	}
fi
if ! ninja -C "$build" "${all[@]}" >"$build/ninja.log" 2>&1; then
	tail -40 "$build/ninja.log" >&2
	echo "fuzz: build failed"
	echo "fuzz: 0 passed, 1 failed"
	exit 1
fi
echo "fuzz: built in $(($(date +%s) - t0)) s; $secs s per target"

# Per target: the largest input and the per-input timeout (fuzz_engine
# inputs wait for interrupted lock requests: a few ms each).
max_len() { case $1 in fuzz_engine) echo 16384 ;; fuzz_vhost_msg) echo 8192 ;; fuzz_region) echo 1024 ;; *) echo 4096 ;; esac; }
timeout_s() { case $1 in fuzz_engine) echo 20 ;; *) echo 10 ;; esac; }

pass=0
fail=0
for t in "${all[@]}"; do
	bin=$build/fuzz/$t
	src=$top/userspace/fuzz/corpus/$t
	seeds=$build/seeds/$t
	work=$build/corpus/$t
	art=$build/artifacts/$t
	log=$build/$t.log
	rm -rf "$seeds" "$art"
	mkdir -p "$seeds" "$work" "$art"
	# Seeds, flattened; reproducers of unfixed bugs stay out.
	unfixed=$src/regressions/UNFIXED
	if [ -d "$src" ]; then
		find "$src" -type f ! -name UNFIXED ! -name '*.md' | while read -r f; do
			b=$(basename "$f")
			if [ -f "$unfixed" ] && grep -qx "$b" <(sed 's/[[:space:]]*#.*//' "$unfixed"); then
				continue
			fi
			cp "$f" "$seeds/$(basename "$(dirname "$f")")-$b"
		done
	fi
	# shellcheck disable=SC2086
	timeout -k 10 $((secs + 120)) "$bin" "$work" "$seeds" \
		-max_total_time="$secs" -max_len="$(max_len "$t")" -timeout="$(timeout_s "$t")" \
		-rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$art/" \
		${FUZZ_ARGS:-} >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1)
	crash=$(ls "$art" 2>/dev/null | head -1)
	if [ $rc -eq 0 ] && [ -z "$crash" ] && [ -n "$execs" ]; then
		echo "$t: ok: ${execs} execs, ${rate} exec/s, ${cov:-cov: ?}"
		pass=$((pass + 1))
	else
		echo "$t: FAILED (exit $rc): ${execs:-?} execs, ${rate:-?} exec/s, ${cov:-cov: ?}"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_[a-z]+: )|runtime error|ALARM|Test unit written' \
			"$log" | head -20 | sed 's/^/    /'
		[ -n "$crash" ] && echo "    input: $art/$crash"
		echo "    log: $log"
		fail=$((fail + 1))
	fi
done
echo "fuzz: total $(($(date +%s) - t0)) s"
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
