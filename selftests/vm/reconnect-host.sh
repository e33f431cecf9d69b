#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Host side of the virtio-fs reconnect tests (selftests/guest/reconnect_test.c
# is the guest side).  run-vm.sh --host-script runs it while the VM runs,
# with HF_VM_W, HF_VM_QMP, HF_VM_QPID, HF_VM_ROOT, HF_VM_QUEUES and
# HOLDFASTD set; the VM has the devices "rc" (under test) and "ctl"
# (the control channel: the guest creates go, the host creates stop).
#
# rc's holdfastd runs under holdfast-fdstore (the pid run-vm.sh started is
# the store; the server is its child, restarted from the state region when
# it dies).
#
#   HF_RC_MODE=reconnect  HF_RC_CYCLES times: SIGKILL the server, then, as a
#                         VM manager would, device_del the device, wait for
#                         DEVICE_DELETED, chardev-add + device_add one with
#                         the same tag on the same socket (scripts/vm/qmp.py);
#                         then stop, and verify on the host what the guest
#                         says it wrote
#   HF_RC_MODE=selfheal   the same, but rc's holdfastd has the QMP socket
#                         (run-vm.sh @qmp) and re-plugs the device itself:
#                         the host only kills the server HF_RC_CYCLES times,
#                         waiting for each new server to serve a front-end
#   HF_RC_MODE=suspend    the guest suspends itself to RAM a few times
#                         (reconnect_test.c SUSPENDS); each time the host
#                         wakes it up with QMP system_wakeup
#   HF_RC_MODE=timeout    SIGKILL, device_del, never a new device
#   HF_RC_MODE=stock      SIGKILL, device_del: on the stock driver
#                         DEVICE_DELETED must not come (the guest hangs in
#                         virtio_fs_remove); then stops QEMU
#
# HF_RC_GAP: seconds of workload before each kill (default 1).
# HF_RC_TWICE=N: every Nth kill also kills the restarted server at once
# (default 0: never; see below).  ctl/stop gets the number of new front-ends the
# server saw, which is the number of reconnects the guest must count.
# check-vm.sh's 6.1-reconnect sets 5: the second kill lands anywhere in
# the successor's re-plug (before device_del, between device_del and
# device_add, after chardev-add), which the next server must finish.
# Prints TAP; "# cycle" lines give the host-side time of each reconnect.
set -uo pipefail

W=$HF_VM_W
qmp=$HF_VM_ROOT/scripts/vm/qmp.py
mode=${HF_RC_MODE:-reconnect}
cycles=${HF_RC_CYCLES:-3}
gap=${HF_RC_GAP:-1}
twice=${HF_RC_TWICE:-0}
ctl=$W/share/ctl
n=0
pass=0
fail=0

tap() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n $2"
		pass=$((pass + 1))
	else
		echo "not ok $n $2"
		fail=$((fail + 1))
	fi
}
finish() {
	echo "1..$n"
	echo "# Totals: pass:$pass fail:$fail xfail:0 xpass:0 skip:0 error:0"
	exit 0
}
ms_since() { echo "$(date +%s%N) $1" | awk '{ printf "%d", ($1 - $2) / 1e6 }'; }
vm_alive() { kill -0 "$HF_VM_QPID" 2>/dev/null; }

echo "TAP version 13"
read -r tag idx pid sock dir < <(grep '^rc ' "$W/devs")
[ -n "${pid:-}" ] || { tap 1 "the VM has an rc device"; finish; }
store=$pid
# With --reconnect the store outlives QEMU: stopped here, at the end.
echo "$store" >>"$W/killed"
log=$W/holdfastd-rc.log
server() { pgrep -n -P "$store"; }
connected() { grep -c 'front-end connected' "$log"; }

for _ in $(seq 1 600); do
	[ -e "$ctl/go" ] && break
	vm_alive || break
	sleep 0.25
done
[ -e "$ctl/go" ]
tap $? "the guest started its workload"
[ -e "$ctl/go" ] || finish

case $mode in
reconnect | selfheal)
	ok=0
	for c in $(seq 1 "$cycles"); do
		sleep "$gap"
		before=$(connected)
		t0=$(date +%s%N)
		# (A server may be on its way out or in: take the one there is.)
		killed=0
		for _ in $(seq 1 20); do
			victim=$(server)
			[ -n "$victim" ] && kill -KILL "$victim" 2>/dev/null && { killed=1; break; }
			sleep 0.1
		done
		[ $killed = 1 ] || { echo "# cycle $c: no server process to kill"; break; }
		if [ "$twice" -gt 0 ] && [ $((c % twice)) = 0 ]; then
			# Twice in a row: the restarted server dies as soon as it is there.
			for _ in $(seq 1 100); do
				again=$(server)
				[ -n "$again" ] && [ "$again" != "$victim" ] && break
				sleep 0.02
			done
			[ -n "$again" ] && [ "$again" != "$victim" ] && kill -KILL "$again" 2>/dev/null &&
				echo "# cycle $c: killed the restarted server too"
		fi
		if [ "$mode" = reconnect ]; then
			d=$(python3 "$qmp" "$HF_VM_QMP" unplug "fs$idx" 30) || {
				echo "# cycle $c: device_del: ${d:-error}"
				break
			}
			python3 "$qmp" "$HF_VM_QMP" plug-vhost-user-fs "fs$idx" "c$idx-$c" "$sock" rc \
				"${HF_VM_QUEUES:-1}" || { echo "# cycle $c: device_add failed"; break; }
		fi
		# The restarted server serves the new device.
		for _ in $(seq 1 300); do
			[ "$(connected)" -gt "$before" ] && break
			sleep 0.1
		done
		[ "$(connected)" -gt "$before" ] || { echo "# cycle $c: no new front-end in 30 s"; break; }
		echo "# cycle $c: kill to new front-end $(ms_since "$t0") ms"
		ok=$c
	done
	[ "$ok" = "$cycles" ]
	tap $? "$ok of $cycles SIGKILLs of the server, each followed by a new device"
	# Let a late re-plug finish: then every new front-end is a reconnect.
	sleep 1
	echo $(($(connected) - 1)) >"$ctl/stop"
	;;
