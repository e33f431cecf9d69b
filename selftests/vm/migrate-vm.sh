#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Live migration of a guest with a virtio-fs mount, between two QEMUs (TCG)
# on this host, each with its own back-end on the same shared directory:
# the source's holdfastd streams its state (vhost-user SET_DEVICE_STATE_FD)
# and the destination's takes it over.  The guest (migrate_guest.c) keeps
# files, a directory stream, a deleted file and its cwd open across it and
# checks every byte afterwards.  Ends with "N passed, N failed".
#
#   selftests/vm/migrate-vm.sh [--kernel 6.12|6.1] [--inodes N] [--hops N]
#                              [--refuse] [--find-paths] [--keep]
#                              [--backend holdfastd|virtiofsd]
#                              [-- BACKEND-ARGS...]
#
#   --hops N     migrations in a row, each to a new QEMU and back-end
#                (default 2: there and on again, ping-pong style)
#   --refuse     the destination serves another directory: it must refuse
#                the state, and the source resume the guest and finish
#   --inodes N   the host puts N files in pre/, which the guest stats before
#                the migration, so the back-end knows N more inodes
#   --find-paths the destination serves a copy of the directory on another
#                file system (an overlay of it), where the source's file
#                handles mean nothing: both back-ends run with
#                --migration-mode find-paths --migration-on-error
#                guest-error; every file is found by its path but the
#                open-but-deleted one, which the guest must see fail alone
#                (ESTALE).  One hop.
#   --backend virtiofsd  the same run over HF_VM_VIRTIOFSD
#                (scripts/bench/build-virtiofsd.sh prints it), for comparison
#
# Host checks (besides the guest's TAP): QEMU reports the migration
# completed, the destination back-end took the state over, and the host
# sees every byte the guest appended.  Downtime and total time are printed
# as "# migration: ..." lines.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
HOLDFASTD=${HOLDFASTD:-$BUILD/userspace/holdfastd}
QEMU=${QEMU:-qemu-system-x86_64}

series=6.12
inodes=0
keep=0
backend=holdfastd
timeout=400
hops=2
refuse=0
findpaths=0
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) series=$2; shift 2 ;;
	--inodes) inodes=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	--backend) backend=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--hops) hops=$2; shift 2 ;;
	--refuse) refuse=1; hops=1; shift ;;
	--find-paths) findpaths=1; hops=1; shift ;;
	--) shift; break ;;
	*) echo "migrate-vm: unknown option $1" >&2; exit 2 ;;
	esac
done
bargs=("$@")
append="console=ttyS0 loglevel=4 panic=-1 no_timer_check"
if [ "$findpaths" = 1 ]; then
	bargs+=(--migration-mode find-paths --migration-on-error guest-error)
	append+=" hf.deleted_lost"
fi

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $*"; }
notok() { fail=$((fail + 1)); echo "not ok - $*"; }
finish() {
	echo "$pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
}
die() { echo "migrate-vm: $*" >&2; notok "$*"; finish; }

case $backend in
holdfastd) [ -x "$HOLDFASTD" ] || die "$HOLDFASTD not built" ;;
virtiofsd) [ -n "${HF_VM_VIRTIOFSD:-}" ] || die "--backend virtiofsd needs HF_VM_VIRTIOFSD" ;;
*) die "unknown --backend $backend" ;;
esac
command -v "$QEMU" >/dev/null || die "$QEMU not found (scripts/install-deps.sh)"
command -v python3 >/dev/null || die "python3 not found (apt-get install python3)"
KSFT=$("$root/scripts/fetch-kselftest.sh") || die "no kselftest_harness.h"
kdir=$("$root/scripts/vm/fetch-kernel.sh" "$series") || die "no $series kernel"
vmlinuz=$(ls "$kdir"/boot/vmlinuz-* | head -n1)

