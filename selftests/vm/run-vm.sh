#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot one test VM (QEMU TCG) whose virtio-fs devices are served by
# holdfastd, run the guest side, collect its TAP from the serial console,
# and always tear everything down.  Ends with "N passed, N failed".
#
#   selftests/vm/run-vm.sh [options]
#     --kernel 6.1|6.12      guest kernel series (default 6.12)
#     --run smoke|suite|bench   what the guest runs (default smoke)
#     --dev TAG[:OPTS]       a virtio-fs device served by its own holdfastd,
#                            OPTS = extra holdfastd options, comma-separated
#                            (e.g. never:--cache=never); repeatable.
#                            Default: one device "auto".
#     --queues N             request queues per device (default 1)
#     --smp N                guest vCPUs (default 1)
#     --timeout S            hard limit for the VM (default 300)
#     --bench N              files for the bench's metadata phases
#     --backend holdfastd|virtiofsd   who serves the devices (default
#                            holdfastd).  virtiofsd: the command in
#                            HF_VM_VIRTIOFSD (scripts/bench/build-virtiofsd.sh
#                            prints one); device OPTS are virtiofsd's then.
#                            Bench only: the guest suite expects holdfastd.
#     --keep                 keep the work directory (logs, shared dirs)
#     --selftests DIR        guest selftest binaries to ship (default
#                            $BUILD/selftests/guest when --run suite)
#     --modules DIR          ship DIR/fuse.ko and DIR/virtiofs.ko (kernel/build.sh)
#                            as /lib/modules/<kver>/updates/, which modprobe
#                            prefers over the distribution's (6.1 only)
#     --append ARGS          more guest kernel command line (hf.* for tests)
#     --host-script FILE     run FILE on the host while the VM runs (hot-plug,
#                            killing servers: selftests/vm/reconnect-host.sh);
#                            its TAP output (stdout) counts like the guest's
#     --expect-hang          the guest is expected not to finish (the host
#                            script stops QEMU and says whether it hung)
#
# A device whose OPTS contain @nomount is not mounted by the guest's /init
# (a test mounts it with its own options); @dax=SIZE gives the device a DAX
# window of SIZE (QEMU cache-size, holdfastd --dax-window: needs the QEMU of
# qemu/build.sh in QEMU); @qmp gives its holdfastd the VM's
# QMP socket and its device id (--qmp-socket, --qmp-device).  QEMU's device ids are fs<N> and
# chardev ids c<N>, N counting --dev from 0; the host script finds each
# device's "tag N pid socket dir" in $HF_VM_W/devs, and lists the servers it
# kills in $HF_VM_W/killed (their exit status is then not checked).
#
# Environment: HOLDFASTD (default <repo>/build/userspace/holdfastd),
# QEMU (default qemu-system-x86_64), BUILD, HOLDFAST_CACHE,
# HF_VM_SERIAL=1 prints the whole serial console, HF_VM_HOLDFASTD_ARGS are
# added to every holdfastd's options, HF_VM_LOG_LEVEL is their --log-level.
# HF_VM_BENCHSTOP=create ends the bench after the virtio-fs creates.
# TMPDIR (default /tmp) holds the work directory and so the shared
# directories: a tmpfs (/dev/shm) takes the host's disk out of a bench.
# Bench mode prints each backend's host CPU per guest phase (sampled from
# /proc every 0.05 s) as "# cpu PHASE wall=S backend=S qemu=S" lines.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
HOLDFASTD=${HOLDFASTD:-$BUILD/userspace/holdfastd}
QEMU=${QEMU:-qemu-system-x86_64}

series=6.12
run=smoke
devs=()
queues=1
smp=1
timeout=300
bench=2000
backend=holdfastd
keep=0
stdir=
moddir=
append_extra=
host_script=
expect_hang=0

while [ $# -gt 0 ]; do
	case $1 in
	--kernel) series=$2; shift 2 ;;
	--run) run=$2; shift 2 ;;
	--dev) devs+=("$2"); shift 2 ;;
	--queues) queues=$2; shift 2 ;;
	--smp) smp=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--bench) bench=$2; shift 2 ;;
	--backend) backend=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	--selftests) stdir=$2; shift 2 ;;
	--modules) moddir=$2; shift 2 ;;
	--append) append_extra="$append_extra $2"; shift 2 ;;
	--host-script) host_script=$2; shift 2 ;;
	--expect-hang) expect_hang=1; shift ;;
	*) echo "run-vm: unknown option $1" >&2; exit 2 ;;
	esac
