#!/usr/bin/env bash
# Columns and rows are called by name ("col_${c}_cmd", "row_${r}"):
# shellcheck disable=SC2317
#
# holdfast benchmark: native directory vs holdfastd vs libfuse passthrough_hp,
# on a scratch tmpfs and/or a disk directory, in one invocation.  Not a test:
# it measures.
#
# Usage: scripts/bench/run.sh [--reps N] [--quick] [--columns a,b,c] [--rows x,y]
#                             [--source tmpfs|disk|both] [--out DIR] [--list]
#   --reps N        repetitions (default 3); the table shows medians
#   --quick         smoke-run sizes: 1k files, 64 MiB file, /usr/include/linux, 2 s fio
#   --columns LIST  columns to run, in order (default: native,holdfastd,
#                   holdfastd_norecovery,passthrough_hp); "modes" stands for
#                   every holdfastd mode with its libfuse 3.18 peer (see --list)
#   --rows LIST     rows to run (default: all default rows, see --list)
#   --source WHERE  where the columns' source directories live: tmpfs (default,
#                   a scratch tmpfs), disk (ext4 under /var/tmp, so cold reads
#                   read the disk, native ones too) or both (every column on
#                   both, interleaved in one run, one table per source)
#   --out DIR       results directory (default: $HOLDFAST_CACHE/bench/<timestamp>)
#   --list          list the known columns, rows and sources and exit
# Environment:
#   HOLDFAST_CACHE   cache dir (default ~/.cache/holdfast): peer build, helper, results
#   HOLDFASTD        holdfastd binary (default <repo>/build/userspace/holdfastd)
#   HOLDFASTD_ARGS   extra holdfastd arguments (word-split)
#   BENCH_FILES, BENCH_FILE_MIB, BENCH_FIO_SECONDS, BENCH_TAR_SRC, BENCH_ROW_TIMEOUT
#                    override the sizes (see "sizes" below)
#   BENCH_WARM=0     do not pre-fault memory before the rows that allocate
#                    (see fsops.c: this VM returns freed memory to its host)
#   BENCH_DISK_DIR   where --source disk makes its run-private directory
#                    (default /var/tmp; must not be tmpfs)
#   BENCH_QD32_ENGINE  fio engine of the randread_qd32 row (default libaio, or io_uring)
#
# How it runs.  Every column gets its own source directory on the same tmpfs
# (or disk directory; with --source both, every column runs twice, once per
# source) and (for FUSE servers) its own mountpoint.  Each repetition mounts every
# column afresh, then runs the rows in order; within a row the columns take
# turns (the starting column rotates from one repetition to the next), so slow
# drifts of this noisy 2-core machine hit every column alike.  Each row has an
# untimed "prep" that creates what it needs, so rows can be selected alone.
#
# Adding a column: write col_NAME_cmd (sets CMD=(argv...) for SRC MNT) and
# col_NAME_check, and add NAME to ALL_COLUMNS.  Adding a row: write row_NAME
# (prints one number for the directory it is given), optionally
# row_NAME_prep, and add a line to the ROWS table.
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
CACHE=${HOLDFAST_CACHE:-${HOME:-/root}/.cache/holdfast}
HOLDFASTD=${HOLDFASTD:-$REPO/build/userspace/holdfastd}
HOLDFASTD_ARGS=${HOLDFASTD_ARGS:-}
HOLDFASTD_ORIG=$HOLDFASTD

# Our stderr, kept on its own fd: traps can fire while a row's stderr is
# redirected to the run log, and their messages belong on the terminal.
exec {ERRFD}>&2
log() { echo "bench: $*" >&"$ERRFD"; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- options
REPS=3
QUICK=0
COLUMNS_ARG=""
ROWS_ARG=""
OUT=""
LIST=0
SOURCE=tmpfs
while [ $# -gt 0 ]; do
	case "$1" in
	--reps) REPS=${2:?--reps needs a number}; shift 2 ;;
	--reps=*) REPS=${1#*=}; shift ;;
	--quick) QUICK=1; shift ;;
	--columns) COLUMNS_ARG=${2:?--columns needs a list}; shift 2 ;;
	--columns=*) COLUMNS_ARG=${1#*=}; shift ;;
	--rows) ROWS_ARG=${2:?--rows needs a list}; shift 2 ;;
	--rows=*) ROWS_ARG=${1#*=}; shift ;;
	--source) SOURCE=${2:?--source needs tmpfs, disk or both}; shift 2 ;;
	--source=*) SOURCE=${1#*=}; shift ;;
	--out) OUT=${2:?--out needs a directory}; shift 2 ;;
	--out=*) OUT=${1#*=}; shift ;;
	--list) LIST=1; shift ;;
	-h | --help) sed -n '5,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
done
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "--reps wants a positive number, not '$REPS'"
case "$SOURCE" in
tmpfs | disk) SOURCES=("$SOURCE") ;;
both) SOURCES=(tmpfs disk) ;;
*) die "--source wants tmpfs, disk or both, not '$SOURCE'" ;;
esac

# ---------------------------------------------------------------- sizes
if [ "$QUICK" = 1 ]; then
	FILES=${BENCH_FILES:-1000}
	FILE_MIB=${BENCH_FILE_MIB:-64}
	FIO_SECONDS=${BENCH_FIO_SECONDS:-2}
	TAR_SRC=${BENCH_TAR_SRC:-/usr/include/linux}
else
	FILES=${BENCH_FILES:-10000}
	FILE_MIB=${BENCH_FILE_MIB:-1024}
	FIO_SECONDS=${BENCH_FIO_SECONDS:-10}
	TAR_SRC=${BENCH_TAR_SRC:-/usr/include}
fi
# A row that takes longer than this is killed and recorded as an error
# (a hung FUSE server must not hang the benchmark).
ROW_TIMEOUT=${BENCH_ROW_TIMEOUT:-600}
# 0: do not pre-fault memory before allocating rows (see fsops.c "warm").
WARM=${BENCH_WARM:-1}
# --source disk: the run-private directory goes below this (ext4 on the
# virtio disk here), so cold reads really read the disk.
DISK_BASE=${BENCH_DISK_DIR:-/var/tmp}
# The queue-depth-32 row needs an asynchronous engine; both are in bookworm's
# fio 3.33.  libaio submits from fio's thread straight into FUSE's async
# direct I/O; io_uring hands a read it cannot issue without blocking to its
# io-wq worker threads, which on 2 CPUs compete with the server.
QD32_ENGINE=${BENCH_QD32_ENGINE:-libaio}
case "$QD32_ENGINE" in
io_uring | libaio) ;;
*) die "BENCH_QD32_ENGINE wants io_uring or libaio, not '$QD32_ENGINE'" ;;
esac

# Human count for row labels: 10000 -> 10k, 1024 MiB -> 1 GiB.
kfmt() { if [ $(($1 % 1000)) = 0 ]; then echo "$(($1 / 1000))k"; else echo "$1"; fi; }
mibfmt() { if [ $(($1 % 1024)) = 0 ]; then echo "$(($1 / 1024)) GiB"; else echo "$1 MiB"; fi; }
NF=$(kfmt "$FILES")
SZ=$(mibfmt "$FILE_MIB")
# The rmrf row removes one extracted copy of the tar tree: say how big it is.
TREE_FILES=$(find "$TAR_SRC" ! -type d 2>/dev/null | wc -l)
TREE_DIRS=$(find "$TAR_SRC" -type d 2>/dev/null | wc -l)

