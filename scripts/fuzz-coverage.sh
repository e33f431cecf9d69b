#!/usr/bin/env bash
# Line/region coverage of userspace/src reached by the fuzz corpora:
# builds the fuzz targets once more with clang's source-based coverage
# (build/fuzz-cov), replays each target's corpus (the committed seeds plus
# what scripts/fuzz.sh found in build/fuzz/corpus/<target>) without
# fuzzing, and prints llvm-cov's per-file report.
#
#   scripts/fuzz-coverage.sh                  every target, one report each
#   scripts/fuzz-coverage.sh fuzz_engine      one target
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
root=${BUILD:-$top/build}
build=$root/fuzz-cov
all=(fuzz_request fuzz_engine fuzz_region fuzz_vhost_msg fuzz_virtqueue fuzz_migration)
[ $# -gt 0 ] && all=("$@")
cov="-fprofile-instr-generate -fcoverage-mapping"

if [ ! -f "$build/build.ninja" ]; then
	cmake -S "$top/userspace" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DCMAKE_CXX_COMPILER=clang++-14 \
		-DHOLDFAST_FUZZ=ON -DCMAKE_CXX_FLAGS="$cov" \
		-DCMAKE_EXE_LINKER_FLAGS="-fprofile-instr-generate" >/dev/null
fi
ninja -C "$build" "${all[@]}" >/dev/null

for t in "${all[@]}"; do
	prof=$build/prof/$t
	rm -rf "$prof"
	mkdir -p "$prof"
	dirs=("$top/userspace/fuzz/corpus/$t")
	[ -d "$root/fuzz/corpus/$t" ] && dirs+=("$root/fuzz/corpus/$t")
	# -runs=0: execute the corpus once, no mutation.  A crashing input ends
	# the run without a profile: known bugs stay avoided (HOLDFAST_FUZZ_AVOID).
	LLVM_PROFILE_FILE="$prof/%p.profraw" ASAN_OPTIONS=detect_leaks=0 \
		"$build/fuzz/$t" -runs=0 "${dirs[@]}" >"$prof/run.log" 2>&1 || true
	llvm-profdata-14 merge -sparse "$prof"/*.profraw -o "$prof/merged.profdata"
	echo "=== $t ($(find "${dirs[@]}" -type f | wc -l) corpus inputs)"
	llvm-cov-14 report "$build/fuzz/$t" -instr-profile="$prof/merged.profdata" \
		"$top/userspace/src" 2>/dev/null |
		sed "s|$top/userspace/src/||" | awk 'NR<=2 || /^(fuse|fs|state|fdstore|util|transport)\// || /^TOTAL/'
done
