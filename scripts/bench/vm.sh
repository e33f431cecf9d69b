#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The issue-5 measurement in one command: a QEMU (TCG) guest's virtio-fs
# served by holdfastd vs by virtiofsd 1.13 (Debian trixie's, from a cached
# debootstrap: scripts/bench/build-virtiofsd.sh) vs the guest's own tmpfs.
#
#   sudo scripts/bench/vm.sh [--files N] [--kernel 6.12|6.1] [--out DIR]
#
# Guest phases (selftests/vm/init, run_bench): create N files (shell
# builtin), stat them cold, unlink them cold, dd 256 MiB write + fsync, dd
# cold read.  Per backend: host CPU of the backend process(es) per phase
# (sampled from /proc), FUSE requests per create (two extra short runs, N
# creates and 0 creates, differenced; virtiofsd's counted from its debug
# log, holdfastd's from its exit statistics).
# One VM at a time.  Results: DIR/table.md (default
# ${HOLDFAST_CACHE:-~/.cache/holdfast}/bench/vm-<time>/) and the raw logs.
# Numbers are TCG numbers: compare the columns, not with KVM.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
export BUILD
CACHE=${HOLDFAST_CACHE:-${HOME:-/root}/.cache/holdfast}
files=2000
kernel=6.12
out=

while [ $# -gt 0 ]; do
	case $1 in
	--files) files=$2; shift 2 ;;
	--kernel) kernel=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	-h | --help) sed -n '4,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "vm.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "vm.sh: must run as root" >&2; exit 2; }