done
if [ ${#devs[@]} -eq 0 ]; then
	if [ "$run" = suite ]; then
		# What the guest fixture (selftests/guest/guest_fixture.c) expects:
		# one mount per option set the suites use, plus /mnt/host, the
		# "host side" view of all of them (@parent: serves the parent dir).
		devs=(auto never:--cache=never always-wb:--cache=always,--writeback
			auto-xattr:--xattr never-xattr:--cache=never,--xattr auto-ro:--readonly
			host:@parent,--cache=never,--xattr)
	else
		devs=(auto)
	fi
fi

fail_out() {
	echo "run-vm: $*" >&2
	echo "0 passed, 1 failed"
	exit 1
}

case $backend in
holdfastd) [ -x "$HOLDFASTD" ] || fail_out "$HOLDFASTD not built" ;;
virtiofsd)
	[ "$run" = bench ] || fail_out "--backend virtiofsd is for --run bench"
	[ -n "${HF_VM_VIRTIOFSD:-}" ] || fail_out "--backend virtiofsd needs HF_VM_VIRTIOFSD"
	;;
*) fail_out "unknown --backend $backend" ;;
esac
command -v "$QEMU" >/dev/null || fail_out "$QEMU not found (scripts/install-deps.sh vm)"
[ "$(id -u)" = 0 ] || fail_out "must run as root (holdfastd serves as root, sandboxes itself)"

kdir=$("$root/scripts/vm/fetch-kernel.sh" "$series") || fail_out "no $series kernel"
vmlinuz=$(ls "$kdir"/boot/vmlinuz-* | head -n1)

W=$(mktemp -d "${TMPDIR:-/tmp}/hf-vm.XXXXXX")
chmod 755 "$W"
pids=()
qpid=
hpid=
cleanup() {
	local p
	[ -n "$hpid" ] && kill "$hpid" 2>/dev/null
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill "$qpid" 2>/dev/null
		sleep 1
		kill -9 "$qpid" 2>/dev/null
	fi
	for p in "${pids[@]}"; do
		kill -0 "$p" 2>/dev/null || continue
		kill "$p" 2>/dev/null
	done
	for p in "${pids[@]}"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -f "$W"/*.sock
	if [ "$keep" = 1 ]; then
		echo "run-vm: kept $W" >&2
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The initramfs: init + (for the suite) the guest selftest binaries.
extra=()
if [ "$run" = suite ]; then
	stdir=${stdir:-$BUILD/selftests/guest}
	for b in "$stdir"/*_test; do
		# dax_test needs DAX mounts: selftests/vm/dax-guest.sh runs it.
		[ "$(basename "$b")" = dax_test ] && continue
		[ -x "$b" ] && extra+=("$b=selftests/$(basename "$b")")
	done
	[ ${#extra[@]} -gt 0 ] || fail_out "no guest selftests in $stdir (make -C selftests guest)"
fi
if [ -n "$moddir" ]; then
	kver=$(basename "$(ls -d "$kdir"/lib/modules/*/ | head -n1)")
	for m in fuse virtiofs; do
		[ -f "$moddir/$m.ko" ] || fail_out "no $moddir/$m.ko (make kernel)"
		extra+=("$moddir/$m.ko=lib/modules/$kver/updates/$m.ko")
	done
fi
initrd=$("$root/scripts/vm/build-initramfs.sh" "$kdir" "$W/initrd.gz" "$here/init" "${extra[@]}") ||
	fail_out "initramfs build failed"