# ---------------------------------------------------------------- rows
# name | unit | better (lo/hi) | label.  Order = execution order.
ROWS_TABLE="
create|s|lo|create $NF empty files (s)
stat|s|lo|stat $NF files (s)
unlink|s|lo|unlink $NF files (s)
tar|s|lo|2x parallel tar x $(basename "$TAR_SRC") (s)
rmrf|s|lo|rm -rf $(basename "$TAR_SRC") tree, $TREE_FILES files + $TREE_DIRS dirs (s)
seqwrite|MiB/s|hi|seq write $SZ + fsync (MiB/s)
coldread|MiB/s|hi|cold seq read $SZ (MiB/s)
randread|IOPS|hi|4k randread O_DIRECT QD1 (IOPS)
randread_buffered|IOPS|hi|4k randread buffered, cold, QD1 (IOPS)
randread_qd32|IOPS|hi|4k randread O_DIRECT QD32 $QD32_ENGINE (IOPS)
"
DEFAULT_ROWS="create stat unlink tar rmrf seqwrite coldread randread randread_buffered randread_qd32"

row_field() { # row_field NAME FIELD(1..4)
	awk -F'|' -v n="$1" -v f="$2" '$1 == n { print $f }' <<<"$ROWS_TABLE"
}

# Each row_NAME DIR prints one number on stdout (its unit is in ROWS_TABLE).
# DIR is the column's view of its source directory (the mountpoint, or the
# directory itself for native).  stderr goes to the run log.

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f\n", b - a }'; }
mibps() { awk -v m="$1" -v s="$2" 'BEGIN { if (s <= 0) exit 1; printf "%.1f\n", m / s }'; }

files_present() { # DIR/files holds exactly FILES entries named f*
	[ -d "$1/files" ] && [ "$(find "$1/files" -mindepth 1 -maxdepth 1 -name 'f*' | wc -l)" = "$FILES" ]
}

# warm MIB: see fsops.c; this VM hands freed memory back to its host, and
# re-faulting it would otherwise dominate the rows that allocate.
warm() { [ "$WARM" = 0 ] || "$FSOPS" warm "$1"; }

row_create_prep() { rm -rf "$1/files" && mkdir "$1/files" && warm 256; }
row_create() { "$FSOPS" create "$1/files" "$FILES"; }

# The stat row runs after the 1 s entry/attr timeout of --cache auto has
# passed (sleep 1.5), so every stat is a LOOKUP round trip, whatever the
# create row's speed left cached.  (A column with longer timeouts, like
# passthrough_hp_stock, answers from its cache: that is its policy.)
row_stat_prep() {
	files_present "$1" || { row_create_prep "$1" && "$FSOPS" create "$1/files" "$FILES" >/dev/null; } || return 1
	sleep 1.5
}
row_stat() { "$FSOPS" stat "$1/files" "$FILES"; }

row_unlink_prep() { files_present "$1" || { row_create_prep "$1" && "$FSOPS" create "$1/files" "$FILES" >/dev/null; }; }
row_unlink() { "$FSOPS" unlink "$1/files" "$FILES" && rmdir "$1/files"; }

row_tar_prep() { rm -rf "$1/tar1" "$1/tar2" && mkdir "$1/tar1" "$1/tar2" && warm $((4 * TAR_MIB + 256)); }
row_tar() {
	local t0 t1 p1 p2 rc=0
	t0=$(now)
	tar -xf "$TARBALL" -C "$1/tar1" & p1=$!
	tar -xf "$TARBALL" -C "$1/tar2" & p2=$!
	wait "$p1" || rc=1
	wait "$p2" || rc=1
	t1=$(now)
	[ "$rc" = 0 ] || return 1
	# The trees are not needed after this row; free the tmpfs (untimed).
	rm -rf "$1/tar1" "$1/tar2"
	elapsed "$t0" "$t1"
}

# rm -rf of a tree made through the mount: a directory walk with a LOOKUP,
# UNLINK or RMDIR per entry (the 1 s entry timeouts of --cache auto have
# expired, as in the stat row).  sync first, so the disk source does not
# write the extracted tree back during the timed part.
row_rmrf_prep() {
	rm -rf "$1/rmtree" && mkdir "$1/rmtree" && tar -xf "$TARBALL" -C "$1/rmtree" && sync || return 1
	sleep 1.5
}
row_rmrf() {
	local t0 t1
	t0=$(now)
	rm -rf "$1/rmtree" || return 1
	t1=$(now)
	[ ! -e "$1/rmtree" ] || { echo "rmrf: $1/rmtree still exists" >&2; return 1; }
	elapsed "$t0" "$t1"
}

# tmpfs pages + the FUSE page cache's copy.
row_seqwrite_prep() { rm -f "$1/big" && warm $((2 * FILE_MIB + 256)); }
row_seqwrite() {
	local t0 t1
	t0=$(now)
	dd if=/dev/zero of="$1/big" bs=1M count="$FILE_MIB" conv=fsync status=none || return 1
	t1=$(now)
	mibps "$FILE_MIB" "$(elapsed "$t0" "$t1")"
}

big_present() { [ -f "$1/big" ] && [ "$(stat -c %s "$1/big")" = $((FILE_MIB * 1048576)) ]; }
row_coldread_prep() { big_present "$1" || dd if=/dev/zero of="$1/big" bs=1M count="$FILE_MIB" conv=fsync status=none; }
# drop_caches cannot drop tmpfs pages (the native tmpfs column stays
# "warm"), but it drops the FUSE mount's page cache and the disk source's.
drop_caches() { sync && echo 3 >/proc/sys/vm/drop_caches; }
row_coldread() {
	local t0 t1
	drop_caches || return 1
	warm $((FILE_MIB + 256))
	t0=$(now)
	dd if="$1/big" of=/dev/null bs=1M status=none || return 1
	t1=$(now)
	mibps "$FILE_MIB" "$(elapsed "$t0" "$t1")"
}

# fio_iops FILE FIO-ARGS...: one time-based 4k random-read job on FILE,
# prints its read IOPS.
fio_iops() {
	local f=$1 out
	shift
	out=$(fio --name=randread --filename="$f" --size="${FILE_MIB}M" \
		--bs=4k --rw=randread --runtime="$FIO_SECONDS" --time_based --randrepeat=0 \
		"$@" --minimal --output-format=terse 2>&1) || { echo "$out" >&2; return 1; }
	# terse v3: field 8 = read IOPS
	awk -F';' '$1 == 3 { printf "%.0f\n", $8; found = 1 } END { exit !found }' <<<"$out" \
		|| { echo "$out" >&2; return 1; }
}

row_randread_prep() { row_coldread_prep "$1"; }
# The O_DIRECT rows drop the caches too: a server that opens the backing
# file without O_DIRECT (a holdfastd older than --direct-io) must not find
# it in the page cache the rows before filled, on the disk source.
row_randread() {
	drop_caches || return 1
	fio_iops "$1/big" --ioengine=psync --direct=1 --iodepth=1 --norandommap
}

# Buffered random reads of a file whose page cache was just dropped, so the
# reads go through the FUSE page cache to the server (and, on the disk
# source, to the disk).  The file cannot be bigger than what this machine
# caches, so instead: drop_caches before the job, fadvise RANDOM (fio's
# fadvise_hint) so no read-ahead, and fio's random map (no --norandommap):
# each 4k block is read once per pass over the file, and with --invalidate=1
# fio drops the file's cache again at the start of every pass (time_based
# starts a new one when the map is full).  So every read misses the page
# cache, however fast the column.  tmpfs native is in memory anyway.
row_randread_buffered_prep() { row_coldread_prep "$1"; }
row_randread_buffered() {
	drop_caches || return 1
	warm $((FILE_MIB + 256))
	fio_iops "$1/big" --ioengine=psync --direct=0 --iodepth=1 --invalidate=1 --fadvise_hint=1
}