suspend)
	woken=0
	while vm_alive && [ ! -e "$ctl/stop" ]; do
		st=$(python3 "$qmp" "$HF_VM_QMP" exec query-status 2>/dev/null)
		case $st in
		*'"suspended"'*)
			python3 "$qmp" "$HF_VM_QMP" exec system_wakeup >/dev/null &&
				woken=$((woken + 1))
			echo "# wakeup $woken"
			;;
		esac
		sleep 0.2
	done
	[ "$woken" -gt 0 ]
	tap $? "woke the suspended guest up $woken times"
	;;
timeout)
	sleep "$gap"
	# No restart: the store first, then the server.
	victim=$(server)
	kill -KILL "$store" $victim
	d=$(python3 "$qmp" "$HF_VM_QMP" unplug "fs$idx" 30)
	tap $? "device_del of the dead device completes (${d:-?}s)"
	touch "$ctl/stop"
	;;
stock)
	sleep "$gap"
	# No restart: the store first, then the server.
	victim=$(server)
	kill -KILL "$store" $victim
	d=$(python3 "$qmp" "$HF_VM_QMP" unplug "fs$idx" "${HF_RC_HANG:-20}")
	[ "$d" = timeout ]
	tap $? "stock virtiofs: device_del of the dead device hangs (no DEVICE_DELETED in ${HF_RC_HANG:-20}s)"
	kill "$HF_VM_QPID" 2>/dev/null
	finish
	;;
*)
	tap 1 "HF_RC_MODE=$mode is known"
	finish
	;;
esac

# The guest unmounts, writes what the host must find, and powers off.
for _ in $(seq 1 1200); do vm_alive || break; sleep 0.1; done
kill -TERM "$store" 2>/dev/null
[ -e "$ctl/expect" ]
tap $? "the guest finished and wrote its expectations"
if [ "$mode" != timeout ] && [ -e "$ctl/expect" ]; then
	recs=$(awk '$1 == "w.dat" { print $2 }' "$ctl/expect")
	renames=$(awk '$1 == "renames" { print $2 }' "$ctl/expect")
	# The writer's records, byte for byte (reconnect_test.c: fill()).
	python3 - "$dir/w.dat" "${recs:-0}" <<'EOF'
import sys
path, recs = sys.argv[1], int(sys.argv[2])
data = open(path, "rb").read()
if len(data) != recs * 4096:
    sys.exit("w.dat: %d bytes, want %d" % (len(data), recs * 4096))
abc = bytes(ord("a") + k % 26 for k in range(4096 + 26))
for i in range(recs):
    head = b"writer record %d\n" % i
    o = (i + len(head)) % 26
    if data[i * 4096:(i + 1) * 4096] != head + abc[o:o + 4096 - len(head)]:
        sys.exit("w.dat: record %d differs" % i)
EOF
	tap $? "host: w.dat has the guest's ${recs:-?} records, in order"
	last=$((renames - 1))
	[ "${renames:-0}" -gt 0 ] && [ "$(cat "$dir/c$last" 2>/dev/null)" = "file $last" ] &&
		[ ! -e "$dir/c.tmp" ]
	tap $? "host: the last of ${renames:-?} creates+renames is c$last"
	mrecs=$(awk '$1 == "m.dat" { print $2 }' "$ctl/expect")
	if [ "${mrecs:-0}" -gt 0 ]; then
		# What the guest wrote through its DAX mapping last in each slot
		# (reconnect_test.c: mwriter()), and zeroes where it never wrote.
		python3 - "$dir/m.dat" "$mrecs" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
data = open(path, "rb").read()
size = 12 << 20
slots = size // 4096
if len(data) != size:
    sys.exit("m.dat: %d bytes, want %d" % (len(data), size))
abc = bytes(ord("a") + k % 26 for k in range(4096 + 26))
for s in range(slots):
    rec = data[s * 4096:(s + 1) * 4096]
    if s >= n:
        if rec != bytes(4096):
            sys.exit("m.dat: slot %d was never written but is not zero" % s)
        continue
    i = s + slots * ((n - 1 - s) // slots)
    head = b"mmap record %d\n" % i
    o = (i + len(head)) % 26
    if rec != head + abc[o:o + 4096 - len(head)]:
        sys.exit("m.dat: slot %d does not hold record %d" % (s, i))
EOF
		tap $? "host: m.dat holds the last of the guest's $mrecs records written through DAX in each slot"
	fi
fi
finish