# One holdfastd per device, each on its own shared directory.
mounts=
qdevs=()
i=0
: >"$W/devs"
: >"$W/killed"
for d in "${devs[@]}"; do
	tag=${d%%:*}
	opts=
	[ "$d" != "$tag" ] && opts=${d#*:}
	nomount=0
	case ,$opts, in
	*,@nomount,*)
		nomount=1
		opts=$(echo ",$opts," | sed 's/,@nomount,/,/; s/^,//; s/,$//')
		;;
	esac
	case ,$opts, in
	*,@qmp,*)
		# holdfastd re-plugs its own device after a crash or disconnect.
		opts=$(echo ",$opts," | sed "s|,@qmp,|,--qmp-socket,$W/qmp.sock,--qmp-device,fs$i,|; s/^,//; s/,\$//")
		;;
	esac
	cache=
	case ,$opts, in
	*,@dax=*)
		cache=$(echo ",$opts," | sed 's/.*,@dax=\([^,]*\),.*/\1/')
		opts=$(echo ",$opts," | sed "s/,@dax=[^,]*,/,--dax-window,$cache,/; s/^,//; s/,\$//")
		;;
	esac
	dir=$W/share/$tag
	case ,$opts, in
	*,@parent,*)
		dir=$W/share
		opts=$(echo ",$opts," | sed 's/,@parent,/,/; s/^,//; s/,$//')
		;;
	*)
		mkdir -p "$dir"
		echo "hello from the host" >"$dir/hello.txt"
		;;
	esac
	sock=$W/$tag.sock
	# shellcheck disable=SC2086
	if [ "$backend" = virtiofsd ]; then
		# `times`: the CPU of virtiofsd and the sandboxed worker it waits for.
		sh -c '"$@"; rc=$?; times; exit $rc' sh $HF_VM_VIRTIOFSD --shared-dir "$dir" --socket-path "$sock" \
			--log-level "${HF_VM_LOG_LEVEL:-info}" ${opts//,/ } >"$W/holdfastd-$tag.log" 2>&1 &
	else
		"$HOLDFASTD" --shared-dir "$dir" --socket-path "$sock" \
			--log-level "${HF_VM_LOG_LEVEL:-info}" ${opts//,/ } ${HF_VM_HOLDFASTD_ARGS:-} >"$W/holdfastd-$tag.log" 2>&1 &
	fi
	pids+=($!)
	for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
	[ -S "$sock" ] || { cat "$W/holdfastd-$tag.log" >&2; fail_out "holdfastd for '$tag' did not listen"; }
	qdevs+=(-chardev "socket,id=c$i,path=$sock"
		-device "vhost-user-fs-pci,id=fs$i,chardev=c$i,tag=$tag,num-request-queues=$queues${cache:+,cache-size=$cache}")
	echo "$tag $i ${pids[-1]} $sock $dir" >>"$W/devs"
	[ $nomount = 1 ] || mounts=${mounts:+$mounts,}$tag
	i=$((i + 1))
done

append="console=ttyS0 loglevel=4 panic=-1 no_timer_check hf.run=$run hf.mounts=$mounts hf.bench=$bench${HF_VM_BENCHSTOP:+ hf.benchstop=$HF_VM_BENCHSTOP}$append_extra"
t0=$(date +%s.%N)
"$QEMU" -accel tcg,thread=multi -smp "$smp" -m 1G \
	-object memory-backend-memfd,id=mem,size=1G,share=on -machine pc,memory-backend=mem \
	-kernel "$vmlinuz" -initrd "$initrd" -append "$append" \
	-display none -nodefaults -no-reboot -serial "file:$W/serial.log" \
	-qmp "unix:$W/qmp.sock,server=on,wait=off" \
	"${qdevs[@]}" >"$W/qemu.log" 2>&1 &
qpid=$!
if [ -n "$host_script" ]; then
	HF_VM_W=$W HF_VM_QMP=$W/qmp.sock HF_VM_QPID=$qpid HF_VM_ROOT=$root HF_VM_QUEUES=$queues \
		HOLDFASTD=$HOLDFASTD "$host_script" >"$W/host.tap" 2>"$W/host.log" &
	hpid=$!
fi
spid=
if [ "$run" = bench ]; then
	# Host CPU (utime+stime ticks) of the first device's server, its
	# children (virtiofsd's worker) and QEMU, tagged with the guest's phase.
	phasef=$W/share/${devs[0]%%:*}/.phase
	( tck=$(getconf CLK_TCK)
	  while kill -0 "$qpid" 2>/dev/null; do
		ph=$(cat "$phasef" 2>/dev/null); ph=${ph:-boot}
		b=0
		for p in $(pgrep -P "${pids[0]}") ${pids[0]} $(pgrep -P "$(pgrep -P "${pids[0]}" | head -1)" 2>/dev/null); do
			s=($(cut -d')' -f2- /proc/$p/stat 2>/dev/null)) && b=$((b + ${s[11]:-0} + ${s[12]:-0}))
		done
		q=($(cut -d')' -f2- /proc/$qpid/stat 2>/dev/null)) || break
		echo "$(date +%s.%N) $ph $b $((${q[11]} + ${q[12]})) $tck"
		sleep 0.05
	  done ) >"$W/samples.txt" 2>/dev/null &
	spid=$!
fi
timed_out=0
while kill -0 "$qpid" 2>/dev/null; do
	if [ "$(echo "$(date +%s.%N) - $t0 > $timeout" | bc)" = 1 ]; then
		timed_out=1
		echo "run-vm: VM still running after ${timeout}s: stopping it" >&2
		kill "$qpid"
		break
	fi
	sleep 0.2
done
wait "$qpid" 2>/dev/null
qrc=$?
qpid=
wall=$(echo "$(date +%s.%N) - $t0" | bc)
if [ -n "$hpid" ]; then
	# The host script ends with the VM (it may still verify data).
	for _ in $(seq 1 300); do kill -0 "$hpid" 2>/dev/null || break; sleep 0.2; done
	kill "$hpid" 2>/dev/null
	wait "$hpid" 2>/dev/null
	hpid=
fi

# holdfastd exits by itself when QEMU goes away; a crash is a failure.
drc=0
for k in "${!pids[@]}"; do
	p=${pids[$k]}
	if grep -qx "$p" "$W/killed"; then
		# The host script's business; stop what it left running.
		kill -TERM "$p" 2>/dev/null && sleep 1
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
		continue
	fi
	for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$p" 2>/dev/null; then
		echo "run-vm: holdfastd ${devs[$k]%%:*} did not exit after the VM" >&2
		drc=1
		continue
	fi
	wait "$p"
	st=$?
	if [ "$st" -ne 0 ]; then
		echo "run-vm: holdfastd ${devs[$k]%%:*} exited with status $st" >&2
		drc=1
	fi
done

[ "${HF_VM_SERIAL:-0}" = 1 ] && cat "$W/serial.log"
echo "# run-vm: kernel $(basename "$vmlinuz"), run=$run, devices=${devs[*]}, qemu rc=$qrc, wall ${wall}s"
grep -E '^HF: |^HF-RESULT|^HF-DMESG' "$W/serial.log" | sed 's/^/# /'

# TAP streams between the markers.
mkdir -p "$W/tap"
# (The serial console ends lines with CR LF.)
awk -v dir="$W/tap" '
{ sub(/\r$/, "") }
/^HF-TAP-BEGIN / { name = $2; file = dir "/" name ".tap"; next }
/^HF-TAP-END /   { name = ""; next }
name != ""       { print > file }
' "$W/serial.log"
if [ -n "$host_script" ]; then
	cp "$W/host.tap" "$W/tap/host.tap"
	sed 's/^/# host script: /' "$W/host.log"
fi
if [ $expect_hang = 1 ]; then
	# Only the host's verdict counts; what the guest got to say is shown.
	for f in "$W"/tap/*.tap; do
		[ "$(basename "$f")" = host.tap ] && continue
		sed "s/^/# guest $(basename "$f" .tap), expected to hang: /" "$f"
		rm -f "$f"
	done
fi
ntap=$(ls "$W"/tap/*.tap 2>/dev/null | wc -l)
if [ "$run" = bench ]; then
	[ -n "$spid" ] && wait "$spid" 2>/dev/null
	awk '$2 != cur { if (cur != "") printf "# cpu %-18s wall=%.2f backend=%.2f qemu=%.2f\n", cur, $1 - t0, ($3 - b0) / $5, ($4 - q0) / $5
		cur = $2; t0 = $1; b0 = $3; q0 = $4 }
		{ lt = $1; lb = $3; lq = $4; tck = $5 }
		END { if (cur != "") printf "# cpu %-18s wall=%.2f backend=%.2f qemu=%.2f\n", cur, lt - t0, (lb - b0) / tck, (lq - q0) / tck }' "$W/samples.txt"
	for d in "${devs[@]}"; do
		grep -E 'served|by opcode|by queue' "$W/holdfastd-${d%%:*}.log" | sed "s/^/# $backend ${d%%:*}: /"
		if [ "$backend" = virtiofsd ]; then
			# times: shell user/sys, then children user/sys (e.g. 0m1.23s 0m0.45s)
			tail -1 "$W/holdfastd-${d%%:*}.log" | awk '{ for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } }
				END { printf "# virtiofsd %s: cpu %.2f s (user + system, whole run)\n", "'"${d%%:*}"'", t }'
			ops=$(sed -n 's/.*Received request: opcode=\([A-Za-z0-9]*\).*/\1/p' "$W/holdfastd-${d%%:*}.log" |
				sort | uniq -c | awk '{ printf " %s=%s", toupper($2), $1; n += $1 } END { if (n) printf " (total %d)", n }')
			[ -n "$ops" ] && echo "# virtiofsd ${d%%:*}: requests by opcode:$ops"
		fi
	done
	ok=0
	grep -q '^HF-DONE' "$W/serial.log" && ok=1
	[ $ok = 1 ] && [ $drc = 0 ] && { echo "1 passed, 0 failed"; exit 0; }
	tail -40 "$W/serial.log" | sed 's/^/# serial: /'
	echo "0 passed, 1 failed"
	exit 1
fi
# Known virtio-fs limitations (selftests/guest/xfail.list) become XFAIL;
# a listed test that passes is an XPASS, which counts as a failure.
xfail_list=$root/selftests/guest/xfail.list
for f in "$W"/tap/*.tap; do
	[ -e "$f" ] || continue
	[ -f "$xfail_list" ] && awk -v list="$xfail_list" -v series="$series" '
	function glob2re(g) { gsub(/\./, "\\.", g); gsub(/\*/, ".*", g); return "^" g "$" }
	BEGIN {
		while ((getline l < list) > 0) {
			if (l ~ /^#/ || l !~ /[^ \t]/) continue
			n = split(l, a, /[ \t]+/)
			w = l; sub(/^[^ \t]+[ \t]+/, "", w)
			if (a[2] ~ /^@/) {
				if (a[2] != "@" series) continue
				sub(/^[^ \t]+[ \t]+/, "", w)
			}
			re[++k] = glob2re(a[1]); why[k] = w
		}
	}
	function listed(name,   i) { for (i = 1; i <= k; i++) if (name ~ re[i]) return i; return 0 }
	/^(not )?ok [0-9]+ / {
		name = ($1 == "not") ? $4 : $3
		if ((i = listed(name))) {
			if ($1 == "not") { sub(/^not ok/, "ok"); $0 = $0 " # XFAIL " why[i]; xf++; fl-- }
			else { sub(/^ok/, "not ok"); $0 = $0 " # XPASS: listed in xfail.list"; xp++; ps-- }
		}
	}
	/^# Totals: / {
		# Adjust the harness counts by what was reclassified.
		split($0, t, /[ :]+/)
		for (j = 3; j < length(t); j += 2) c[t[j]] = t[j + 1]
		$0 = sprintf("# Totals: pass:%d fail:%d xfail:%d xpass:%d skip:%d error:%d",
			c["pass"] + ps, c["fail"] + fl, c["xfail"] + xf, c["xpass"] + xp, c["skip"], c["error"])
		ps = fl = xf = xp = 0
	}
	{ print }' "$f" >"$f.x" && mv "$f.x" "$f"
	echo "# ==== $(basename "$f" .tap) ($series)"
	cat "$f"
done
extra_fail=0
if [ $expect_hang = 1 ]; then
	if grep -q '^HF-DONE' "$W/serial.log"; then
		echo "# run-vm: the guest finished, but was expected to hang"
		extra_fail=1
	fi
elif ! grep -q '^HF-DONE' "$W/serial.log" || [ $timed_out = 1 ]; then
	echo "# run-vm: the guest did not finish (timeout or crash); last console lines:"
	tail -40 "$W/serial.log" | sed 's/^/# serial: /'
	extra_fail=1
fi
if [ $drc != 0 ]; then
	for d in "${devs[@]}"; do tail -20 "$W/holdfastd-${d%%:*}.log" | sed "s/^/# holdfastd ${d%%:*}: /"; done
	extra_fail=1
fi
if [ "$ntap" = 0 ]; then
	echo "0 passed, $((1 + extra_fail)) failed"
	exit 1
fi
line=$("$root/scripts/ksft-totals.sh" "$W"/tap/*.tap | tail -1)
p=${line%% passed*}
f=$(echo "$line" | sed 's/^[0-9]* passed, \([0-9]*\) failed.*/\1/')
f=$((f + extra_fail))
echo "$p passed, $f failed"
[ "$f" = 0 ]