# 32 O_DIRECT reads in flight: what the server does with concurrent
# requests (FUSE sends async direct I/O as parallel FUSE_READs, up to the
# connection's max_background).
row_randread_qd32_prep() { row_coldread_prep "$1"; }
row_randread_qd32() {
	drop_caches || return 1
	fio_iops "$1/big" --ioengine="$QD32_ENGINE" --direct=1 --iodepth=32 --norandommap
}

# ---------------------------------------------------------------- columns
# col_NAME_check: returns 0 if the column can run (may build things); prints
#                 the reason to stderr otherwise.
# col_NAME_cmd SRC MNT: sets CMD=(server argv) for FUSE columns; a column
#                 without col_NAME_cmd is the native directory itself.
# READY_FD_COLUMNS: columns whose server takes --ready-fd N.
ALL_COLUMNS="native holdfastd holdfastd_norecovery holdfastd_uring holdfastd_passthrough holdfastd_uring_passthrough passthrough_hp passthrough_hp_nosplice passthrough_hp_stock passthrough_hp318 passthrough_hp318_uring passthrough_hp318_passthrough passthrough_hp318_uring_passthrough"
DEFAULT_COLUMNS="native holdfastd holdfastd_norecovery passthrough_hp"
# Named sets for --columns.  "modes": every transport/passthrough mode of
# holdfastd next to libfuse 3.18's passthrough_hp in the same mode (and
# 3.14's /dev/fuse peer, the one the default run compares with).
declare -A COLUMN_SETS=(
	[modes]="native holdfastd holdfastd_uring holdfastd_passthrough holdfastd_uring_passthrough passthrough_hp passthrough_hp318 passthrough_hp318_uring passthrough_hp318_passthrough passthrough_hp318_uring_passthrough"
)
declare -A COL_NOTE=(
	[native]="the source directory itself (no FUSE)"
	[holdfastd]="holdfastd defaults, --cache auto pinned: 1 s entry/attr timeouts, no writeback, no keep_cache; --passthrough off pinned (the server does every read and write); --direct-io on (O_DIRECT opens stay O_DIRECT on the host, as in passthrough_hp); --readahead default (1 MiB); threads = CPUs (min 2), spare workers up to --max-threads default 10 while others wait for a device; crash recovery on (runs under holdfast-fdstore); no default_permissions (server checks, switching credentials per request); --ready-fd"
	[holdfastd_norecovery]="holdfastd as above with --recovery off: no fd store, no journal (the baseline for the cost of recovery)"
	[holdfastd_uring]="holdfastd as above with --transport uring (FUSE-over-io_uring; the fuse module's enable_uring is set to Y for the run and restored at exit)"
	[holdfastd_passthrough]="holdfastd as above with --passthrough on: the kernel reads, writes and maps regular files itself (FUSE_PASSTHROUGH, backing files registered at open)"
	[holdfastd_uring_passthrough]="holdfastd with --transport uring and --passthrough on"
	[passthrough_hp]="libfuse 3.14 passthrough_hp patched to --cache auto policy: 1 s entry/attr timeouts, no writeback, no keep_cache; splice + mt loop stock; --foreground"
	[passthrough_hp_nosplice]="passthrough_hp (the patched --cache auto build) with --nosplice: read/write through user buffers, as holdfastd does"
	[passthrough_hp_stock]="libfuse 3.14 passthrough_hp, stock flags (86400 s timeouts, writeback cache, keep_cache, splice); --foreground"
	[passthrough_hp318]="libfuse 3.18 (sid's fuse3, its own libfuse) passthrough_hp patched to --cache auto policy like passthrough_hp; --nopassthrough, /dev/fuse; splice + mt loop stock; --foreground"
	[passthrough_hp318_uring]="passthrough_hp318 with -o io_uring (FUSE-over-io_uring, libfuse's default queue depth 8, one queue per CPU; enable_uring set to Y for the run and restored at exit); --nopassthrough"
	[passthrough_hp318_passthrough]="passthrough_hp318 over /dev/fuse with its default kernel passthrough (FUSE_PASSTHROUGH, backing file per inode at open)"
	[passthrough_hp318_uring_passthrough]="passthrough_hp318 with -o io_uring and its default kernel passthrough"
)
declare -A HOLDFASTD_HAS_OPT=()

col_native_check() { return 0; }

# Once per run, whichever holdfastd column asks first (HOLDFASTD_ORIG is set
# from the start, so it cannot tell whether the snapshot was taken).
HOLDFASTD_SNAP=""
col_holdfastd_check() {
	[ -n "$HOLDFASTD_SNAP" ] && return 0
	[ -x "$HOLDFASTD" ] || { log "holdfastd: no binary at $HOLDFASTD (build it, or set HOLDFASTD)"; return 1; }
	# Benchmark a snapshot: the build tree may be rebuilt while we run.
	# holdfastd execs the holdfast-fdstore next to it, so copy that too.
	local snap=$OUT/bin f
	mkdir -p "$snap"
	for f in "$HOLDFASTD" "$(dirname "$HOLDFASTD")/holdfast-fdstore"; do
		[ -f "$f" ] && cp -p "$f" "$snap/"
	done
	HOLDFASTD_ORIG=$HOLDFASTD
	HOLDFASTD=$snap/$(basename "$HOLDFASTD")
	local help
	help=$("$HOLDFASTD" --help 2>&1 || true)
	local o
	for o in --ready-fd --cache --passthrough --direct-io; do
		if grep -q -- "$o" <<<"$help"; then HOLDFASTD_HAS_OPT[$o]=1; fi
	done
	HOLDFASTD_SNAP=$HOLDFASTD
	return 0
}
col_holdfastd_cmd() {
	CMD=("$HOLDFASTD" --shared-dir "$1" --mountpoint "$2")
	# Pin the cache policy the peer column was built to match.
	[ -n "${HOLDFASTD_HAS_OPT[--cache]:-}" ] && CMD+=(--cache auto)
	# Passthrough is a column of its own: this one measures our data path.
	[ -n "${HOLDFASTD_HAS_OPT[--passthrough]:-}" ] && CMD+=(--passthrough off)
	# passthrough_hp opens the host file O_DIRECT when the open asked for it.
	[ -n "${HOLDFASTD_HAS_OPT[--direct-io]:-}" ] && CMD+=(--direct-io on)
	# shellcheck disable=SC2206
	CMD+=($HOLDFASTD_ARGS)
	[ -n "${HOLDFASTD_HAS_OPT[--ready-fd]:-}" ] && CMD+=(--ready-fd 3)
	return 0
}
col_holdfastd_ready_fd() { [ -n "${HOLDFASTD_HAS_OPT[--ready-fd]:-}" ]; }

col_holdfastd_norecovery_check() { col_holdfastd_check; }
col_holdfastd_norecovery_cmd() { col_holdfastd_cmd "$1" "$2"; CMD+=(--recovery off); }
col_holdfastd_norecovery_ready_fd() { col_holdfastd_ready_fd; }

# FUSE-over-io_uring needs the fuse module's enable_uring; the old value
# goes back in cleanup().
ENABLE_URING=/sys/module/fuse/parameters/enable_uring
URING_OLD=""
uring_enable() { # uring_enable COLUMN: enable_uring=Y for the rest of the run
	[ -e "$ENABLE_URING" ] || { log "$1: no $ENABLE_URING (kernel without FUSE-over-io_uring)"; return 1; }
	if [ -z "$URING_OLD" ]; then
		URING_OLD=$(cat "$ENABLE_URING")
		echo Y >"$ENABLE_URING" 2>/dev/null || { log "$1: cannot write $ENABLE_URING"; URING_OLD=""; return 1; }
		log "$1: $ENABLE_URING was $URING_OLD, Y for this run"
	fi
}
col_holdfastd_uring_check() {
	col_holdfastd_check || return 1
	uring_enable holdfastd_uring
}
col_holdfastd_uring_cmd() { col_holdfastd_cmd "$1" "$2"; CMD+=(--transport uring); }
col_holdfastd_uring_ready_fd() { col_holdfastd_ready_fd; }

