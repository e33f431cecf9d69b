// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-fs reconnect (kernel/patches/6.1, "virtiofs: park the connection
 * while the device is gone"), the guest side.  The host side is
 * selftests/vm/reconnect-host.sh, run by run-vm.sh --host-script while the
 * VM runs; selftests/vm/check-vm.sh puts the two together.
 *
 * Two virtio-fs devices:
 *   rc    the device under test.  /init does not mount it (@nomount); this
 *         test mounts it at /mnt/rc with reconnect_timeout=<hf.rct>, or with
 *         no option on a stock virtiofs.ko, which does not know it.
 *   ctl   a control channel that is never unplugged, mounted by /init with
 *         cache=never (every lookup reaches the host): the guest creates
 *         "go" when its workload runs, the host creates "stop" when it is
 *         done with the device, and the guest writes "expect" (what the host
 *         must find in rc's directory).
 *
 * hf.rc= on the kernel command line says what the host does meanwhile
 * (without it, in the suite VMs, the test reports nothing and passes):
 *   reconnect  kills the server of rc (SIGKILL) several times; each time
 *              holdfast-fdstore restarts it and the host does device_del
 *              and device_add of a device with the same tag.  Writers,
 *              readers, creates+renames and a directory lister run all
 *              along: every syscall must succeed and the data must verify,
 *              here and on the host.  Syscalls that took longer than
 *              STALL_MS are reported as "# stall" lines.  The stall of
 *              each reconnect is the longest syscall in progress when the
 *              new device took over (from the kernel log), reported as
 *              median and max ("# per reconnect").
 *   selfheal   the same, but holdfastd re-plugs the device itself (QMP).
 *   timeout    kills the server and unplugs the device, and never plugs a
 *              new one: the syscall waiting for it must fail with
 *              ECONNABORTED (or ENOTCONN) after reconnect_timeout, and
 *              umount must then work.
 *   suspend    the guest suspends to RAM SUSPENDS times (the host wakes it
 *              up with QMP system_wakeup) while the workload runs: freeze
 *              parks every mount, restore reattaches the same device.
 *   stock      one kill and device_del on the distribution's modules: the
 *              guest is expected to hang (device_del never completes);
 *              only the host's verdict counts (run-vm.sh --expect-hang).
 *
 * hf.rcdax=1: rc has a DAX window (run-vm.sh @dax=SIZE, our patched QEMU)
 * and is mounted with dax=always, so the readers and the writer's
 * overwrites go through the window, and two more workers use it through
 * mmap(MAP_SHARED): one keeps rewriting m.dat (MFILE bytes, more than the
 * window holds, so ranges are reclaimed all along) and reads back what it
 * wrote a lap before, one reads r.dat.  Every kill takes the window with
 * the device (kernel patch 0006): the mappings must come back on the new
 * device with the same bytes, never a stale or zero page.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"

#define RC_MNT "/mnt/rc"
#define CTL "/mnt/ctl"
#define REC 4096		/* one writer record */
#define RFILE_RECS 64		/* the file the readers read */
#define STALL_MS 250		/* a syscall slower than this is a stall */
#define SLOW_MS 50		/* ... and slower than this is remembered */
#define MAX_STALLS 4096
#define WORKLOAD_LIMIT 240	/* seconds: the host must say stop by then */
#define MFILE (12 << 20)	/* the mmap writer's file: six 2 MiB ranges */
#define MRECS (MFILE / REC)

static char mode[32];
static unsigned int rct = 30;
static int dax;			/* hf.rcdax=1 */

static void read_cmdline(void)
{
	char buf[4096], *p;
	ssize_t n;
	int fd = open("/proc/cmdline", O_RDONLY);

	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	p = strstr(buf, "hf.rc=");
	if (p)
		sscanf(p + 6, "%31[^ \n]", mode);
	p = strstr(buf, "hf.rct=");
	if (p)
		rct = strtoul(p + 7, NULL, 10);
	dax = strstr(buf, "hf.rcdax=1") != NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Our virtiofs.ko is out of tree ("O" taint); the stock one is not. */
static int patched_module(void)
{
	char t[16] = "";
	int fd = open("/sys/module/virtiofs/taint", O_RDONLY);

	if (fd < 0)
		return 0;
	if (read(fd, t, sizeof(t) - 1) < 0)
		t[0] = 0;
	close(fd);
	return strchr(t, 'O') != NULL;
}

/*
 * Attribute @attr of rc's /sys/fs/virtiofs/<n>/ (kernel patch 0004) into
 * @out; -1 if there is no such directory.
 */
static int rc_sysfs(const char *attr, char *out, size_t len)
{
	char path[300], tag[64];
	struct dirent *de;
	int fd, r = -1;
	ssize_t n;
	DIR *d;

	d = opendir("/sys/fs/virtiofs");
	if (!d)
		return -1;
	while (r < 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/fs/virtiofs/%s/tag", de->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		n = read(fd, tag, sizeof(tag) - 1);
		close(fd);
		if (n != 3 || strncmp(tag, "rc\n", 3))
			continue;
		snprintf(path, sizeof(path), "/sys/fs/virtiofs/%s/%s", de->d_name, attr);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		n = read(fd, out, len - 1);
		close(fd);
		if (n <= 0)
			continue;
		out[n] = 0;
		out[strcspn(out, "\n")] = 0;
		r = 0;
	}
	closedir(d);
	return r;
}

static int mount_rc(void)
{
	char opts[64];

	mkdir(RC_MNT, 0755);
	if (!patched_module())
		return mount("rc", RC_MNT, "virtiofs", 0, NULL);
	snprintf(opts, sizeof(opts), "reconnect_timeout=%u%s", rct,
		 dax ? ",dax=always" : "");
	return mount("rc", RC_MNT, "virtiofs", 0, opts);
}

static int ctl_touch(const char *name, const char *text)
{
	char path[128];
	int fd, r = 0;

	snprintf(path, sizeof(path), CTL "/%s", name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	if (text && write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		r = -1;
	close(fd);
	return r;
}

/* The number a control file holds (0 if none) */
static long ctl_number(const char *name)
{
	char path[128], buf[32] = "";
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), CTL "/%s", name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? atol(buf) : 0;
}

static int ctl_exists(const char *name)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), CTL "/%s", name);
	return stat(path, &st) == 0;
}