out=${out:-$CACHE/bench/vm-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"

# The peers: virtiofsd (cached chroot) and holdfastd (built if missing).
vfsd=$("$here/build-virtiofsd.sh") || { echo "vm.sh: no virtiofsd" >&2; exit 1; }
HF_VM_VIRTIOFSD=$(echo "$vfsd" | tr '\n' ' ')
export HF_VM_VIRTIOFSD
HOLDFASTD=${HOLDFASTD:-$BUILD/userspace/holdfastd}
export HOLDFASTD
if [ ! -x "$HOLDFASTD" ]; then
	make -C "$root" userspace BUILD="$BUILD" >&2 || exit 1
fi
command -v qemu-system-x86_64 >/dev/null || "$root/scripts/install-deps.sh" vm >&2

{
	echo "date: $(date -u +%FT%TZ)"
	echo "host: $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "qemu: $(qemu-system-x86_64 --version | head -1)"
	echo "holdfastd: $HOLDFASTD ($(sha256sum "$HOLDFASTD" | cut -c1-16))"
	echo "virtiofsd: $("$here/build-virtiofsd.sh" --version 2>/dev/null) via $HF_VM_VIRTIOFSD"
	echo "guest kernel series: $kernel, files: $files"
} >"$out/meta.txt"

run() { # run NAME BACKEND [env...]: one VM, log in $out/NAME.log
	local name=$1 backend=$2
	shift 2
	echo "vm.sh: $name ..." >&2
	env "$@" "$root/selftests/vm/run-vm.sh" --kernel "$kernel" --run bench --bench "$files" \
		--backend "$backend" --timeout 900 >"$out/$name.log" 2>&1
	local rc=$?
	tail -1 "$out/$name.log" | sed "s/^/vm.sh: $name: /" >&2
	return $rc
}

fail=0
run holdfastd holdfastd || fail=1
run virtiofsd virtiofsd || fail=1
# Request counts: N creates minus 0 creates (boot, mount, .phase writes).
run count-holdfastd-n holdfastd HF_VM_BENCHSTOP=create || fail=1
files_saved=$files
files=0
run count-holdfastd-0 holdfastd HF_VM_BENCHSTOP=create || fail=1
files=$files_saved
run count-virtiofsd-n virtiofsd HF_VM_BENCHSTOP=create HF_VM_LOG_LEVEL=debug || fail=1
files=0
run count-virtiofsd-0 virtiofsd HF_VM_BENCHSTOP=create HF_VM_LOG_LEVEL=debug || fail=1
files=$files_saved

python3 - "$out" "$files" >"$out/table.md" <<'EOF'
import re, sys, os
out, n = sys.argv[1], int(sys.argv[2])
def load(name):
    p = os.path.join(out, name + '.log')
    return open(p, errors='replace').read().replace('\r', '') if os.path.exists(p) else ''
def results(txt):
    r = {}
    for fs in ('tmpfs', 'virtiofs'):
        m = re.search(r'HF-RESULT %s: create \d+ files ([\d.]+)s, stat ([\d.]+)s, unlink ([\d.]+)s' % fs, txt)
        if m: r[fs, 'create'], r[fs, 'stat'], r[fs, 'unlink'] = map(float, m.groups())
        m = re.search(r'HF-RESULT %s: dd write 256MiB \(fsync\) ([\d.]+)s, read \(cold\) ([\d.]+)s' % fs, txt)
        if m: r[fs, 'dd-write'], r[fs, 'dd-read'] = map(float, m.groups())
    for m in re.finditer(r'# cpu (\S+)\s+wall=([\d.-]+) backend=([\d.-]+) qemu=([\d.-]+)', txt):
        r['cpu', m.group(1)] = float(m.group(3))
        r['qcpu', m.group(1)] = float(m.group(4))
    m = re.search(r'cpu ([\d.]+) s user \+ ([\d.]+) s system', txt)
    if m: r['cpu-total'] = float(m.group(1)) + float(m.group(2))
    m = re.search(r'virtiofsd \S+: cpu ([\d.]+) s', txt)
    if m: r['cpu-total'] = float(m.group(1))
    return r
def requests(txt):
    m = re.search(r'served (\d+) requests', txt)
    if m: tot = int(m.group(1))
    else:
        m = re.search(r'\(total (\d+)\)', txt)
        tot = int(m.group(1)) if m else None
    ops = {}
    m = re.search(r'requests by opcode:([^\n]*)', txt)
    if m:
        for k, v in re.findall(r'(\w+)=(\d+)', m.group(1)):
            k = k.upper().replace('FUSE_', '')
            ops[k] = ops.get(k, 0) + int(v)
    return tot, ops
H, V = results(load('holdfastd')), results(load('virtiofsd'))
def f(d, k, unit='s'):
    return ('%.2f %s' % (d[k], unit)).strip() if k in d else 'n/a'
rows = [('create %d files' % n, 'create'), ('stat %d files (cold)' % n, 'stat'),
        ('unlink %d files (cold)' % n, 'unlink'), ('dd write 256 MiB + fsync', 'dd-write'),
        ('dd read 256 MiB (cold)', 'dd-read')]
print('# VM benchmark: guest tmpfs vs virtio-fs over holdfastd vs virtiofsd\n')
print('```'); print(open(os.path.join(out, 'meta.txt')).read().rstrip()); print('```\n')
print('Guest wall time per phase (guest /proc/uptime, 10 ms resolution); backend CPU = host')
print('utime+stime of the backend process(es) during that guest phase.\n')
print('| phase | guest tmpfs | holdfastd | virtiofsd | holdfastd CPU | virtiofsd CPU | QEMU CPU (holdfastd / virtiofsd) |')
print('|---|---|---|---|---|---|---|')
for label, k in rows:
    ph = 'virtiofs-' + k.replace('dd-read', 'dd-read')
    print('| %s | %s | %s | %s | %s | %s | %s / %s |' % (label, f(H, ('tmpfs', k)), f(H, ('virtiofs', k)),
          f(V, ('virtiofs', k)), f(H, ('cpu', ph)), f(V, ('cpu', ph)), f(H, ('qcpu', ph)), f(V, ('qcpu', ph))))
print('| whole run (boot .. poweroff) | | | | %s | %s | |' % (f(H, 'cpu-total'), f(V, 'cpu-total')))
print()
print('FUSE requests per create (runs that stop after the creates: %d creates minus 0 creates):\n' % n)
print('| backend | requests per create | by opcode, per create |')
print('|---|---|---|')
for b in ('holdfastd', 'virtiofsd'):
    t1, o1 = requests(load('count-%s-n' % b))
    t0, o0 = requests(load('count-%s-0' % b))
    if t1 is None or t0 is None or n == 0:
        print('| %s | n/a | |' % b); continue
    per = {k: (o1.get(k, 0) - o0.get(k, 0)) / n for k in set(o1) | set(o0)}
    ops = ', '.join('%s %.2f' % (k, v) for k, v in sorted(per.items(), key=lambda x: -x[1]) if abs(v) >= 0.005)
    print('| %s | %.2f | %s |' % (b, (t1 - t0) / n, ops))
EOF
cat "$out/table.md"
echo "vm.sh: results in $out" >&2
if [ $fail = 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit $fail
