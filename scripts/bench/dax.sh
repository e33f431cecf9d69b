#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The issue-8 DAX numbers in one command: a TCG guest (Debian 6.12 cloud
# kernel, our patched QEMU with a vhost-user-fs-pci cache-size window,
# holdfastd --dax-window) reads and writes files on its virtio-fs mount
# with -o dax=never and with -o dax=always, for several window sizes.
#
#   sudo scripts/bench/dax.sh [--reps N] [--windows 16M,64M,256M]
#        [--small MIB] [--big MIB] [--mem MIB] [--secs S] [--write MIB]
#        [--tests seqread,randread,mmapseq,mmaprand,seqwrite] [--quick]
#        [--out DIR]
#   scripts/bench/dax.sh --table DIR   the tables again from DIR's logs
#
# One VM per window size and repetition (the window is a property of the
# device and of holdfastd), the windows' order rotating from one
# repetition to the next.  In each VM (scripts/bench/dax-init, measuring
# with scripts/bench/daxbench.c) every test runs on each file with
# dax=never and dax=always back to back, the mode that goes first
# alternating; every measurement on a fresh mount with the guest's and the
# host's caches dropped (the host's through a second serial port).  The
# files live on the host's disk (not tmpfs), so "cold" includes the host.
#   seqread   read(2) of the whole file, 1 MiB at a time (MiB/s)
#   randread  4 KiB pread(2) at random offsets for S seconds (IOPS)
#   mmapseq   the file mmap()ed, copied out page by page (MiB/s)
#   mmaprand  4 KiB pages of the mapping at random for S seconds (IOPS)
#   seqwrite  overwrite in place, 1 MiB writes + fsync (MiB/s)
# The small file fits in the guest's page cache (and in the largest
# window), the big one in neither.  dax=never uses holdfastd's default
# --cache auto.  Mapping traffic: FUSE_SETUPMAPPING/REMOVEMAPPING per
# measurement (guest kprobes) and per VM (holdfastd's exit statistics,
# which must agree).
#
# Results: DIR/table.md (default ${HOLDFAST_CACHE:-~/.cache/holdfast}/
# bench/dax-<time>/), DIR/raw.csv (every measurement), DIR/vms.csv (per VM
# totals), DIR/logs/.  Numbers are TCG numbers: compare the columns, not
# with KVM.  Ends with "N passed, N failed" (measurements that produced a
# number, plus the per-VM agreement of the two counts); exit 0 when none
# failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
CACHE=${HOLDFAST_CACHE:-${HOME:-/root}/.cache/holdfast}
# BUILD, HOLDFASTD, dax_prereqs, vm_args, wait_vm, reap_backend.
DAX_SCRIPT=dax.sh
# shellcheck source=selftests/vm/dax-lib.sh
. "$root/selftests/vm/dax-lib.sh"

reps=3
windows=16M,64M,256M
small=128
big=1024
mem=512
secs=5
wmib=128
tests=seqread,randread,mmapseq,mmaprand,seqwrite
out=