/* The content of record i of the writer's file and of the readers' file. */
static void fill(char *buf, const char *what, unsigned long i)
{
	int n = snprintf(buf, REC, "%s record %lu\n", what, i);
	int k;

	for (k = n; k < REC; k++)
		buf[k] = 'a' + (i + k) % 26;
}

/* Shared by the workers */
static atomic_int stop;
static atomic_long nops;
static atomic_int nerr;
static char first_err[256];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
/* Slow syscalls: when they started, how long they took (ms) */
static struct stall {
	double start, ms;
} stalls[MAX_STALLS];
static int nstalls;
static long wrecs;		/* records the writer wrote */
static long mrecs;		/* records the mmap writer wrote */
static long renames;		/* creates+renames done */

/* Time one syscall; record it as a stall if slow, as an error if failed */
static int op(const char *what, double t0, int ok)
{
	double ms = (now() - t0) * 1000;

	atomic_fetch_add(&nops, 1);
	pthread_mutex_lock(&mu);
	if (ms > SLOW_MS && nstalls < MAX_STALLS) {
		stalls[nstalls].start = t0;
		stalls[nstalls++].ms = ms;
	}
	if (ms > STALL_MS)
		printf("# stall: %s took %.0f ms\n", what, ms);
	if (!ok && atomic_fetch_add(&nerr, 1) == 0)
		snprintf(first_err, sizeof(first_err), "%s: %s", what,
			 strerror(errno));
	pthread_mutex_unlock(&mu);
	return ok;
}