# Kernel passthrough: a holdfastd that has the option (the kernel must offer
# FUSE_PASSTHROUGH, 6.9+, and the server must be root; it says so in its log).
col_holdfastd_passthrough_check() {
	col_holdfastd_check || return 1
	[ -n "${HOLDFASTD_HAS_OPT[--passthrough]:-}" ] || { log "holdfastd_passthrough: this holdfastd has no --passthrough"; return 1; }
}
col_holdfastd_passthrough_cmd() { col_holdfastd_cmd "$1" "$2"; CMD+=(--passthrough on); }
col_holdfastd_passthrough_ready_fd() { col_holdfastd_ready_fd; }

col_holdfastd_uring_passthrough_check() { col_holdfastd_passthrough_check && col_holdfastd_uring_check; }
col_holdfastd_uring_passthrough_cmd() { col_holdfastd_uring_cmd "$1" "$2"; CMD+=(--passthrough on); }
col_holdfastd_uring_passthrough_ready_fd() { col_holdfastd_ready_fd; }

PHP_AUTO=""
PHP_STOCK=""
col_passthrough_hp_check() {
	PHP_AUTO=$("$SCRIPT_DIR/build-passthrough-hp.sh" --variant=auto) || { log "passthrough_hp: build failed"; return 1; }
}
col_passthrough_hp_cmd() { CMD=("$PHP_AUTO" --foreground "$1" "$2"); }

col_passthrough_hp_nosplice_check() { col_passthrough_hp_check; }
col_passthrough_hp_nosplice_cmd() { CMD=("$PHP_AUTO" --foreground --nosplice "$1" "$2"); }

col_passthrough_hp_stock_check() {
	PHP_STOCK=$("$SCRIPT_DIR/build-passthrough-hp.sh") || { log "passthrough_hp_stock: build failed"; return 1; }
}
col_passthrough_hp_stock_cmd() { CMD=("$PHP_STOCK" --foreground "$1" "$2"); }

# libfuse 3.18 from sid (see build-passthrough-hp.sh --suite=sid), the peer
# for holdfastd's io_uring and passthrough modes, all four built the same
# (--cache auto patch) and differing only in flags.  3.18 turns kernel
# passthrough on by default; --nopassthrough is the /dev/fuse data path.
# libfuse quietly falls back when the kernel refuses a mode, so
# col_NAME_verify checks after the mount that the server runs the mode we
# name the column after.
PHP318=""
col_passthrough_hp318_check() {
	[ -n "$PHP318" ] && return 0
	PHP318=$("$SCRIPT_DIR/build-passthrough-hp.sh" --suite=sid --variant=auto) || { log "passthrough_hp318: build failed"; return 1; }
}
col_passthrough_hp318_cmd() { CMD=("$PHP318" --foreground --nopassthrough "$1" "$2"); }
col_passthrough_hp318_verify() { php318_verify "$1" "$2" dev; }

col_passthrough_hp318_uring_check() { col_passthrough_hp318_check && uring_enable passthrough_hp318_uring; }
col_passthrough_hp318_uring_cmd() { CMD=("$PHP318" --foreground --nopassthrough -o io_uring "$1" "$2"); }
col_passthrough_hp318_uring_verify() { php318_verify "$1" "$2" uring; }

col_passthrough_hp318_passthrough_check() { col_passthrough_hp318_check; }
col_passthrough_hp318_passthrough_cmd() { CMD=("$PHP318" --foreground "$1" "$2"); }
col_passthrough_hp318_passthrough_verify() { php318_verify "$1" "$2" dev; }

col_passthrough_hp318_uring_passthrough_check() { col_passthrough_hp318_uring_check; }
col_passthrough_hp318_uring_passthrough_cmd() { CMD=("$PHP318" --foreground -o io_uring "$1" "$2"); }
col_passthrough_hp318_uring_passthrough_verify() { php318_verify "$1" "$2" uring; }

# php318_verify PID MNT dev|uring: the transport libfuse really uses.  A
# stat waits for INIT, after which libfuse has set up its rings (one
# io_uring fd per queue); "dev" must have none (FUSE_URING_ENABLE in the
# environment could turn them on).  Passthrough failures are logged by
# passthrough_hp itself and counted after the run (PASSTHROUGH_FAILED).
php318_verify() {
	local pid=$1 mnt=$2 want=$3 n=0 i
	timeout 10 stat "$mnt/" >/dev/null 2>&1 || { echo "mount does not answer"; return 1; }
	for ((i = 0; i < 30; i++)); do
		n=$(find "/proc/$pid/fd" -lname 'anon_inode:\[io_uring\]' 2>/dev/null | wc -l)
		[ "$want" = dev ] || [ "$n" -gt 0 ] && break
		sleep 0.1
	done
	if [ "$want" = uring ] && [ "$n" = 0 ]; then echo "no io_uring queues: libfuse fell back to /dev/fuse"; return 1; fi
	if [ "$want" = dev ] && [ "$n" != 0 ]; then echo "$n io_uring fds in a /dev/fuse column"; return 1; fi
	return 0
}
# What passthrough_hp prints when the kernel refuses a backing file; it
# then serves the file's reads and writes itself, silently.
PASSTHROUGH_FAILED="fuse_passthrough_open failed"

# Ratio columns of the table: "A:B" = A / B.  "A:B1|B2": A / the first of
# B1, B2 that runs, so each holdfastd mode meets the peer in the same mode
# (libfuse 3.18's) and falls back to 3.14's /dev/fuse peer without it.
RATIOS="holdfastd:native holdfastd:passthrough_hp holdfastd:passthrough_hp318 holdfastd:holdfastd_norecovery holdfastd_uring:holdfastd holdfastd_uring:passthrough_hp318_uring|passthrough_hp holdfastd_passthrough:holdfastd holdfastd_passthrough:passthrough_hp318_passthrough|passthrough_hp holdfastd_uring_passthrough:passthrough_hp318_uring_passthrough|passthrough_hp"

# ---------------------------------------------------------------- list
if [ "$LIST" = 1 ]; then
	echo "columns (default: $DEFAULT_COLUMNS):"
	for c in $ALL_COLUMNS; do printf '  %-36s %s\n' "$c" "${COL_NOTE[$c]}"; done
	for c in "${!COLUMN_SETS[@]}"; do echo "column set $c: ${COLUMN_SETS[$c]}"; done
	echo "rows (default: $DEFAULT_ROWS):"
	while IFS='|' read -r r _ _ label; do
		[ -z "$r" ] || printf '  %-18s %s\n' "$r" "$label"
	done <<<"$ROWS_TABLE"
	echo "sources (--source, default tmpfs): tmpfs (a scratch tmpfs), disk (a directory under $DISK_BASE), both"
	exit 0
fi