# render DIR: DIR/table.md, raw.csv and vms.csv from DIR/logs and
# DIR/params; prints "N passed, N failed".
render() {
	python3 - "$1" <<'EOF'
import csv, os, re, statistics as st, sys
out = sys.argv[1]
params = dict(l.strip().split('=', 1) for l in open(os.path.join(out, 'params')) if '=' in l)
small, big, wmib = int(params['small']), int(params['big']), int(params['wmib'])
summary = sys.stdout
sys.stdout = open(os.path.join(out, 'table.md'), 'w')
logs = os.path.join(out, 'logs')
rows, vms, bad = [], [], []
names = sorted({f.split('.')[0] for f in os.listdir(logs) if f.startswith('rep')},
               key=lambda n: (int(re.match(r'rep(\d+)', n).group(1)), n))
for name in names:
    rep, win = re.match(r'rep(\d+)-w(\d+)M', name).groups()
    try:
        ser = open(os.path.join(logs, name + '.serial.log'), errors='replace').read().replace('\r', '')
    except OSError:
        ser = ''
    for line in ser.splitlines():
        if 'DAXB-INFO' in line and 'error' in line:
            bad.append('%s: %s' % (name, line.split('DAXB-INFO ', 1)[1]))
        if not line.startswith('DAXB-RESULT '):
            continue
        kv = dict(x.split('=', 1) for x in line.split()[1:] if '=' in x)
        kv.update(rep=int(rep), window=int(win))
        rows.append(kv)
        if kv.get('rc') != '0' or 'value' not in kv:
            bad.append('%s: %s %s %s: %s' % (name, kv['test'], kv['file'], kv['mode'], kv.get('error', 'rc ' + kv.get('rc', '?'))))
    if not ser:
        bad.append('%s: the guest did not finish (no VM)' % name)
    elif 'DAXB-DONE' not in ser:
        bad.append('%s: the guest did not finish' % name)
    hl = open(os.path.join(logs, name + '.holdfastd.log'), errors='replace').read()
    m = re.search(r'requests by opcode:([^\n]*)', hl)
    ops = dict((k, int(v)) for k, v in re.findall(r'(\w+)=(\d+)', m.group(1))) if m else {}
    def gsum(key):
        v = [r[key] for r in rows if r['rep'] == int(rep) and r['window'] == int(win)]
        return sum(int(x) for x in v) if v and all(x.isdigit() for x in v) else None
    vms.append(dict(vm=name, rep=int(rep), window=int(win), stats=bool(m),
                    setup=ops.get('SETUPMAPPING', 0), remove=ops.get('REMOVEMAPPING', 0),
                    gsetup=gsum('setup'), gremove=gsum('remove'), glate=gsum('late')))

with open(os.path.join(out, 'raw.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['rep', 'window_mib', 'test', 'file', 'mode', 'value', 'unit', 'bytes', 'ops', 'secs', 'setupmapping', 'removemapping', 'late_removemapping', 'rc'])
    for r in rows:
        w.writerow([r['rep'], r['window'], r['test'], r['file'], r['mode'], r.get('value', ''), r.get('unit', ''),
                    r.get('bytes', ''), r.get('ops', ''), r.get('secs', ''), r.get('setup', ''), r.get('remove', ''), r.get('late', ''), r['rc']])
with open(os.path.join(out, 'vms.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['vm', 'rep', 'window_mib', 'holdfastd_setupmapping', 'holdfastd_removemapping', 'guest_setupmapping', 'guest_removemapping', 'guest_late_removemapping'])
    for v in vms:
        w.writerow([v['vm'], v['rep'], v['window'], v['setup'] if v['stats'] else '', v['remove'] if v['stats'] else '', v['gsetup'], v['gremove'], v['glate']])

def med(xs):
    return st.median(xs) if xs else None
def fmt(x, unit=''):
    if x is None: return 'n/a'
    return ('%.0f' % x if abs(x) >= 100 else '%.1f' % x if abs(x) >= 10 else '%.2f' % x) + unit
def spread(xs):
    xs = list(xs)
    return '%.0f%%' % (100 * (max(xs) - min(xs)) / st.median(xs)) if xs and st.median(xs) > 0 else 'n/a'
ok = [r for r in rows if r.get('rc') == '0' and 'value' in r]
label = {'small.dat': 'small (%d MiB)' % small, 'big.dat': 'big (%d MiB)' % big, 'write.dat': '%d MiB' % wmib}
print('# DAX benchmark: guest virtio-fs with -o dax=never vs -o dax=always\n')
print('```'); print(open(os.path.join(out, 'meta.txt')).read().rstrip()); print('```\n')
print('Medians over the repetitions. dax=never and dax=always ran back to back in the same VM;')
print('always/never is the median of those per-pair ratios. SETUPMAPPING/REMOVEMAPPING: FUSE requests')
print('of the dax=always measurement (guest kprobes), median. Window = the device\'s cache-size;')
print('the dax=never column has the window too but does not use it. Spread: (max-min)/median of')
print('each mode\'s values, never/always.\n')
print('| test | file | window | dax=never | dax=always | always/never | spread | SETUPMAPPING | REMOVEMAPPING |')
print('|---|---|---|---|---|---|---|---|---|')
order = ['seqread', 'randread', 'mmapseq', 'mmaprand', 'seqwrite']
keys = sorted({(r['test'], r['file'], r['window']) for r in ok},
              key=lambda k: (order.index(k[0]), k[1] != 'small.dat', k[2]))
for t, fl, win in keys:
    sel = [r for r in ok if (r['test'], r['file'], r['window']) == (t, fl, win)]
    unit = ' ' + sel[0]['unit']
    nv = {r['rep']: float(r['value']) for r in sel if r['mode'] == 'never'}
    av = {r['rep']: float(r['value']) for r in sel if r['mode'] == 'always'}
    ratios = [av[k] / nv[k] for k in av if k in nv and nv[k] > 0]
    setups = [int(r['setup']) for r in sel if r['mode'] == 'always' and r.get('setup', '').isdigit()]
    removes = [int(r['remove']) for r in sel if r['mode'] == 'always' and r.get('remove', '').isdigit()]
    print('| %s | %s | %d MiB | %s | %s | %s | %s/%s | %s | %s |' % (
        t, label.get(fl, fl), win, fmt(med(list(nv.values())), unit), fmt(med(list(av.values())), unit),
        fmt(med(ratios), 'x'), spread(nv.values()), spread(av.values()), fmt(med(setups)), fmt(med(removes))))
print()
print('Reclaim per window: holdfastd\'s request totals per VM (one VM per window and repetition,')
print('all tests), the guest\'s kprobe sums for the same VM in brackets, and the data the dax=always')
print('measurements moved through the window. Late: REMOVEMAPPING calls the guest made at umount,')
print('after the connection was gone (never sent; 0 expected, as each measurement evicts its file first).\n')
print('| window | 2 MiB ranges | SETUPMAPPING per VM | REMOVEMAPPING per VM | late | MiB through DAX per VM | SETUPMAPPING per GiB |')
print('|---|---|---|---|---|---|---|')
for win in sorted({v['window'] for v in vms}):
    vs = [v for v in vms if v['window'] == win]
    s = ', '.join('%s [%s]' % (v['setup'] if v['stats'] else 'n/a', v['gsetup']) for v in vs)
    rm = ', '.join('%s [%s]' % (v['remove'] if v['stats'] else 'n/a', v['gremove']) for v in vs)
    mib = [sum(float(r['bytes']) for r in ok if r['rep'] == v['rep'] and r['window'] == win and r['mode'] == 'always') / 2**20 for v in vs]
    per = [v['setup'] / (m / 1024) for v, m in zip(vs, mib) if m > 0 and v['stats']]
    late = ', '.join(str(v['glate']) for v in vs)
    print('| %d MiB | %d | %s | %s | %s | %s | %s |' % (win, win // 2, s, rm, late, ', '.join('%.0f' % m for m in mib), fmt(med(per))))
print()
if bad:
    print('Failures:\n')
    for b in bad: print('- ' + b)
    print()
# Checks: every measurement gave a number; per VM the guest's counts equal holdfastd's.
passed = len(ok)
failed = len(rows) - len(ok) + sum(1 for b in bad if 'did not finish' in b or 'host did not' in b)
for v in vms:
    if v['stats'] and v['gsetup'] is not None and (v['gsetup'], v['gremove']) == (v['setup'], v['remove']):
        passed += 1
    else:
        failed += 1
print('%d passed, %d failed' % (passed, failed), file=summary)
EOF
}

# show DIR: render, print the table and the verdict, exit by it.
show() {
	local summary
	summary=$(render "$1")
	[ -f "$1/table.md" ] && cat "$1/table.md"
	echo "dax.sh: results in $1" >&2
	[ -n "$summary" ] || summary="0 passed, 1 failed"
	echo "$summary"
	case $summary in *" 0 failed") exit 0 ;; *) exit 1 ;; esac
}

die() { echo "dax.sh: $*" >&2; exit 2; }
num() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 wants a positive integer, not '$2'"; }
while [ $# -gt 0 ]; do
	case $1 in
	--reps | --small | --big | --mem | --secs | --write)
		[ $# -ge 2 ] || die "$1 needs a value"
		num "$1" "$2"
		case $1 in
		--reps) reps=$2 ;; --small) small=$2 ;; --big) big=$2 ;;
		--mem) mem=$2 ;; --secs) secs=$2 ;; --write) wmib=$2 ;;
		esac
		shift 2 ;;
	--windows) [ $# -ge 2 ] || die "$1 needs a value"; windows=$2; shift 2 ;;
	--tests) [ $# -ge 2 ] || die "$1 needs a value"; tests=$2; shift 2 ;;
	--out) [ $# -ge 2 ] || die "$1 needs a value"; out=$2; shift 2 ;;
	--table)
		[ $# -ge 2 ] || die "$1 needs a value"
		[ -f "$2/params" ] || die "$2 holds no dax.sh results (no params)"
		show "$2" ;;
	--quick) reps=1 windows=16M small=32 big=96 mem=256 secs=2 wmib=32; shift ;;
	-h | --help) awk 'NR > 3 && !/^#/ { exit } NR > 3 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) die "unknown option $1 (--help)" ;;
	esac