W=$(mktemp -d /tmp/hf-mig.XXXXXX)
chmod 755 "$W"
qpids=()
bpids=()
cleanup() {
	local p
	for p in "${qpids[@]}" "${bpids[@]}"; do kill "$p" 2>/dev/null; done
	sleep 0.5
	for p in "${qpids[@]}" "${bpids[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	mountpoint -q "$W/merged" 2>/dev/null && umount "$W/merged"
	if [ "$keep" = 1 ]; then echo "migrate-vm: kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One QMP command (scripts/vm/qmp.py): prints its "return" as JSON, fails
# (with QEMU's error on stderr) on an error.
qmp() { # SOCKET COMMAND [JSON-ARGUMENTS]
	python3 "$root/scripts/vm/qmp.py" "$1" exec "$2" ${3:+"$3"}
}

gcc -static -O2 -std=gnu11 -Wall -Wno-unused-parameter -pthread -I"$KSFT" \
	-o "$W/migrate_guest" "$here/migrate_guest.c" || die "cannot build migrate_guest"
initrd=$("$root/scripts/vm/build-initramfs.sh" "$kdir" "$W/initrd.gz" "$here/init-migrate" \
	"$W/migrate_guest=bin/migrate_guest") || die "initramfs build failed"

share=$W/share
mkdir -p "$share/pre"
for ((k = 0; k < inodes; k += 1000)); do
	(cd "$share/pre" && seq -f "f%.0f" "$k" $((k + 999 < inodes - 1 ? k + 999 : inodes - 1)) | xargs touch)
done

start_backend() { # NAME SOCKET
	if [ "$backend" = virtiofsd ]; then
		# shellcheck disable=SC2086
		$HF_VM_VIRTIOFSD --shared-dir "$share" --socket-path "$2" --cache=never \
			"${bargs[@]}" >"$W/$1.log" 2>&1 &
	else
		"$HOLDFASTD" --shared-dir "$share" --socket-path "$2" --cache=never \
			--log-level info "${bargs[@]}" >"$W/$1.log" 2>&1 &
	fi
	bpids+=($!)
	for _ in $(seq 1 100); do [ -S "$2" ] && return 0; sleep 0.05; done
	cat "$W/$1.log" >&2
	die "back-end $1 did not listen on $2"
}

start_qemu() { # NAME SOCKET [ARGS...]
	local name=$1 sock=$2
	shift 2
	"$QEMU" -accel tcg,thread=multi -m 512M \
		-object memory-backend-memfd,id=mem,size=512M,share=on -machine pc,memory-backend=mem \
		-kernel "$vmlinuz" -initrd "$initrd" -append "$append" \
		-display none -nodefaults -no-reboot -serial "file:$W/$name-serial.log" \
		-qmp "unix:$W/$name-qmp.sock,server=on,wait=off" \
		-chardev "socket,id=c0,path=$sock" \
		-device vhost-user-fs-pci,id=fs0,chardev=c0,tag=mig "$@" >"$W/$name-qemu.log" 2>&1 &
	qpids+=($!)
}

wait_for() { # FILE PATTERN SECONDS
	local end=$((SECONDS + $3))
	while [ $SECONDS -lt $end ]; do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

# query-migrate until it ends; prints the last reply, sets $status.
migrate() { # FROM-QMP PORT
	local r st
	r=$(qmp "$1" migrate "{\"uri\": \"tcp:127.0.0.1:$2\"}" 2>&1 | tail -1)
	echo "# migrate: $r"
	status=
	for _ in $(seq 1 600); do
		st=$(qmp "$1" query-migrate 2>/dev/null)
		status=$(echo "$st" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status","none"))' 2>/dev/null)
		case $status in
		completed | failed | cancelled | none) break ;;
		"") status="unknown (QMP gone)"; break ;;
		esac
		sleep 0.5
	done
	echo "$st" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("# migration: status %s, downtime %s ms, total %s ms" % (r.get("status"), r.get("downtime"), r.get("total-time")))' 2>/dev/null
}

# Hop 0 is the first QEMU; each hop migrates the guest to a new QEMU and
# a new back-end.  --refuse: the one destination serves another directory,
# so it must refuse the state and the source must keep the guest.
port=$((40000 + $$ % 20000))
start_backend h0 "$W/h0.sock"
start_qemu h0 "$W/h0.sock"
wait_for "$W/h0-serial.log" HF-MIGRATE-READY 240 || {
	tail -20 "$W/h0-serial.log" >&2
	die "the guest never got ready"
}
[ "$inodes" -gt 0 ] && echo "# guest: $(grep -a 'pre-stat' "$W/h0-serial.log" | tail -1)"
cur=0
for ((h = 1; h <= hops; h++)); do
	if [ "$refuse" = 1 ]; then
		mkdir -p "$W/other"
		share_saved=$share
		share=$W/other
		start_backend "h$h" "$W/h$h.sock"
		share=$share_saved
	elif [ "$findpaths" = 1 ]; then
		# The same files on another file system: an overlay over them.
		mkdir -p "$W/up" "$W/wk" "$W/merged"
		# nfs_export gives it file handles of its own (where the kernel
		# allows it), which the destination's table needs past its fd
		# budget; without, every inode found costs an fd.
		mount -t overlay overlay \
			-o "lowerdir=$share,upperdir=$W/up,workdir=$W/wk,index=on,nfs_export=on" "$W/merged" 2>/dev/null ||
			mount -t overlay overlay -o "lowerdir=$share,upperdir=$W/up,workdir=$W/wk" "$W/merged" ||
			die "cannot mount an overlay for --find-paths"
		share=$W/merged
		start_backend "h$h" "$W/h$h.sock"
	else
		start_backend "h$h" "$W/h$h.sock"
	fi
	start_qemu "h$h" "$W/h$h.sock" -incoming "tcp:127.0.0.1:$((port + h))"
	sleep 1
	migrate "$W/h$cur-qmp.sock" $((port + h))
	if [ "$refuse" = 1 ]; then
		# QEMU's source says "completed" before the destination loads the
		# device state; the destination's refusal ends its QEMU.
		end=$((SECONDS + 60))
		while kill -0 "${qpids[h]}" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.5; done
		if kill -0 "${qpids[h]}" 2>/dev/null; then
			notok "the destination QEMU took state from another directory"
		else
			ok "the destination refused the state"
			grep -h "refusing the migrated state" "$W/h$h.log" | head -1 | sed 's/^/# /'
		fi
		# The guest goes on where it was.
		if r=$(qmp "$W/h$cur-qmp.sock" cont 2>&1); then
			ok "the source resumed its guest"
		else
			notok "cont on the source: $(echo "$r" | tail -1)"
		fi
		break
	fi
	if [ "$status" = completed ]; then
		ok "hop $h: QEMU completed the migration"
	else
		notok "hop $h: QEMU's migration ended '$status'"
		break
	fi
	qmp "$W/h$cur-qmp.sock" quit >/dev/null 2>&1
	cur=$h
	# Let the guest work on this hop before the next one.
	sleep 2
done
# The guest runs on hop $cur now: let it finish.
touch "$share/.migrated"
end=$((SECONDS + timeout))
while kill -0 "${qpids[cur]}" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.5; done
kill -0 "${qpids[cur]}" 2>/dev/null && notok "the guest did not finish in ${timeout}s"

# The guest's TAP (all printed on the last hop's console).
awk '{ sub(/\r$/, "") } /^HF-TAP-BEGIN /{on=1; next} /^HF-TAP-END /{on=0} on' \
	"$W/h$cur-serial.log" >"$W/guest.tap"
sed 's/^/# guest: /' "$W/guest.tap"
gline=$("$root/scripts/ksft-totals.sh" "$W/guest.tap" 2>/dev/null | tail -1)
gp=$(echo "$gline" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
gf=$(echo "$gline" | sed -n 's/^[0-9]* passed, \([0-9]*\) failed.*/\1/p')
if [ -z "$gp" ] || [ $((gp + gf)) = 0 ]; then
	notok "no guest TAP on the last console"
	tail -n 30 "$W/h$cur-serial.log" | sed 's/^/# console: /'
else
	pass=$((pass + gp))
	fail=$((fail + gf))
fi

appended=$(sed -n 's/.*HF-MIGRATE-APPENDED \([0-9]*\).*/\1/p' "$W/guest.tap" | tail -1)
if [ -n "$appended" ] && [ "$(stat -c %s "$share/w.dat" 2>/dev/null)" = $((appended * 4096)) ]; then
	ok "the host sees all $appended appended blocks"
else
	notok "w.dat on the host is $(stat -c %s "$share/w.dat" 2>/dev/null) bytes, guest appended ${appended:-?} blocks"
fi
if [ "$backend" = holdfastd ] && [ "$refuse" = 0 ]; then
	for ((h = 1; h <= cur; h++)); do
		if grep -q "device state: saving" "$W/h$((h - 1)).log" &&
			grep -q "device state: took over" "$W/h$h.log"; then
			ok "hop $h: the back-end state went from h$((h - 1)) to h$h"
		else
			notok "hop $h: no state transfer in the back-ends' logs"
		fi
		# Same host: the destination takes the source's fds (fast path)
		# unless told not to; either way it must say how many it used.
		line=$(grep -h "device state: took over" "$W/h$h.log" | tail -1)
		borrowed=$(sed -n 's/.* \([0-9]*\) fds borrowed from the source.*/\1/p' <<<"$line")
		used=$(sed -n 's/.* ms, \([0-9]*\) used;.*/\1/p' <<<"$line")
		bypath=$(sed -n 's/.* \([0-9]*\) found by path).*/\1/p' <<<"$line")
		unresolved=$(sed -n 's/.*inodes (\([0-9]*\) unresolved).*/\1/p' <<<"$line")
		if [ "$findpaths" = 1 ]; then
			# Everything by path, but the deleted file, which has none.
			if [ "${bypath:-0}" -gt 0 ] && [ "${unresolved:-x}" = 1 ] &&
				[ "${borrowed:-x}" = 0 ]; then
				ok "hop $h: find-paths: $bypath inodes found by path, the deleted file not"
			else
				notok "hop $h: find-paths: '${bypath:-?}' by path, '${unresolved:-?}' unresolved, '${borrowed:-?}' fds borrowed"
			fi
			continue
		fi
		case " ${bargs[*]} " in
		*" --migration-fast-path off "*)
			if [ "${borrowed:-x}" = 0 ]; then
				ok "hop $h: fast path off: every file opened by handle"
			else
				notok "hop $h: fast path off, yet '${borrowed:-?}' fds borrowed"
			fi ;;
		*)
			if [ "${borrowed:-0}" -gt 0 ] && [ "$borrowed" = "$used" ]; then
				ok "hop $h: same-host fast path: $borrowed fds taken from the source, all used"
			else
				notok "hop $h: fast path: borrowed '${borrowed:-?}', used '${used:-?}'"
			fi ;;
		esac
	done
	grep -h "device state" "$W"/h*.log | sed 's/^/# /'
fi
finish