static void *writer(void *arg)
{
	char buf[REC];
	double t0;
	long i;
	int fd;

	t0 = now();
	fd = open(RC_MNT "/w.dat", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (!op("open w.dat", t0, fd >= 0))
		return NULL;
	for (i = 0; !atomic_load(&stop); i++) {
		fill(buf, "writer", i);
		t0 = now();
		if (!op("write w.dat", t0, write(fd, buf, REC) == REC))
			break;
		wrecs = i + 1;
		if (i % 16 == 15) {
			t0 = now();
			if (!op("fsync w.dat", t0, fsync(fd) == 0))
				break;
		}
	}
	t0 = now();
	op("close w.dat", t0, close(fd) == 0);
	return NULL;
}

/* Random records of r.dat, with pread() or (arg != NULL) a shared mapping */
static void *reader(void *arg)
{
	char buf[REC], want[REC];
	unsigned int seed = arg ? 7 : 42;
	const char *map = NULL;
	double t0;
	long i;
	int fd;

	t0 = now();
	fd = open(RC_MNT "/r.dat", O_RDONLY);
	if (!op("open r.dat", t0, fd >= 0))
		return NULL;
	if (arg) {
		map = mmap(NULL, RFILE_RECS * REC, PROT_READ, MAP_SHARED, fd, 0);
		if (!op("mmap r.dat", t0, map != MAP_FAILED))
			goto out;
	}
	while (!atomic_load(&stop)) {
		i = rand_r(&seed) % RFILE_RECS;
		fill(want, "reader", i);
		t0 = now();
		if (map) {
			errno = EBADMSG;
			if (!op("r.dat mapping", t0,
				!memcmp(map + i * REC, want, REC)))
				break;
			usleep(200);
			continue;
		}
		if (!op("pread r.dat", t0,
			pread(fd, buf, REC, i * REC) == REC))
			break;
		if (memcmp(buf, want, REC)) {
			errno = EBADMSG;
			op("r.dat content", now(), 0);
			break;
		}
	}
	if (map)
		munmap((void *)map, RFILE_RECS * REC);
out:
	close(fd);
	return NULL;
}

/*
 * Record i of m.dat goes to slot i % MRECS.  Before it is overwritten, the
 * slot must hold what the lap before wrote there (or zeroes on the first
 * lap): a mapping that came back on a new device with a stale or empty
 * page shows here.  Each access is timed like a syscall.
 */
static void *mwriter(void *arg)
{
	char want[REC];
	char *map;
	double t0;
	long i;
	int fd;

	t0 = now();
	fd = open(RC_MNT "/m.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (!op("open m.dat", t0, fd >= 0))
		return NULL;
	if (!op("ftruncate m.dat", t0, ftruncate(fd, MFILE) == 0))
		goto out;
	map = mmap(NULL, MFILE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (!op("mmap m.dat", t0, map != MAP_FAILED))
		goto out;
	for (i = 0; !atomic_load(&stop); i++) {
		char *slot = map + (i % MRECS) * REC;

		if (i >= MRECS)
			fill(want, "mmap", i - MRECS);
		else
			memset(want, 0, REC);
		t0 = now();
		if (memcmp(slot, want, REC)) {
			errno = EBADMSG;
			op("m.dat content", t0, 0);
			break;
		}
		fill(slot, "mmap", i);
		op("m.dat access", t0, 1);
		mrecs = i + 1;
		/* Leave the (one) vCPU to the other workers now and then */
		if (i % 16 == 15)
			usleep(1000);
		if (i % 256 == 255) {
			t0 = now();
			if (!op("msync m.dat", t0,
				msync(map, MFILE, MS_SYNC) == 0))
				break;
		}
	}
	t0 = now();
	op("msync m.dat", t0, msync(map, MFILE, MS_SYNC) == 0);
	munmap(map, MFILE);
out:
	close(fd);
	return NULL;
}

/* The first kernel log line that tells of a kernel bug, or "" */
static void kernel_trouble(char *out, size_t len)
{
	static const char *const bad[] = {
		"WARNING:", "BUG:", "Oops", "Call Trace", "fuse: dax:",
	};
	static char log[1 << 17];
	char *line, *save;
	int n, i;

	out[0] = 0;
	n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, log, sizeof(log) - 1);
	if (n < 0) {
		snprintf(out, len, "klogctl: %s", strerror(errno));
		return;
	}
	log[n] = 0;
	for (line = strtok_r(log, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		for (i = 0; i < (int)(sizeof(bad) / sizeof(bad[0])); i++) {
			if (strstr(line, bad[i])) {
				snprintf(out, len, "%s", line);
				return;
			}
		}
	}
}

/* Create c.tmp, write it, rename it to c<i>, remove c<i-8> */
static void *renamer(void *arg)
{
	char path[64], old[64], text[64];
	double t0;
	long i;
	int fd, n;

	for (i = 0; !atomic_load(&stop); i++) {
		n = snprintf(text, sizeof(text), "file %ld\n", i);
		t0 = now();
		fd = open(RC_MNT "/c.tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (!op("create c.tmp", t0, fd >= 0))
			break;
		t0 = now();
		if (!op("write c.tmp", t0, write(fd, text, n) == n)) {
			close(fd);
			break;
		}
		t0 = now();
		if (!op("close c.tmp", t0, close(fd) == 0))
			break;
		snprintf(path, sizeof(path), RC_MNT "/c%ld", i);
		t0 = now();
		if (!op("rename c.tmp", t0, rename(RC_MNT "/c.tmp", path) == 0))
			break;
		renames = i + 1;
		if (i >= 8) {
			snprintf(old, sizeof(old), RC_MNT "/c%ld", i - 8);
			t0 = now();
			if (!op("unlink c<i-8>", t0, unlink(old) == 0))
				break;
		}
	}
	return NULL;
}

static void *lister(void *arg)
{
	struct dirent *de;
	double t0;
	DIR *d;
	int n;

	while (!atomic_load(&stop)) {
		t0 = now();
		d = opendir(RC_MNT);
		if (!op("opendir", t0, d != NULL))
			break;
		n = 0;
		errno = 0;
		t0 = now();
		while ((de = readdir(d)))
			n++;
		if (!op("readdir", t0, errno == 0 && n >= 4)) {
			closedir(d);
			break;
		}
		closedir(d);
		usleep(20000);
	}
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int cmp_start(const void *a, const void *b)
{
	return cmp_double(&((const struct stall *)a)->start,
			  &((const struct stall *)b)->start);
}

/*
 * The guest-visible stall of each reconnect: overlapping slow syscalls (all
 * the workers wait for the same device) make one stall, as long as the
 * longest of them.  Fills out[] with one duration per stall, sorted.
 */
static int group_stalls(double *out)
{
	double end = -1;
	int i, n = 0;

	qsort(stalls, nstalls, sizeof(stalls[0]), cmp_start);
	for (i = 0; i < nstalls; i++) {
		double e = stalls[i].start + stalls[i].ms / 1000;

		if (stalls[i].ms <= STALL_MS)
			continue;
		if (stalls[i].start > end) {
			out[n++] = stalls[i].ms;
		} else if (stalls[i].ms > out[n - 1]) {
			out[n - 1] = stalls[i].ms;
		}
		if (e > end)
			end = e;
	}
	qsort(out, n, sizeof(out[0]), cmp_double);
	return n;
}

/*
 * The guest-visible stall of each takeover of rc's connection (patch 0003
 * logs "tag <rc>: took over the parked connection" at that moment): the
 * longest syscall in progress then, 0 if none was slower than SLOW_MS.
 * printk's clock and CLOCK_MONOTONIC both count from boot.  Fills out[]
 * sorted; returns the number of takeovers.
 */
static int takeover_stalls(double *out, int max)
{
	char rec[1024];
	unsigned long long us;
	double t, best;
	ssize_t len;
	int fd, i, n = 0;

	fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return 0;
	while (n < max && (len = read(fd, rec, sizeof(rec) - 1)) > 0) {
		rec[len] = 0;
		if (!strstr(rec, "tag <rc>: took over") ||
		    sscanf(rec, "%*u,%*u,%llu", &us) != 1)
			continue;
		t = us / 1e6;
		best = 0;
		for (i = 0; i < nstalls; i++)
			if (stalls[i].start <= t + 0.02 &&
			    stalls[i].start + stalls[i].ms / 1000 >= t - 0.02 &&
			    stalls[i].ms > best)
				best = stalls[i].ms;
		out[n++] = best;
	}
	close(fd);
	qsort(out, n, sizeof(out[0]), cmp_double);
	return n;
}

/* Make r.dat, which the readers verify */
static int make_rfile(void)
{
	char buf[REC];
	int fd, i;

	fd = open(RC_MNT "/r.dat", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	for (i = 0; i < RFILE_RECS; i++) {
		fill(buf, "reader", i);
		if (write(fd, buf, REC) != REC) {
			close(fd);
			return -1;
		}
	}
	return close(fd);
}

/* Read back w.dat (after a drop of the caches: from the host) */
static long verify_wfile(long recs)
{
	char buf[REC], want[REC];
	long i;
	int fd;

	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd >= 0) {
		if (write(fd, "3", 1) != 1)
			perror("drop_caches");
		close(fd);
	}
	fd = open(RC_MNT "/w.dat", O_RDONLY);
	if (fd < 0)
		return -1;
	for (i = 0; i < recs; i++) {
		fill(want, "writer", i);
		if (pread(fd, buf, REC, i * REC) != REC || memcmp(buf, want, REC))
			break;
	}
	close(fd);
	return i;
}

#define SUSPENDS 3

/* Suspend to RAM once; returns when the host has woken the guest up */
static int suspend_once(void)
{
	double t0 = now();
	int fd, r = 0;

	fd = open("/sys/power/state", O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, "mem", 3) != 3)
		r = -errno;
	close(fd);
	printf("# suspend: %s after %.1f s\n", r ? strerror(-r) : "resumed",
	       now() - t0);
	return r;
}

/* hf.rc=reconnect|selfheal|stock|suspend: the workload runs through all */
static void workload(struct __test_metadata *_metadata)
{
	pthread_t th[7];
	int nth = 5;
	static double per[MAX_STALLS];
	char text[128], path[64], v[64];
	long cycles;
	struct stat st;
	double t0;
	int i, r, n;

	if (!strcmp(mode, "suspend")) {
		/*
		 * Suspend needs every virtio-fs mount to be able to park, so
		 * ctl is not mounted by /init either (@nomount).
		 */
		ASSERT_TRUE(patched_module());
		mkdir(CTL, 0755);
		ASSERT_EQ(0, mount("ctl", CTL, "virtiofs", 0, "reconnect_timeout=60"));
	}
	ASSERT_EQ(0, mount_rc()) TH_LOG("mount rc: %s", strerror(errno));
	ASSERT_EQ(0, make_rfile());

	ASSERT_EQ(0, pthread_create(&th[0], NULL, writer, NULL));
	ASSERT_EQ(0, pthread_create(&th[1], NULL, reader, NULL));
	ASSERT_EQ(0, pthread_create(&th[2], NULL, reader, NULL));
	ASSERT_EQ(0, pthread_create(&th[3], NULL, renamer, NULL));
	ASSERT_EQ(0, pthread_create(&th[4], NULL, lister, NULL));
	if (dax) {
		ASSERT_EQ(0, pthread_create(&th[nth++], NULL, mwriter, NULL));
		ASSERT_EQ(0, pthread_create(&th[nth++], NULL, reader, "mapped"));
	}
	ASSERT_EQ(0, ctl_touch("go", NULL));

	t0 = now();
	if (!strcmp(mode, "suspend")) {
		/* The host wakes the guest up (QMP system_wakeup) */
		for (cycles = 0; cycles < SUSPENDS && !atomic_load(&nerr);
		     cycles++) {
			sleep(1);
			r = suspend_once();
			ASSERT_EQ(0, r) TH_LOG("suspend: %s", strerror(-r));
		}
		ASSERT_EQ(0, ctl_touch("stop", NULL));
	}
	while (!ctl_exists("stop") && atomic_load(&nerr) == 0 &&
	       now() - t0 < WORKLOAD_LIMIT)
		usleep(100000);
	EXPECT_TRUE(ctl_exists("stop")) TH_LOG("the host never said stop");
	if (strcmp(mode, "suspend"))
		cycles = ctl_number("stop");
	/* Some more work on the last device */
	sleep(1);
	atomic_store(&stop, 1);
	for (i = 0; i < nth; i++)
		pthread_join(th[i], NULL);

	n = takeover_stalls(per, MAX_STALLS);
	if (n)
		printf("# per reconnect (%d): guest-visible stall median %.0f ms, max %.0f ms, min %.0f ms\n",
		       n, per[n / 2], per[n - 1], per[0]);
	n = group_stalls(per);
	printf("# workload: %ld syscalls in %.1f s, %d failed%s%s\n",
	       atomic_load(&nops), now() - t0, atomic_load(&nerr),
	       nerr ? ", first: " : "", nerr ? first_err : "");
	printf("# stalls over %d ms, overlapping ones grouped: %d, median %.0f ms, max %.0f ms (syscalls over %d ms: %d)\n",
	       STALL_MS, n, n ? per[n / 2] : 0.0, n ? per[n - 1] : 0.0,
	       SLOW_MS, nstalls);
	EXPECT_EQ(0, atomic_load(&nerr)) TH_LOG("%s", first_err);

	/* Everything the writer and the renamer did is there */
	EXPECT_EQ(wrecs, verify_wfile(wrecs));
	ASSERT_EQ(0, stat(RC_MNT "/w.dat", &st));
	EXPECT_EQ(wrecs * REC, st.st_size);
	if (renames) {
		snprintf(path, sizeof(path), RC_MNT "/c%ld", renames - 1);
		EXPECT_EQ(0, stat(path, &st));
	}
	EXPECT_GT(wrecs, 0);
	EXPECT_GT(renames, 0);

	/* Each kill was one reconnect of the same connection */
	if (patched_module()) {
		ASSERT_EQ(0, rc_sysfs("reconnects", v, sizeof(v)));
		TH_LOG("sysfs: %s reconnects, host: %ld", v, cycles);
		EXPECT_EQ(cycles, atol(v));
		ASSERT_EQ(0, rc_sysfs("state", v, sizeof(v)));
		EXPECT_STREQ("live", v);
	}
	if (dax) {
		struct statx stx;

		/* The mapping writer got through a lap or more... */
		EXPECT_GT(mrecs, MRECS) TH_LOG("m.dat: %ld records", mrecs);
		TH_LOG("m.dat: %ld records through the mapping", mrecs);
		/* ... through the window */
		ASSERT_EQ(0, statx(AT_FDCWD, RC_MNT "/m.dat", 0, STATX_BASIC_STATS,
				   &stx));
		EXPECT_TRUE(stx.stx_attributes_mask & STATX_ATTR_DAX);
		EXPECT_TRUE(stx.stx_attributes & STATX_ATTR_DAX);
	}
	kernel_trouble(text, sizeof(text));
	EXPECT_STREQ("", text);
	snprintf(text, sizeof(text), "w.dat %ld\nrenames %ld\nm.dat %ld\n",
		 wrecs, renames, dax ? mrecs : 0L);
	EXPECT_EQ(0, ctl_touch("expect", text));

	r = umount(RC_MNT);
	EXPECT_EQ(0, r) TH_LOG("umount: %s", strerror(errno));
}

static void *prober(void *arg)
{
	double *failed_at = arg;
	struct stat st;
	double t0;

	while (!atomic_load(&stop)) {
		t0 = now();
		if (stat(RC_MNT "/r.dat", &st)) {
			*failed_at = now();
			pthread_mutex_lock(&mu);
			snprintf(first_err, sizeof(first_err), "%d", errno);
			pthread_mutex_unlock(&mu);
			return NULL;
		}
		op("stat", t0, 1);
		usleep(10000);
	}
	return NULL;
}

static __thread sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
	siglongjmp(bus_jmp, 1);
}

/*
 * hf.rcdax=1: reads r.dat through a shared mapping, a page every 10 ms,
 * until an access fails (SIGBUS); when, in *arg.  The mapping is in
 * mapped_file.
 */
static const char *mapped_file;

static void *mapped_prober(void *arg)
{
	volatile unsigned long sum = 0;
	double *failed_at = arg;
	long i = 0;

	if (sigsetjmp(bus_jmp, 1)) {
		*failed_at = now();
		return NULL;
	}
	while (!atomic_load(&stop)) {
		sum += ((volatile const char *)mapped_file)[(i++ % RFILE_RECS) * REC];
		usleep(10000);
	}
	return NULL;
}

/* hf.rc=timeout: no device comes back */
static void timeout_fails(struct __test_metadata *_metadata)
{
	double failed_at = 0, mapped_failed_at = 0, t0;
	struct sigaction sa = { .sa_handler = on_sigbus };
	char v[64] = "", trouble[256];
	struct stat st;
	pthread_t th, mth;
	int err, fd = -1;

	ASSERT_TRUE(patched_module());
	ASSERT_EQ(0, mount_rc()) TH_LOG("mount rc: %s", strerror(errno));
	ASSERT_EQ(0, make_rfile());
	if (dax) {
		/* Mapped, and every page touched, while the device is there */
		ASSERT_EQ(0, sigaction(SIGBUS, &sa, NULL));
		fd = open(RC_MNT "/r.dat", O_RDONLY);
		ASSERT_LE(0, fd);
		mapped_file = mmap(NULL, RFILE_RECS * REC, PROT_READ,
				   MAP_SHARED, fd, 0);
		ASSERT_NE(MAP_FAILED, mapped_file);
		for (int i = 0; i < RFILE_RECS; i++)
			ASSERT_EQ('r', mapped_file[i * REC]);
		ASSERT_EQ(0, pthread_create(&mth, NULL, mapped_prober,
					    &mapped_failed_at));
	}
	/* rc is served with cache=never: every stat reaches the device */
	ASSERT_EQ(0, pthread_create(&th, NULL, prober, &failed_at));
	ASSERT_EQ(0, ctl_touch("go", NULL));

	/* While parked, sysfs says so and counts the waiting request */
	t0 = now();
	while (!failed_at && now() - t0 < WORKLOAD_LIMIT &&
	       (rc_sysfs("state", v, sizeof(v)) || strcmp(v, "parked")))
		usleep(50000);
	EXPECT_STREQ("parked", v);
	EXPECT_EQ(0, rc_sysfs("parked", v, sizeof(v)));
	EXPECT_GE(atoi(v), 1);
	while (!failed_at && now() - t0 < WORKLOAD_LIMIT)
		usleep(100000);
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	ASSERT_NE(0, failed_at) TH_LOG("the syscall never failed");
	err = atoi(first_err);
	TH_LOG("stat failed with %s after %.1f s (reconnect_timeout=%u)",
	       strerror(err), failed_at - t0, rct);
	EXPECT_TRUE(err == ECONNABORTED || err == ENOTCONN)
		TH_LOG("errno %d", err);
	/* It waited for the timeout, not less */
	EXPECT_GE(failed_at - t0, rct);
	if (dax) {
		/*
		 * The window went with the device: the next access through
		 * the mapping waited for a new one, and the timeout ended the
		 * wait with SIGBUS, not a hang and not a page of something
		 * else.
		 */
		pthread_join(mth, NULL);
		ASSERT_NE(0, mapped_failed_at) TH_LOG("the mapped access never failed");
		TH_LOG("the mapped access failed with SIGBUS after %.1f s",
		       mapped_failed_at - t0);
		EXPECT_GE(mapped_failed_at - t0, rct);
		EXPECT_EQ(0, munmap((void *)mapped_file, RFILE_RECS * REC));
		close(fd);
	}

	/* Later syscalls fail at once, and the mount goes away */
	t0 = now();
	EXPECT_NE(0, stat(RC_MNT "/r.dat", &st));
	EXPECT_EQ(ENOTCONN, errno);
	EXPECT_LT(now() - t0, 1.0);
	EXPECT_EQ(0, umount(RC_MNT)) TH_LOG("umount: %s", strerror(errno));
	/* The instance is gone with its connection */
	EXPECT_EQ(-1, rc_sysfs("state", v, sizeof(v)));
	kernel_trouble(trouble, sizeof(trouble));
	EXPECT_STREQ("", trouble);
	EXPECT_EQ(0, ctl_touch("expect", "timeout\n"));
}

FIXTURE(rc) {
};

FIXTURE_SETUP(rc)
{
}

FIXTURE_TEARDOWN(rc)
{
}

/* One test: what the host does (hf.rc) decides what must happen */
TEST_F_TIMEOUT(rc, reconnect, WORKLOAD_LIMIT + 60)
{
	TH_LOG("hf.rc=%s, reconnect_timeout=%u, %s virtiofs.ko", mode, rct,
	       patched_module() ? "holdfast's" : "the stock");
	if (!strcmp(mode, "timeout"))
		timeout_fails(_metadata);
	else
		workload(_metadata);
}

static void __attribute__((constructor)) setup(void)
{
	read_cmdline();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!mode[0]) {
		/* A suite VM (no hf.rc=, no rc device): nothing to test here */
		printf("TAP version 13\n1..0\n# not a reconnect VM (no hf.rc=)\n"
		       "# Totals: pass:0 fail:0 xfail:0 xpass:0 skip:0 error:0\n");
		exit(0);
	}
}

TEST_HARNESS_MAIN