done

# Windows: power-of-two sizes (QEMU's cache-size) of at least 2 MiB (the
# guest's DAX range), given as NM or NG.
win_bytes=()
for w in ${windows//,/ }; do
	[[ $w =~ ^([1-9][0-9]*)([MG])$ ]] || die "window '$w' is not a size like 16M or 1G"
	b=$((BASH_REMATCH[1] << 20))
	[ "${BASH_REMATCH[2]}" = G ] && b=$((b << 10))
	[ $((b & (b - 1))) = 0 ] && [ $b -ge $((2 << 20)) ] ||
		die "window '$w' is not a power of two of at least 2M"
	[[ " ${win_bytes[*]:-} " == *" $b "* ]] && die "window '$w' is given twice"
	win_bytes+=("$b")
done
[ ${#win_bytes[@]} -gt 0 ] || die "no window sizes"
for t in ${tests//,/ }; do
	case $t in seqread | randread | mmapseq | mmaprand | seqwrite) ;;
	*) die "unknown test '$t' (seqread randread mmapseq mmaprand seqwrite)" ;; esac
done
[ "$small" -lt "$big" ] || die "--small ($small MiB) must be smaller than --big ($big MiB)"
[ "$(id -u)" = 0 ] || die "must run as root (host drop_caches, holdfastd)"
[ -x "$HOLDFASTD" ] || make -C "$root" userspace BUILD="$BUILD" >&2 || die "cannot build holdfastd"
dax_prereqs

out=${out:-$CACHE/bench/dax-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out/logs" || die "cannot create $out"
# The guest program, static for the busybox initramfs.
DAXBENCH=$BUILD/bench/daxbench
mkdir -p "$BUILD/bench"
if [ ! -x "$DAXBENCH" ] || [ "$here/daxbench.c" -nt "$DAXBENCH" ]; then
	gcc -O2 -Wall -Wextra -static -o "$DAXBENCH" "$here/daxbench.c" || die "cannot build daxbench"
fi

# Scratch on disk (not /tmp if that were tmpfs): the host's drop_caches
# must make the host read the files again.
W=$(mktemp -d /var/tmp/hf-daxbench.XXXXXX) || die "mktemp failed"
chmod 755 "$W"
qpid='' dpid='' cpid=''
cleanup() {
	[ -n "$qpid" ] && kill -9 "$qpid" 2>/dev/null
	[ -n "$cpid" ] && kill "$cpid" 2>/dev/null
	[ -n "$dpid" ] && kill "$dpid" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

share=$W/share
mkdir -p "$share"
echo "dax.sh: writing $small + $big + $wmib MiB of test files ..." >&2
for f in small:$small big:$big write:$wmib; do
	dd if=/dev/urandom of="$share/${f%%:*}.dat" bs=1M count="${f#*:}" status=none ||
		die "cannot write $share/${f%%:*}.dat"
done
sync
"$root/scripts/vm/build-initramfs.sh" "$kdir" "$W/initrd.gz" "$here/dax-init" \
	"$DAXBENCH=bin/daxbench" >"$out/logs/initramfs.log" 2>&1 ||
	{ cat "$out/logs/initramfs.log" >&2; die "initramfs build failed"; }

# Per measurement: the slowest expected (the big file at ~5 MiB/s) plus
# margin; per VM: all of them.
ntests=$(echo "${tests//,/ }" | wc -w)
tmo=$((big / 5 + 60))
TIMEOUT=$((ntests * 4 * (tmo + 30) + 300))

{
	echo "date: $(date -u +%FT%TZ)"
	echo "host: $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg) (shared machine: other work ran too)"
	echo "qemu: $QEMU ($("$QEMU" --version | head -1)), TCG, -smp 1, -m ${mem}M"
	echo "guest kernel: $(basename "$vmlinuz")"
	echo "holdfastd: $HOLDFASTD ($(sha256sum "$HOLDFASTD" | cut -c1-16)), --cache auto (default)"
	echo "files: small $small MiB, big $big MiB, write $wmib MiB, on $(stat -f -c %T "$W") ($W)"
	echo "windows: $windows, repetitions: $reps, random tests: $secs s, tests: $tests"
} >"$out/meta.txt"
printf 'small=%s\nbig=%s\nwmib=%s\n' "$small" "$big" "$wmib" >"$out/params"

# vm NAME WINDOW_BYTES FIRST_MODE: one guest, logs in $out/logs/NAME.*
vm() {
	local name=$1 win=$2 first=$3 d=$W/$1 t0 rc log=$out/logs/$1
	mkdir -p "$d"
	"$HOLDFASTD" --shared-dir "$share" --socket-path "$d/fs.sock" --dax-window "$win" \
		>"$log.holdfastd.log" 2>&1 &
	dpid=$!
	for _ in $(seq 1 100); do [ -S "$d/fs.sock" ] && break; sleep 0.05; done
	[ -S "$d/fs.sock" ] || { echo "dax.sh: $name: holdfastd did not listen" >&2; kill "$dpid"; wait "$dpid"; dpid=; return 1; }
	# The cache-drop port: QEMU's pipe chardev opens ctl.in and ctl.out.
	mkfifo "$d/ctl.in" "$d/ctl.out"
	(
		exec 7<>"$d/ctl.out" 8<>"$d/ctl.in"
		while read -r l <&7; do
			case $l in
			*DROP*) sync; echo 3 >/proc/sys/vm/drop_caches; echo ok >&8 ;;
			esac
		done
	) &
	cpid=$!
	t0=$(date +%s)
	vm_args "${mem}M" "$log.serial.log" "$W/initrd.gz" \
		"db.tag=dax db.files=small.dat,big.dat db.wfile=write.dat db.wmib=$wmib db.secs=$secs db.tests=$tests db.first=$first db.timeout=$tmo"
	"$QEMU" "${vm[@]}" -smp 1 -serial "pipe:$d/ctl" \
		-chardev "socket,id=c0,path=$d/fs.sock" \
		-device "vhost-user-fs-pci,id=fs0,chardev=c0,tag=dax,cache-size=$win" \
		>"$log.qemu.log" 2>&1 &
	qpid=$!
	wait_vm "$qpid" "$t0" "$name" >&2
	rc=$?
	qpid=
	kill "$cpid" 2>/dev/null
	wait "$cpid" 2>/dev/null
	cpid=
	# holdfastd leaves when QEMU does, printing its statistics.
	reap_backend "$dpid"
	dpid=
	echo "dax.sh: $name: QEMU exit $rc after $(($(date +%s) - t0)) s, $(grep -c DAXB-RESULT "$log.serial.log") measurements" >&2
	return 0
}

nw=${#win_bytes[@]}
modes=(never always)
for ((r = 1; r <= reps; r++)); do
	for ((i = 0; i < nw; i++)); do
		win=${win_bytes[$(((i + r - 1) % nw))]}
		vm "rep$r-w$((win >> 20))M" "$win" "${modes[$(((r + i) % 2))]}"
	done
done

show "$out"