# ---------------------------------------------------------------- selection
COLUMNS=""
for c in ${COLUMNS_ARG//,/ }; do COLUMNS="$COLUMNS ${COLUMN_SETS[$c]:-$c}"; done
COLUMNS=${COLUMNS:-$DEFAULT_COLUMNS}
ROWS=${ROWS_ARG//,/ }
ROWS=${ROWS:-$DEFAULT_ROWS}
for c in $COLUMNS; do
	[[ " $ALL_COLUMNS " == *" $c "* ]] || die "unknown column '$c' (known: $ALL_COLUMNS)"
done
for r in $ROWS; do
	[ -n "$(row_field "$r" 1)" ] || die "unknown row '$r' (known: $(cut -d'|' -f1 <<<"$ROWS_TABLE" | xargs))"
done

[ "$(id -u)" = 0 ] || die "must run as root (mount, drop_caches)"
[ -e /dev/fuse ] || die "/dev/fuse missing"
for t in fio tar dd cc timeout mountpoint; do
	command -v "$t" >/dev/null || die "missing '$t' (run scripts/install-deps.sh)"
done

# ---------------------------------------------------------------- mounts & cleanup
# Everything launched is recorded here; cleanup() undoes all of it, on any exit.
SCRATCH=""
DISKDIR=""
declare -A SRV_PID=() SRV_MNT=() SRV_CONN=()
CLEANING=0

mount_line() { # mount_line MNT -> the mountinfo line whose mount point is MNT (last one)
	awk -v m="$1" '$5 == m { line = $0 } END { if (line != "") print line }' /proc/self/mountinfo
}
mount_fstype() { # field after " - "
	mount_line "$1" | awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { print $(i + 1); exit } }'
}
mount_minor() { mount_line "$1" | awk '{ split($3, d, ":"); print d[2] }'; }
is_fuse_mount() { [[ "$(mount_fstype "$1")" == fuse* ]]; }

fusectl_abort() { # fusectl_abort MINOR: abort a FUSE connection (its requests fail, nothing blocks)
	local minor=$1 dir=/sys/fs/fuse/connections
	[ -n "$minor" ] || return 0
	if [ ! -e "$dir/$minor" ] && [ "$(mount_fstype "$dir")" != fusectl ]; then
		mount -t fusectl none "$dir" 2>/dev/null || true
	fi
	if [ -w "$dir/$minor/abort" ]; then
		log "aborting FUSE connection $minor via fusectl"
		echo 1 >"$dir/$minor/abort" 2>/dev/null || true
	fi
}

pid_gone() { # pid_gone PID [TENTHS]: wait until PID exits; false if it lives on
	local i
	for ((i = 0; i < ${2:-50}; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
	! kill -0 "$1" 2>/dev/null
}

# stop_server KEY (an instance, see inst_key): SIGTERM (holdfastd and libfuse unmount and exit on it);
# a server that does not exit is hung: abort its connection via fusectl so
# nothing blocks on it, then SIGKILL.  A mount left behind (crash, or a
# connection kept open elsewhere, e.g. by an fd store) is unmounted, and
# aborted first if a plain umount does not return: umount itself walks the
# mountpoint and can wait on a hung server.
stop_server() {
	local c=$1 pid=${SRV_PID[$1]:-} mnt=${SRV_MNT[$1]:-} conn=${SRV_CONN[$1]:-}
	[ -n "$pid$mnt" ] || return 0
	if [ -z "$conn" ] && [ -n "$mnt" ] && is_fuse_mount "$mnt"; then conn=$(mount_minor "$mnt"); fi
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null
		kill -CONT "$pid" 2>/dev/null   # in case it was stopped
		if ! pid_gone "$pid" 50; then
			log "$c: server pid $pid did not exit on SIGTERM within 5 s; aborting and killing it"
			fusectl_abort "$conn"
			kill -KILL "$pid" 2>/dev/null
			pid_gone "$pid" 50 || log "warning: $c server pid $pid survives SIGKILL"
		fi
	fi
	# The server ran in its own session (setsid): its pid is the process
	# group id, and whatever it forked (holdfastd runs under holdfast-fdstore,
	# which forks the daemon) is in that group too.  Nothing of it may survive.
	if [ -n "$pid" ] && pgrep -g "$pid" >/dev/null 2>&1; then
		log "$c: killing what is left of process group $pid"
		kill -KILL -- "-$pid" 2>/dev/null
	fi
	if [ -n "$mnt" ] && is_fuse_mount "$mnt"; then
		if ! timeout -k 2 5 umount "$mnt" 2>/dev/null; then
			fusectl_abort "$conn"
			timeout -k 2 5 umount "$mnt" 2>/dev/null || timeout -k 2 5 umount -l "$mnt" 2>/dev/null
		fi
	fi
	[ -n "$pid" ] && wait "$pid" 2>/dev/null
	# Stacked leftovers on the same mountpoint, if any.
	local n=0
	while [ -n "$mnt" ] && is_fuse_mount "$mnt" && [ $((n++)) -lt 5 ]; do
		fusectl_abort "$(mount_minor "$mnt")"
		timeout -k 2 5 umount -l "$mnt" 2>/dev/null
	done
	unset "SRV_PID[$c]" "SRV_MNT[$c]" "SRV_CONN[$c]"
	return 0
}

cleanup() {
	local rc=$?
	[ "$CLEANING" = 1 ] && return
	CLEANING=1
	trap '' INT TERM HUP
	local c
	if [ -n "${ROW_PID:-}" ] && kill -0 "$ROW_PID" 2>/dev/null; then
		# timeout(1) forwards TERM to its whole process group.
		kill -TERM "$ROW_PID" 2>/dev/null
		sleep 0.5
		kill -KILL -- "-$ROW_PID" 2>/dev/null
	fi
	for c in "${!SRV_PID[@]}" "${!SRV_MNT[@]}"; do stop_server "$c"; done
	if [ -n "$SCRATCH" ]; then
		# Anything still mounted below the scratch dir (should be nothing).
		local m
		for m in $(awk -v s="$SCRATCH/" 'index($5, s) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
			log "cleanup: unmounting stray $m"
			is_fuse_mount "$m" && fusectl_abort "$(mount_minor "$m")"
			timeout -k 2 5 umount -l "$m" 2>/dev/null
		done
		if mountpoint -q "$SCRATCH"; then
			umount "$SCRATCH" 2>/dev/null || umount -l "$SCRATCH" 2>/dev/null || log "cleanup: could not unmount $SCRATCH"
		fi
		rm -rf --one-file-system "$SCRATCH" 2>/dev/null || rmdir "$SCRATCH" 2>/dev/null
	fi
	if [ -n "$DISKDIR" ]; then
		rm -rf --one-file-system "$DISKDIR" 2>/dev/null || log "cleanup: could not remove $DISKDIR"
	fi
	if [ -n "$URING_OLD" ]; then
		echo "$URING_OLD" >"$ENABLE_URING" 2>/dev/null || log "cleanup: could not restore $ENABLE_URING to $URING_OLD"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM HUP

# Leftovers of an earlier run that was SIGKILLed (its pid file names a dead
# pid): the scratch tmpfs with its mounts, and the disk source directory.
for d in /tmp/holdfast-bench.* "$DISK_BASE"/holdfast-bench.*; do
	[ -d "$d" ] || continue
	opid=$(cat "$d/.owner" 2>/dev/null || true)
	[ -n "$opid" ] && kill -0 "$opid" 2>/dev/null && continue
	log "removing leftovers of an earlier run: $d"
	for m in $(awk -v s="$d/" 'index($5, s) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
		is_fuse_mount "$m" && fusectl_abort "$(mount_minor "$m")"
		timeout -k 2 5 umount -l "$m" 2>/dev/null
	done
	mountpoint -q "$d" && { umount "$d" 2>/dev/null || umount -l "$d"; }
	rm -rf --one-file-system "$d" 2>/dev/null || true
done

# START_WHY: why the last start_server failed, when it knows more than
# "did not start".
START_WHY=""
start_server() { # start_server KEY SRC MNT LOG: launch, wait until mounted (and verified)
	local c=$1 col=${1%@*} src=$2 mnt=$3 logf=$4 fifo rfd pid line="" i ok=0 use_fd=0 how="" t0
	t0=$(now)
	START_WHY=""
	CMD=()
	"col_${col}_cmd" "$src" "$mnt"
	declare -F "col_${col}_ready_fd" >/dev/null && "col_${col}_ready_fd" && use_fd=1
	echo "# $(date -Is) ${CMD[*]}" >>"$logf"
	if [ "$use_fd" = 1 ]; then
		fifo=$SCRATCH/.ready-$c
		rm -f "$fifo"; mkfifo "$fifo"
		exec {rfd}<>"$fifo"   # read-write: opening the write side cannot block
		# setsid: the server gets no terminal signals; we stop it ourselves.
		setsid "${CMD[@]}" 3>"$fifo" {rfd}<&- </dev/null >>"$logf" 2>&1 &
	else
		setsid "${CMD[@]}" </dev/null >>"$logf" 2>&1 &
	fi
	pid=$!
	SRV_PID[$c]=$pid
	SRV_MNT[$c]=$mnt
	# Ready: "ready\n" on the ready fd, or (fallback) the mount appears.
	for i in $(seq 300); do
		if [ "$use_fd" = 1 ] && read -r -t 0.1 -u "$rfd" line && [ "$line" = ready ]; then
			ok=1; how="ready fd"; break
		fi
		if is_fuse_mount "$mnt"; then ok=1; how="mountinfo"; break; fi
		kill -0 "$pid" 2>/dev/null || break
		[ "$use_fd" = 1 ] || sleep 0.1
	done
	if [ "$use_fd" = 1 ]; then exec {rfd}<&-; rm -f "$fifo"; fi
	if [ "$ok" = 1 ] && ! is_fuse_mount "$mnt"; then
		# Said ready, but the mount is not (yet) in mountinfo: give it 3 s.
		for i in $(seq 30); do is_fuse_mount "$mnt" && break; sleep 0.1; done
		is_fuse_mount "$mnt" || ok=0
	fi
	if [ "$ok" != 1 ]; then
		log "$c: server did not come up (log: $logf); tail:"
		tail -n 5 "$logf" >&2
		stop_server "$c"
		return 1
	fi
	SRV_CONN[$c]=$(mount_minor "$mnt")
	echo "# ready after $(elapsed "$t0" "$(now)") s ($how), pid $pid, connection ${SRV_CONN[$c]}, fstype $(mount_fstype "$mnt")" >>"$logf"
	if declare -F "col_${col}_verify" >/dev/null && ! START_WHY=$("col_${col}_verify" "$pid" "$mnt"); then
		START_WHY="not in its mode: $START_WHY"
		log "$c: $START_WHY"
		echo "# $START_WHY" >>"$logf"
		stop_server "$c"
		return 1
	fi
	return 0
}

server_alive() { # server_alive KEY: process alive and mount answers
	local c=$1
	[ -z "${SRV_PID[$c]:-}" ] && return 0   # native
	kill -0 "${SRV_PID[$c]}" 2>/dev/null || return 1
	timeout 10 stat "${SRV_MNT[$c]}/" >/dev/null 2>&1
}

# ---------------------------------------------------------------- setup
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$CACHE/bench/$STAMP}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)

SKIPPED=""
for c in $COLUMNS; do
	"col_${c}_check" || { log "skipping column '$c'"; SKIPPED="$SKIPPED $c"; COLUMNS=$(tr ' ' '\n' <<<"$COLUMNS" | grep -vx "$c" | tr '\n' ' '); }
done
read -r -a COLS <<<"$COLUMNS"
[ "${#COLS[@]}" -gt 0 ] || die "no column can run"
read -r -a ROWL <<<"$ROWS"

RAW=$OUT/raw.csv
TABLE=$OUT/table.md
RUNLOG=$OUT/logs/run.log
: >"$RAW"; echo "rep,row,column,value,unit,status,source" >"$RAW"

# Metadata helper (fsops.c), compiled into the cache when the source changes.
FSOPS=$CACHE/bench/bin/fsops
mkdir -p "$(dirname "$FSOPS")"
if [ ! -x "$FSOPS" ] || [ "$SCRIPT_DIR/fsops.c" -nt "$FSOPS" ]; then
	cc -O2 -Wall -Wextra -o "$FSOPS.tmp" "$SCRIPT_DIR/fsops.c" || die "cannot compile fsops.c"
	mv "$FSOPS.tmp" "$FSOPS"
fi

# Instances: a column on a source.  The key is the column's name on tmpfs
# and NAME@disk on the disk, so a tmpfs-only run keeps its old names (logs,
# mountpoints).  Source-major order, so the two columns of a ratio pair stay
# next to each other when the order rotates.
inst_key() { if [ "$2" = tmpfs ]; then echo "$1"; else echo "$1@$2"; fi; }
inst_col() { echo "${1%@*}"; }
inst_src() { if [[ "$1" == *@disk ]]; then echo "$DISKDIR/src/${1%@*}"; else echo "$SCRATCH/src/$1"; fi; }
INST=()
for s in "${SOURCES[@]}"; do
	for c in "${COLS[@]}"; do INST+=("$(inst_key "$c" "$s")"); done
done

# Scratch tmpfs: every tmpfs column's 1 GiB file lives at once (row-major
# interleaving), plus two extracted trees of one column at a time, plus the
# tarball, plus slack.  It also holds every mountpoint.
TAR_MIB=$(du -sm --apparent-size "$TAR_SRC" | awk '{ print $1 }')
ncol_on() { local n=0 s; for s in "${SOURCES[@]}"; do [ "$s" = "$1" ] && n=${#COLS[@]}; done; echo "$n"; }
size_mib=$(( $(ncol_on tmpfs) * (FILE_MIB + 64) + 3 * TAR_MIB + 512 ))
SCRATCH=$(mktemp -d /tmp/holdfast-bench.XXXXXX)
mount -t tmpfs -o "size=${size_mib}m,mode=0755" holdfast-bench "$SCRATCH" || die "cannot mount tmpfs on $SCRATCH"
echo $$ >"$SCRATCH/.owner"
mkdir -p "$SCRATCH/src" "$SCRATCH/mnt"

# Disk source: a run-private directory on a disk file system (removed at
# exit), for the same files as the tmpfs columns need; the mountpoints and
# the tarball stay on the tmpfs.
DISK_DESC=""
if [ "$(ncol_on disk)" != 0 ]; then
	[ -d "$DISK_BASE" ] || die "BENCH_DISK_DIR $DISK_BASE is not a directory"
	fstype=$(stat -f -c %T "$DISK_BASE")
	[ "$fstype" != tmpfs ] || die "$DISK_BASE is a tmpfs; --source disk wants a disk (set BENCH_DISK_DIR)"
	need_mib=$(( $(ncol_on disk) * (FILE_MIB + 64) + 2 * TAR_MIB + 512 ))
	avail_mib=$(df -Pm "$DISK_BASE" | awk 'NR == 2 { print $4 }')
	[ "$avail_mib" -ge "$need_mib" ] || die "$DISK_BASE has $avail_mib MiB free; --source disk needs $need_mib MiB"
	DISKDIR=$(mktemp -d "$DISK_BASE/holdfast-bench.XXXXXX") || die "cannot make a directory in $DISK_BASE"
	echo $$ >"$DISKDIR/.owner"
	mkdir -p "$DISKDIR/src"
	DISK_DESC="$(findmnt -n -o FSTYPE,SOURCE -T "$DISKDIR" | tr -s ' ' | sed 's/ / on /') at $DISKDIR"
fi
TARBALL=$SCRATCH/tree.tar
tar -cf "$TARBALL" -C "$(dirname "$TAR_SRC")" "$(basename "$TAR_SRC")" 2>>"$RUNLOG" \
	|| die "cannot make the tarball of $TAR_SRC"

{
	echo "# holdfast bench $STAMP"
	echo "kernel: $(uname -r); cpus: $(nproc); reps: $REPS; quick: $QUICK"
	echo "files: $FILES; file: $FILE_MIB MiB; fio: $FIO_SECONDS s; qd32 engine: $QD32_ENGINE; tar: $TAR_SRC ($TAR_MIB MiB, $TREE_FILES files + $TREE_DIRS dirs); tmpfs: $size_mib MiB at $SCRATCH"
	echo "sources: ${SOURCES[*]}${DISK_DESC:+; disk: $DISK_DESC}"
	for c in "${COLS[@]}"; do echo "column $c: ${COL_NOTE[$c]}"; done
	if [ -n "$HOLDFASTD_SNAP" ]; then
		echo "holdfastd: snapshot of $HOLDFASTD_ORIG ($(stat -c %y "$HOLDFASTD_ORIG" 2>/dev/null), sha256 $(sha256sum "$HOLDFASTD" | cut -c1-16)); $("$HOLDFASTD" --version 2>&1 | head -1)"
		CMD=(); col_holdfastd_cmd SRC MNT
		echo "holdfastd argv: ${CMD[*]}"
	fi
	[ -z "$PHP_AUTO" ] || echo "passthrough_hp (3.14): $PHP_AUTO"
	[ -z "$PHP318" ] || echo "passthrough_hp318: $PHP318"
} >"$OUT/meta.txt"
log "results: $OUT"
log "columns: ${COLS[*]}; rows: ${ROWL[*]}; sources: ${SOURCES[*]}; reps: $REPS; tmpfs ${size_mib} MiB${DISK_DESC:+; disk: $DISK_DESC}"

# ---------------------------------------------------------------- run
declare -A COL_DEAD=()    # COL_DEAD[c]=1: server gone for this rep
declare -A COL_DIR=()
ERRORS=0

# record REP ROW KEY VALUE UNIT STATUS: one raw.csv line (column and source
# split from KEY; a comma in STATUS would shift the source field).
record() {
	local src=tmpfs
	[[ "$3" == *@* ]] && src=${3#*@}
	echo "$1,$2,${3%@*},$4,$5,${6//,/;},$src" >>"$RAW"
}
declare -A ROW_SECS=()   # wall time of each row (prep included), all instances and reps

# The row functions and the variables they use, for the child shells below.
ROWLIB=$SCRATCH/.rowlib.sh
{
	echo "set -o pipefail"
	declare -f
	declare -p FILES FILE_MIB FSOPS TARBALL FIO_SECONDS TAR_MIB WARM QD32_ENGINE
} >"$ROWLIB"

# run_limited FUNC DIR: run a row function in a child bash under timeout(1),
# which puts it in its own process group and kills the whole group after
# ROW_TIMEOUT s (a hung FUSE server must not hang the benchmark).  It runs in
# the background and we `wait`, so Ctrl-C reaches our trap at once; cleanup()
# then kills ROW_PID's group.
ROW_PID=""
run_limited() {
	local rc
	timeout -k 5 "$ROW_TIMEOUT" bash -c '. "$0" && "$1" "$2"' "$ROWLIB" "$1" "$2" &
	ROW_PID=$!
	wait "$ROW_PID"
	rc=$?
	ROW_PID=""
	return "$rc"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(now)
for ((rep = 1; rep <= REPS; rep++)); do
	# Rotate the column order so no column always goes first.
	order=()
	for ((i = 0; i < ${#INST[@]}; i++)); do order+=("${INST[(i + rep - 1) % ${#INST[@]}]}"); done
	log "rep $rep/$REPS: order ${order[*]}"

	# Mount every column afresh on a fresh source directory.
	for c in "${INST[@]}"; do
		COL_DEAD[$c]=""
		src=$(inst_src "$c")
		rm -rf --one-file-system "$src"; mkdir -p "$src"
		if declare -F "col_$(inst_col "$c")_cmd" >/dev/null; then
			mnt=$SCRATCH/mnt/$c
			mkdir -p "$mnt"
			if start_server "$c" "$src" "$mnt" "$OUT/logs/$c.log"; then
				COL_DIR[$c]=$mnt
			else
				COL_DEAD[$c]=${START_WHY:-did not start}
				ERRORS=$((ERRORS + 1))
			fi
		else
			COL_DIR[$c]=$src
		fi
	done

	for r in "${ROWL[@]}"; do
		unit=$(row_field "$r" 2)
		t_row=$(now)
		for c in "${order[@]}"; do
			if [ -n "${COL_DEAD[$c]}" ]; then
				record "$rep" "$r" "$c" "" "$unit" "skipped: ${COL_DEAD[$c]}"
				continue
			fi
			dir=${COL_DIR[$c]}
			status=ok
			value=""
			echo "# rep $rep row $r column $c" >>"$RUNLOG"
			if declare -F "row_${r}_prep" >/dev/null; then
				run_limited "row_${r}_prep" "$dir" >>"$RUNLOG" 2>&1
				rc=$?
				if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
					status="timeout after ${ROW_TIMEOUT}s (prep)"
				elif [ "$rc" != 0 ]; then
					status="prep failed (rc $rc)"
				fi
			fi
			if [ "$status" = ok ]; then
				run_limited "row_${r}" "$dir" >"$SCRATCH/.value" 2>>"$RUNLOG"
				rc=$?
				value=$(cat "$SCRATCH/.value")
				if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
					status="timeout after ${ROW_TIMEOUT}s"
				elif [ "$rc" != 0 ] || ! [[ "$value" =~ ^[0-9.]+$ ]]; then
					status="failed (rc $rc)"
				fi
			fi
			if [ "$status" != ok ]; then
				value=""
				ERRORS=$((ERRORS + 1))
				log "rep $rep: $r on $c: $status (see $RUNLOG)"
				if [[ "$status" == timeout* ]]; then
					COL_DEAD[$c]="server hung during '$r' in rep $rep"
					log "$c: ${COL_DEAD[$c]}"
					stop_server "$c"
				elif ! server_alive "$c"; then
					COL_DEAD[$c]="server died during '$r' in rep $rep"
					log "$c: ${COL_DEAD[$c]}"
					stop_server "$c"
				fi
			fi
			record "$rep" "$r" "$c" "$value" "$unit" "$status"
			[ "$status" = ok ] && log "rep $rep: $(printf '%-17s %-28s %12s %s' "$r" "$c" "$value" "$unit")"
		done
		ROW_SECS[$r]=$(awk -v a="${ROW_SECS[$r]:-0}" -v b="$(elapsed "$t_row" "$(now)")" 'BEGIN { printf "%.1f", a + b }')
	done

	# Crash check after the rep, then unmount for the next one.
	for c in "${INST[@]}"; do
		if [ -z "${COL_DEAD[$c]}" ] && ! server_alive "$c"; then
			log "$c: server dead or mount unresponsive at the end of rep $rep"
			ERRORS=$((ERRORS + 1))
		fi
		stop_server "$c"
		rm -rf --one-file-system "$(inst_src "$c")"
	done
done
T_END=$(now)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
# Median over the ok values of each (row, column); spread = (max-min)/median.
{
	echo "# holdfast benchmark ($STAMP)"
	echo
	echo "Medians of $REPS repetitions; columns interleaved within each repetition."
	echo "Machine: $(nproc) CPUs, kernel $(uname -r); source: ${SOURCES[*]}. Rows marked (s): lower is better;"
	echo "(MiB/s), (IOPS): higher is better. Ratio A/B = median over the repetitions of"
	echo "A's value / B's value in the same repetition (so for (s) rows > 1 means A is slower,"
	echo "for (MiB/s) and (IOPS) rows < 1 means A is slower)."
	echo "Load average (1/5/15 min) at start: $LOAD_START; at end: $LOAD_END."
	if awk -v a="${LOAD_START%% *}" -v b="${LOAD_END%% *}" -v n="$(nproc)" 'BEGIN { exit !(a > n / 2 || b > n / 2) }'; then
		echo
		echo "**Warning: the machine was busy with other work during this run (load above"
		echo "half the CPUs); absolute numbers are low and noisy, trust only the ratios, if those.**"
	fi
	echo
} >"$TABLE"

# The ratio pairs whose columns ran ("A:B1|B2" -> A:first Bi that ran).
RATIOS_RUN=""
for pair in $RATIOS; do
	IFS='|' read -r -a alts <<<"${pair#*:}"
	for b in "${alts[@]}"; do
		if [[ " ${COLS[*]} " == *" $b "* ]]; then RATIOS_RUN="$RATIOS_RUN ${pair%%:*}:$b"; break; fi
	done
done

# One table per source: the columns ran on each source alike, and a ratio
# compares two columns on the same source.
source_note() {
	case "$1" in
	tmpfs) echo "every column's source directory is on one scratch tmpfs (native and cold reads never touch a disk)" ;;
	disk) echo "every column's source directory is in $DISK_DESC; drop_caches empties its page cache too, so cold reads read the disk, in the native column as well" ;;
	esac
}
for src in "${SOURCES[@]}"; do
if [ "${#SOURCES[@]}" -gt 1 ]; then
	{ echo "## Source: $src"; echo; echo "$(source_note "$src")."; echo; } >>"$TABLE"
else
	{ echo "Source: $(source_note "$src")."; echo; } >>"$TABLE"
fi
awk -F, -v src="$src" -v cols="${COLS[*]}" -v rows="${ROWL[*]}" -v ratios="$RATIOS_RUN" -v rowtable="$ROWS_TABLE" '
function median(s,    a, n, i, j, t) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
	if (n == 0) return ""
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function fmt(v) {
	if (v == "") return "-"
	if (v >= 1000) return sprintf("%.0f", v)
	if (v >= 100) return sprintf("%.1f", v)
	if (v >= 1) return sprintf("%.2f", v)
	return sprintf("%.3f", v)
}
BEGIN {
	nr = split(rowtable, rl, "\n")
	for (i = 1; i <= nr; i++) if (rl[i] != "") { split(rl[i], f, "|"); label[f[1]] = f[4] }
}
NR > 1 && $7 != src { next }
NR > 1 && $6 == "ok" { pv[$1, $2, $3] = $4; if ($1 + 0 > maxrep) maxrep = $1 + 0; v[$2, $3] = v[$2, $3] " " $4; cnt[$2, $3]++; if (!(($2, $3) in mn) || $4 + 0 < mn[$2, $3]) mn[$2, $3] = $4 + 0; if ($4 + 0 > mx[$2, $3]) mx[$2, $3] = $4 + 0 }
NR > 1 && $6 != "ok" { bad[$2, $3]++ }
END {
	nc = split(cols, C, " "); nrow = split(rows, R, " "); nra = split(ratios, RA, " ")
	hdr = "| row |"; sep = "|---|"
	for (j = 1; j <= nc; j++) { hdr = hdr " " C[j] " |"; sep = sep "---:|" }
	for (k = 1; k <= nra; k++) { split(RA[k], p, ":"); use[k] = 0; for (j = 1; j <= nc; j++) if (C[j] == p[1]) use[k]++; else if (C[j] == p[2]) use[k]++; if (use[k] == 2) { hdr = hdr " " p[1] "/" p[2] " |"; sep = sep "---:|" } }
	print hdr; print sep
	for (i = 1; i <= nrow; i++) {
		r = R[i]; line = "| " label[r] " |"
		for (j = 1; j <= nc; j++) {
			m[C[j]] = median(v[r, C[j]]); cell = fmt(m[C[j]])
			if (bad[r, C[j]]) cell = cell " (" bad[r, C[j]] " err)"
			line = line " " cell " |"
		}
		for (k = 1; k <= nra; k++) if (use[k] == 2) {
			# Median of the per-repetition ratios: the two columns ran
			# back to back within a repetition, so pairing them cancels
			# most of the machine'"'"'s drift.  Ratio of medians if no pair.
			split(RA[k], p, ":"); pr = ""
			for (q = 1; q <= maxrep; q++)
				if (((q, r, p[1]) in pv) && ((q, r, p[2]) in pv) && pv[q, r, p[2]] + 0 > 0)
					pr = pr " " (pv[q, r, p[1]] / pv[q, r, p[2]])
			rt = (pr != "") ? median(pr) : ((m[p[1]] != "" && m[p[2]] + 0 > 0) ? m[p[1]] / m[p[2]] : "")
			line = line " " ((rt != "") ? sprintf("%.2f", rt) : "-") " |"
		}
		print line
	}
	print ""
	print "Spread per cell, (max-min)/median over the repetitions:"
	print ""
	line = "|---|"; h = "| row |"
	for (j = 1; j <= nc; j++) { h = h " " C[j] " |"; line = line "---:|" }
	print h; print line
	for (i = 1; i <= nrow; i++) {
		r = R[i]; l = "| " label[r] " |"
		for (j = 1; j <= nc; j++) {
			md = median(v[r, C[j]])
			l = l " " ((md != "" && md > 0) ? sprintf("%.0f%% (n=%d)", 100 * (mx[r, C[j]] - mn[r, C[j]]) / md, cnt[r, C[j]]) : "-") " |"
		}
		print l
	}
}' "$RAW" >>"$TABLE"
echo >>"$TABLE"
done

secs=$(awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "%.0f", b - a }')
{
	for c in "${COLS[@]}"; do echo "- $c: ${COL_NOTE[$c]}"; done
	[ -z "$SKIPPED" ] || echo "- **skipped (could not run):$SKIPPED** (see the log above the table)"
	for c in "${INST[@]}"; do
		n=$(grep -cF -- "$PASSTHROUGH_FAILED" "$OUT/logs/$c.log" 2>/dev/null) || n=0
		[ "$n" = 0 ] && continue
		ERRORS=$((ERRORS + 1))
		echo "- **$c: the kernel refused a passthrough backing file $n time(s); passthrough_hp then served reads and writes itself, so this column is not all passthrough**"
	done
	# What the servers said that looks like trouble (crash, restart, error);
	# our own "# ..." lines and info/debug messages are not.
	trouble() { grep -v -e '^# ' -e ' info: ' -e ' debug: ' | grep -iE 'error|warn|crash|restart|signal|abort|fatal|fail|killed|dump'; }
	for c in "${INST[@]}"; do
		f=$OUT/logs/$c.log
		[ -f "$f" ] || continue
		n=$(trouble <"$f" | wc -l)
		[ "$n" = 0 ] && continue
		echo "- $c server log: $n line(s) mention errors/warnings/restarts, e.g.:"
		trouble <"$f" | sed -E 's/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -5 | sed 's/^/    /'
	done
	echo
	echo "Run time: ${secs} s (measurement loop). Raw: $RAW. Logs: $OUT/logs/."
	echo "Time per row, all columns and repetitions, prep included (s): $(for r in "${ROWL[@]}"; do printf '%s %s; ' "$r" "${ROW_SECS[$r]:-0}"; done)"
	[ "$ERRORS" = 0 ] || echo "**$ERRORS errors** (see raw.csv status column and logs/run.log)."
} >>"$TABLE"

cat "$TABLE"
log "done in ${secs} s; table: $TABLE; raw: $RAW"
[ "$ERRORS" = 0 ] || { log "$ERRORS errors during the run"; exit 3; }
exit 0
