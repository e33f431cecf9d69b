#!/usr/bin/env bash
# Recovery time of holdfastd with N inodes known to the kernel.
# Usage: recovery.sh [N...]   (default: 1000 100000 1000000)
# For each N: N files (in directories of 1000) are created on the host,
# listed through the mount with READDIRPLUS so every one holds a kernel
# reference (a live slot in the inode table), then the serving process is
# SIGKILLed 5 times.  Reported per kill: the server's own attach time, the
# store's death-to-serving time, and the longest stall a client saw (a
# loop of stat() calls timing each one).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BUILD:-$top/build}/userspace
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 100000 1000000)
work=$(mktemp -d /tmp/holdfast-rbench.XXXXXX)
pid=
cleanup() {
	set +e
	[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && sleep 0.5
	mountpoint -q "$work/mnt" && umount -l "$work/mnt"
	mountpoint -q "$work" && umount -l "$work"
	rm -rf "$work"
}
trap cleanup EXIT
mount -t tmpfs -o size=8g tmpfs "$work"
cc -O2 -o "$work/statloop" -x c - <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
/* stat() a name that does not exist (negative lookups are not cached, so
 * every call reaches the server) until STOPFILE exists; print the longest
 * call (ms), the number of calls, and the calls that failed otherwise. */
#include <errno.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
int main(int c, char **v) {
	struct stat st; double worst = 0; long n = 0, fails = 0;
	while (access(v[2], F_OK) != 0) {
		double t0 = now();
		if (stat(v[1], &st) == 0 || errno != ENOENT) fails++;
		double d = now() - t0; if (d > worst) worst = d; n++;
	}
	printf("%.2f %ld %ld\n", worst, n, fails);
	return 0;
}
C
upgrades=()
printf '| inodes known | kills | attach ms (median/max) | crash-to-serving ms (median/max) | worst client stall ms | failed stats |\n'
printf '|---|---|---|---|---|---|\n'
for n in "${sizes[@]}"; do
	rm -rf "$work/src" "$work/mnt"
	mkdir -p "$work/src" "$work/mnt"
	python3 - "$work/src" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.mkdir(d)
    os.close(os.open(os.path.join(d, "f%d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
PY
	exec 3>"$work/ready"
	"$bin/holdfastd" --shared-dir "$work/src" --mountpoint "$work/mnt" --cache always \
		--max-inodes $((n + 4096)) --ready-fd 3 2>"$work/log" &
	pid=$!
	exec 3>&-
	for _ in $(seq 200); do grep -q ready "$work/ready" 2>/dev/null && break; sleep 0.05; done
	# stat() every file: each LOOKUP is one kernel reference (nlookup) that
	# stays while the dentry is cached (--cache always: a day).
	find "$work/mnt" -printf '%s\n' >/dev/null
	known=$("$bin/holdfastctl" status "$work/mnt" | sed -n 's/.*"inodes":\([0-9]*\).*/\1/p')
	attach=() serving=() worst=0 fails=0
	for k in 1 2 3 4 5; do
		rm -f "$work/stop"
		"$work/statloop" "$work/mnt/d0000/absent" "$work/stop" >"$work/loop.out" &
		loop=$!
		sleep 0.3
		server=$(pgrep -P "$pid" holdfastd)
		kill -9 "$server"
		for _ in $(seq 400); do
			new=$(pgrep -P "$pid" holdfastd || true)
			if [ -n "$new" ] && [ "$new" != "$server" ] &&
				st=$("$bin/holdfastctl" status "$work/mnt" 2>/dev/null) &&
				echo "$st" | grep -q "\"pid\":$new"; then
				break
			fi
			sleep 0.01
		done
		sleep 0.3
		touch "$work/stop"
		wait "$loop"
		read -r w _ f <"$work/loop.out"
		attach+=("$(echo "$st" | sed -n 's/.*"last_attach_ms":\([0-9.]*\).*/\1/p')")
		serving+=("$(echo "$st" | sed -n 's/.*"last_crash_to_serving_ms":\([0-9.]*\).*/\1/p')")
		worst=$(python3 -c "print(max($worst, $w))")
		fails=$((fails + f))
	done
	med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.1f/%.1f", a[int((NR+1)/2)], a[NR]}'; }
	printf '| %s | 5 | %s | %s | %.1f | %d |\n' "$known" "$(med "${attach[@]}")" \
		"$(med "${serving[@]}")" "$worst" "$fails"
	# Live upgrade: the same client loop, during holdfastctl upgrade.
	handover=() uworst=0
	for k in 1 2 3; do
		rm -f "$work/stop"
		"$work/statloop" "$work/mnt/d0000/absent" "$work/stop" >"$work/loop.out" &
		loop=$!
		sleep 0.3
		out=$("$bin/holdfastctl" upgrade "$work/mnt")
		handover+=("$(echo "$out" | sed -n 's/.*"handover_ms":\([0-9.]*\).*/\1/p')")
		sleep 0.3
		touch "$work/stop"
		wait "$loop"
		read -r w _ f <"$work/loop.out"
		uworst=$(python3 -c "print(max($uworst, $w))")
		fails=$((fails + f))
	done
	upgrades+=("| $known | 3 | $(med "${handover[@]}") | $uworst | $fails |")
	kill -TERM "$pid"
	wait "$pid" || true
	pid=
done
printf '\n| inodes known | upgrades | handover ms seen by holdfastctl (median/max) | worst client stall ms | failed stats |\n'
printf '|---|---|---|---|---|\n'
printf '%s\n' "${upgrades[@]}"
