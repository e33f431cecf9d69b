// SPDX-License-Identifier: GPL-2.0
/*
 * FUSE-over-io_uring (holdfastd --transport uring, Linux 6.14+).
 *
 * The kernel only offers the ring while the fuse module's enable_uring
 * parameter is Y; every fixture here sets it and puts the old value back in
 * its teardown.  Without the parameter (older kernel, or no
 * CONFIG_FUSE_IO_URING) the tests skip.
 *
 *  uring:     a server with --transport uring: status, requests counted per
 *             queue (and queue = CPU of the caller), a mix of file ops, 64 MiB
 *             of data, 10k creates, flock contention on one CPU (SETLKW must
 *             not block its queue), and a kill -9 (the successor registers
 *             fresh entries).
 *  uring_backend: backing-file I/O on the ring (--backend-io): a READ
 *             whose backing file makes it wait does not hold up the next
 *             request on the same queue; with --backend-io sync it does.
 *  uring_off: enable_uring=N: --transport auto falls back to /dev/fuse and
 *             says why; --transport uring refuses to start, clearly.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

#define MiB (1024LL * 1024)
#define ENABLE_URING "/sys/module/fuse/parameters/enable_uring"
#define DEPTH 4

/* The kernel has one ring queue per possible CPU. */
static int possible_cpus(void)
{
	char buf[256];
	const char *p = buf;
	int n = 0, fd;
	ssize_t len;

	fd = open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return -1;
	buf[len] = 0;
	while (*p >= '0' && *p <= '9') {
		char *end;
		long a = strtol(p, &end, 10), b = a;

		if (*end == '-')
			b = strtol(end + 1, &end, 10);
		n += b - a + 1;
		if (*end != ',')
			break;
		p = end + 1;
	}
	return n;
}

/* "KEY": of queue @qid's object in the status document; -1 if absent. */
static double queue_num(const char *doc, int qid, const char *key)
{
	char needle[64], obj[512];
	const char *p, *end;
	double v;

	snprintf(needle, sizeof(needle), "{\"qid\":%d,", qid);
	p = strstr(doc, needle);
	if (!p)
		return -1;
	end = strchr(p, '}');
	if (!end || end - p >= (long)sizeof(obj))
		return -1;
	memcpy(obj, p, end - p);
	obj[end - p] = 0;
	return hf_json_num(obj, key, &v) ? v : -1;
}

static double ring_requests(const struct hf *h)
{
	return hf_status_num(h, "ring_requests");
}

/*
 * Set enable_uring to @want and start the server; the old value goes to
 * *old for the teardown.  Skips (exit 255, see HF_SETUP) when the kernel
 * has no FUSE-over-io_uring.
 */
#define URING_SETUP(_want, _args, _old) do {				\
	struct hf_opts o = { .cache = "auto", .extra_args = (_args) };	\
									\
	*(_old) = hf_uring_param();					\
	if (geteuid() == 0 && !*(_old))					\
		SKIP(_exit(255), "no %s: kernel without FUSE-over-io_uring", \
		     ENABLE_URING);					\
	if (geteuid() == 0)						\
		ASSERT_EQ(0, hf_uring_set(_want)) TH_LOG("write %s: %m", ENABLE_URING); \
	HF_SETUP(&o);							\
} while (0)

#define URING_TEARDOWN(_old) do {					\
	HF_TEARDOWN();							\
	if (_old && hf_uring_param() != _old && hf_uring_set(_old))	\
		TH_LOG("could not restore %s to %c", ENABLE_URING, _old); \
} while (0)

FIXTURE(uring) {
	struct hf h;
	char old;
};

FIXTURE_SETUP(uring)
{
	URING_SETUP('Y', "--transport uring --uring-queue-depth 4", &self->old);
}

FIXTURE_TEARDOWN(uring)
{
	URING_TEARDOWN(self->old);
}

TEST_F(uring, status_reports_queues)
{
	static char doc[16384];
	int cpus = possible_cpus(), q;
	double v;

	ASSERT_LT(0, cpus);
	ASSERT_TRUE(hf_status(&self->h, doc, sizeof(doc)));
	EXPECT_NE(NULL, strstr(doc, "\"transport\":\"uring\"")) TH_LOG("%s", doc);
	ASSERT_TRUE(hf_json_num(doc, "queues", &v));
	EXPECT_EQ(cpus, (int)v);
	ASSERT_TRUE(hf_json_num(doc, "depth", &v));
	EXPECT_EQ(DEPTH, (int)v);
	for (q = 0; q < cpus; q++) {
		/* Every entry is registered: the kernel holds it or we serve it. */
		EXPECT_EQ(DEPTH, (int)queue_num(doc, q, "live")) TH_LOG("queue %d", q);
		EXPECT_EQ(q, (int)queue_num(doc, q, "cpu")) TH_LOG("queue %d not pinned", q);
	}
	EXPECT_EQ(1, hf_log_count(&self->h, "transport: io_uring"));
}

/* A child on CPU @cpu makes @n files and stats them. */
struct on_cpu {
	const struct hf *h;
	int cpu, n;
};

static int ops_on_cpu(void *arg)
{
	struct on_cpu *a = arg;
	cpu_set_t set;
	struct stat st;
	char path[PATH_MAX + 32];
	int i, fd;

	CPU_ZERO(&set);
	CPU_SET(a->cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return 2;
	for (i = 0; i < a->n; i++) {
		snprintf(path, sizeof(path), "%s/cpu%d-%d", a->h->mnt, a->cpu, i);
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
		if (fd < 0 || write(fd, "x", 1) != 1 || close(fd))
			return 1;
		if (stat(path, &st) || st.st_size != 1)
			return 1;
	}
	return 0;
}

TEST_F(uring, requests_go_through_the_queue_of_their_cpu)
{
	static char before[16384], after[16384];
	int cpus = possible_cpus(), q;
	double r0, r1;

	ASSERT_TRUE(hf_status(&self->h, before, sizeof(before)));
	ASSERT_TRUE(hf_json_num(before, "ring_requests", &r0));
	for (q = 0; q < cpus; q++) {
		struct on_cpu a = { &self->h, q, 50 };

		/* An offline CPU cannot run the child: nothing to check there. */
		if (hf_run_child(-1, -1, ops_on_cpu, &a, 30000) == 2)
			continue;
		ASSERT_TRUE(hf_status(&self->h, after, sizeof(after)));
		/* CREATE, WRITE, FLUSH, RELEASE at least; GETATTR/LOOKUP maybe. */
		EXPECT_LE(queue_num(before, q, "requests") + 4 * a.n,
			  queue_num(after, q, "requests"))
			TH_LOG("queue %d: %.0f -> %.0f", q, queue_num(before, q, "requests"),
			       queue_num(after, q, "requests"));
		memcpy(before, after, sizeof(before));
	}
	ASSERT_TRUE(hf_status(&self->h, after, sizeof(after)));
	ASSERT_TRUE(hf_json_num(after, "ring_requests", &r1));
	EXPECT_LE(r0 + 4 * 50 * cpus, r1);
	EXPECT_EQ(0, (int)queue_num(after, 0, "malformed"));
}

TEST_F(uring, file_ops_mix)
{
	char buf[4096], target[64];
	struct statfs sfs;
	struct stat st;
	struct timespec ts[2] = { { 1000000000, 5 }, { 1200000000, 7 } };
	DIR *d;
	struct dirent *de;
	int fd, n = 0;
	double r0 = ring_requests(&self->h);

	ASSERT_EQ(0, mkdir(M("dir"), 0750));
	fd = open(M("dir/f"), O_CREAT | O_RDWR | O_CLOEXEC, 0640);
	ASSERT_LE(0, fd);
	hf_fill(buf, sizeof(buf), 1, 0);
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(fd, buf, sizeof(buf), 0));
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(fd, buf, sizeof(buf), 1 * MiB));
	ASSERT_EQ(0, fsync(fd));
	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 64 * 1024));
	EXPECT_EQ(0, lseek(fd, 0, SEEK_DATA));
	ASSERT_EQ(0, ftruncate(fd, 8192));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(8192, st.st_size);
	ASSERT_EQ(0, close(fd));

	ASSERT_EQ(0, rename(M("dir/f"), M("dir/g")));
	ASSERT_EQ(0, link(M("dir/g"), M("dir/h")));
	ASSERT_EQ(0, symlink("g", M("dir/s")));
	ASSERT_EQ(1, readlink(M("dir/s"), target, sizeof(target)));
	EXPECT_EQ('g', target[0]);
	ASSERT_EQ(0, chmod(M("dir/g"), 0600));
	ASSERT_EQ(0, utimensat(AT_FDCWD, M("dir/g"), ts, 0));
	ASSERT_EQ(0, stat(S("dir/g"), &st));
	EXPECT_EQ(0600, st.st_mode & 07777);
	EXPECT_EQ(2, (int)st.st_nlink);
	EXPECT_EQ(1200000000, st.st_mtim.tv_sec);
	EXPECT_EQ(7, st.st_mtim.tv_nsec);
	ASSERT_EQ((ssize_t)sizeof(buf) , hf_read_file(M("dir/h"), buf, sizeof(buf)));
	EXPECT_EQ(-1, hf_check(buf, sizeof(buf), 1, 0));

	d = opendir(M("dir"));
	ASSERT_NE(NULL, d);
	while ((de = readdir(d)))
		n++;
	closedir(d);
	EXPECT_EQ(5, n); /* . .. g h s */
	ASSERT_EQ(0, statfs(M("dir"), &sfs));
	EXPECT_EQ(-1, open(M("dir/missing"), O_RDONLY | O_CLOEXEC));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(-1, rmdir(M("dir")));
	EXPECT_EQ(ENOTEMPTY, errno);
	ASSERT_EQ(0, unlink(M("dir/s")));
	ASSERT_EQ(0, unlink(M("dir/h")));
	ASSERT_EQ(0, unlink(M("dir/g")));
	ASSERT_EQ(0, rmdir(M("dir")));
	EXPECT_EQ(-1, access(S("dir"), F_OK));
	EXPECT_LE(r0 + 25, ring_requests(&self->h));
}

/* Write 64 MiB in uneven pieces, read it back past the page cache. */
TEST_F_TIMEOUT(uring, data_integrity_64m, 180)
{
	const size_t total = 64 * MiB;
	const size_t sizes[] = { 1 * MiB, 4096, 1, 128 * 1024 + 3, 65536, 777, 2 * MiB };
	char *buf, *back;
	size_t off = 0, i = 0;
	ssize_t bad;
	int fd;

	buf = malloc(2 * MiB);
	back = malloc(total);
	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, back);
	fd = open(M("big"), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	while (off < total) {
		size_t n = sizes[i++ % (sizeof(sizes) / sizeof(sizes[0]))];

		if (n > total - off)
			n = total - off;
		hf_fill(buf, n, 64, off);
		ASSERT_EQ((ssize_t)n, pwrite(fd, buf, n, off)) TH_LOG("at %zu: %m", off);
		off += n;
	}
	ASSERT_EQ(0, fsync(fd));
	ASSERT_EQ(0, close(fd));

	/* The host file is what was written. */
	ASSERT_EQ((ssize_t)total, hf_read_file(S("big"), back, total));
	bad = hf_check(back, total, 64, 0);
	EXPECT_EQ(-1, bad) TH_LOG("host file differs at %zd", bad);

	/* Through the mount, with the file's page cache dropped: READs. */
	memset(back, 0, total);
	fd = open(M("big"), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED));
	for (off = 0; off < total;) {
		ssize_t n = pread(fd, back + off, total - off > 3 * MiB ? 3 * MiB : total - off,
				  off);

		ASSERT_LT(0, n) TH_LOG("pread at %zu: %m", off);
		off += n;
	}
	close(fd);
	bad = hf_check(back, total, 64, 0);
	EXPECT_EQ(-1, bad) TH_LOG("read back differs at %zd", bad);

	/* And with O_DIRECT: every byte is a READ the ring carries. */
	memset(back, 0, total);
	fd = open(M("big"), O_RDONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, 1 * MiB) ? -1 : 0);
	for (off = 0; off < total; off += MiB) {
		ASSERT_EQ(MiB, pread(fd, buf, MiB, off)) TH_LOG("O_DIRECT pread at %zu: %m", off);
		memcpy(back + off, buf, MiB);
	}
	close(fd);
	bad = hf_check(back, total, 64, 0);
	EXPECT_EQ(-1, bad) TH_LOG("O_DIRECT read back differs at %zd", bad);
	free(back);
}

TEST_F_TIMEOUT(uring, creates_10k, 180)
{
	const int n = 10000;
	char path[PATH_MAX + 32];
	struct dirent *de;
	int i, fd, seen = 0;
	double r0 = ring_requests(&self->h);
	DIR *d;

	ASSERT_EQ(0, mkdir(M("many"), 0755));
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/many/f%05d", self->h.mnt, i);
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
		ASSERT_LE(0, fd) TH_LOG("create %d: %m", i);
		ASSERT_EQ(0, close(fd));
	}
	d = opendir(M("many"));
	ASSERT_NE(NULL, d);
	while ((de = readdir(d)))
		if (de->d_name[0] == 'f')
			seen++;
	closedir(d);
	EXPECT_EQ(n, seen);
	d = opendir(S("many"));
	ASSERT_NE(NULL, d);
	seen = 0;
	while ((de = readdir(d)))
		if (de->d_name[0] == 'f')
			seen++;
	closedir(d);
	EXPECT_EQ(n, seen);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/many/f%05d", self->h.mnt, i);
		ASSERT_EQ(0, unlink(path)) TH_LOG("unlink %d: %m", i);
	}
	ASSERT_EQ(0, rmdir(M("many")));
	EXPECT_LE(r0 + 2 * n, ring_requests(&self->h));
}

/*
 * Two processes on one CPU contend for a flock.  The waiter's SETLKW sits in
 * the server until the holder's unlock arrives, on the same CPU and so the
 * same ring queue: if the queue served SETLKW inline, that unlock would wait
 * behind it forever.
 */
static int flock_holder(void *arg)
{
	const char *path = arg;
	cpu_set_t set;
	int fd, i;

	CPU_ZERO(&set);
	CPU_SET(0, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return 2;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || flock(fd, LOCK_EX))
		return 3;
	/* Let the waiter block, keep the queue busy, then unlock. */
	usleep(300000);
	for (i = 0; i < 20; i++)
		if (access(path, F_OK))
			return 4;
	if (flock(fd, LOCK_UN))
		return 5;
	close(fd);
	return 0;
}

static int flock_waiter(void *arg)
{
	const char *path = arg;
	cpu_set_t set;
	int fd;

	CPU_ZERO(&set);
	CPU_SET(0, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return 2;
	usleep(100000);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || flock(fd, LOCK_EX)) /* blocks until the holder unlocks */
		return 3;
	close(fd);
	return 0;
}

TEST_F_TIMEOUT(uring, flock_contention_on_one_cpu, 60)
{
	char path[PATH_MAX + 32];
	pid_t holder, waiter;
	int st;

	snprintf(path, sizeof(path), "%s", M("lock"));
	ASSERT_EQ(0, hf_write_file(path, "l", 1, 0644));
	holder = hf_fork_child(NULL, 0);
	ASSERT_LE(0, holder);
	if (holder == 0)
		_exit(flock_holder(path));
	waiter = hf_fork_child(NULL, 0);
	ASSERT_LE(0, waiter);
	if (waiter == 0)
		_exit(flock_waiter(path));
	st = hf_wait(holder, 20000);
	EXPECT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		TH_LOG("holder: status %#x (a deadlocked queue times out)", st);
	st = hf_wait(waiter, 20000);
	EXPECT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		TH_LOG("waiter: status %#x", st);
	{
		static char doc[16384];

		/* The waiter's SETLKW went to a helper thread of queue 0. */
		ASSERT_TRUE(hf_status(&self->h, doc, sizeof(doc)));
		EXPECT_LE(1, (int)queue_num(doc, 0, "offloaded")) TH_LOG("%s", doc);
	}
}

/*
 * kill -9: the ring dies with the server, and with it the entries the
 * kernel had; the successor registers fresh ones on the same queues.
 */
TEST_F_TIMEOUT(uring, survives_kill9_with_fresh_entries, 60)
{
	static char doc[16384];
	char buf[64];
	pid_t pid;
	double v;

	ASSERT_EQ(0, hf_write_file(M("before"), "before", 6, 0644));
	pid = hf_kill_server(&self->h, 10000);
	ASSERT_LT(0, pid) TH_LOG("no successor serving");
	ASSERT_EQ(6, hf_read_file(M("before"), buf, sizeof(buf)));
	ASSERT_EQ(0, hf_write_file(M("after"), "after", 5, 0644));
	ASSERT_EQ(5, hf_read_file(S("after"), buf, sizeof(buf)));
	ASSERT_TRUE(hf_status(&self->h, doc, sizeof(doc)));
	EXPECT_NE(NULL, strstr(doc, "\"transport\":\"uring\"")) TH_LOG("%s", doc);
	ASSERT_TRUE(hf_json_num(doc, "restarts", &v));
	EXPECT_EQ(1, (int)v);
	ASSERT_TRUE(hf_json_num(doc, "ring_requests", &v));
	EXPECT_LE(3, (int)v) TH_LOG("the successor's ring served nothing");
	EXPECT_EQ(DEPTH, (int)queue_num(doc, 0, "live"));
}

/*
 * A handover cannot stop the ring from handing the old server requests (a
 * commit is also a fetch); the successor adopts the entries' buffers and
 * answers whatever the kernel left in them, so the upgrade goes through.
 */
TEST_F_TIMEOUT(uring, upgrade_hands_over_the_ring, 60)
{
	static char doc[16384];
	char out[1024], buf[64];
	double pid0 = hf_status_num(&self->h, "pid");
	pid_t next;

	ASSERT_LT(0, pid0);
	ASSERT_EQ(0, hf_write_file(M("before"), "before", 6, 0644));
	ASSERT_EQ(0, hf_ctl(&self->h, out, sizeof(out), 10000, "upgrade", NULL)) TH_LOG("%s", out);
	next = hf_wait_serving(&self->h, (pid_t)pid0, 15000, doc, sizeof(doc));
	ASSERT_LT(0, next) TH_LOG("no successor serving after the upgrade");
	EXPECT_NE(NULL, strstr(doc, "\"transport\":\"uring\"")) TH_LOG("%s", doc);
	EXPECT_NE(NULL, strstr(doc, "\"persistent\":true")) TH_LOG("%s", doc);
	ASSERT_EQ(6, hf_read_file(M("before"), buf, sizeof(buf)));
	ASSERT_EQ(0, hf_write_file(M("after"), "after", 5, 0644));
	ASSERT_EQ(5, hf_read_file(S("after"), buf, sizeof(buf)));
}

/*
 * Requests the kernel handed to a server that then died.  The kernel ends
 * neither them nor their callers, and FUSE_NOTIFY_RESEND does not reach
 * them (lab-uringcrash.md, U1/U2).  The successor maps the dead server's
 * entry buffers at the same address and commits the answer from its own
 * ring, by commit id (U4).  Nothing in the kernel promises that this works:
 * fuse_uring_commit_fetch() just does not check which task or ring
 * registered the entry.  These tests are the guard: if a kernel starts
 * checking, they fail (the caller hangs until teardown aborts the mount).
 */
FIXTURE(uring_adopt) {
	struct hf h;
};

FIXTURE_SETUP(uring_adopt)
{
	struct hf_opts o = {
		.cache = "auto",
		.fault_injection = true,
		.transport = "uring",
		/* The WRITEs stalled here must reach the server, not the kernel's backing file. */
		.extra_args = "--uring-queue-depth 4 --passthrough off",
	};

	HF_SETUP(&o);
}

FIXTURE_TEARDOWN(uring_adopt)
{
	HF_TEARDOWN();
}

#define ADOPT_LEN (384 * 1024) /* larger than an entry's rebuild area */

static int adopt_writer(void *arg)
{
	const char *path = arg;
	static char buf[ADOPT_LEN];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		return 10;
	hf_fill(buf, sizeof(buf), 7, 0);
	if (pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		return 11;
	return close(fd) ? 12 : 0;
}

static int adopt_mkdir(void *arg)
{
	return mkdir((const char *)arg, 0750) ? 20 : 0;
}

/* Stall one @op at @point, run @fn in a child, kill the server there. */
static void stall_kill(struct __test_metadata *_metadata, struct hf *h, const char *op,
		       const char *point, int (*fn)(void *), void *arg)
{
	static char doc[16384];
	char out[512];
	pid_t child, victim, next;
	long long end;
	int st;

	ASSERT_EQ(0, hf_ctl(h, out, sizeof(out), 5000, "stall", op, point, "1", NULL))
		TH_LOG("%s", out);
	child = hf_fork_child(NULL, 0);
	ASSERT_LE(0, child);
	if (child == 0)
		_exit(fn(arg));
	ASSERT_TRUE(hf_wait_stalled(h, 5000)) TH_LOG("%s never stalled", op);
	victim = hf_server_child(h);
	ASSERT_LT(0, victim);
	ASSERT_EQ(0, kill(victim, SIGKILL));
	next = hf_wait_serving(h, victim, 15000, doc, sizeof(doc));
	ASSERT_LT(0, next) TH_LOG("no successor serving");
	/* The caller's request was on the dead server's ring: only adoption ends it. */
	st = hf_wait(child, 10000);
	if (st == -1)
		hf_abort_conn(h->dev);
	ASSERT_NE(-1, st) TH_LOG("%s never completed after the kill: the kernel refused the "
				 "successor's commit (fuse_uring_commit_fetch ownership check?)", op);
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("client status %#x", st);
	ASSERT_TRUE(hf_status(h, doc, sizeof(doc)));
	EXPECT_NE(NULL, strstr(doc, "\"persistent\":true")) TH_LOG("%s", doc);
	EXPECT_LE(1, hf_status_num(h, "adopted")) TH_LOG("%s", doc);
	EXPECT_LE(1, hf_status_num(h, "resent_requests")) TH_LOG("%s", doc);
	/* Every queue got a request of the successor's own (see Transport::kick). */
	end = hf_now_ms() + 5000;
	while (hf_status_num(h, "kicked") < hf_status_num(h, "queues") && hf_now_ms() < end)
		usleep(2000);
	EXPECT_EQ(hf_status_num(h, "queues"), hf_status_num(h, "kicked")) TH_LOG("%s", doc);
}

/* A WRITE whose data stayed in the payload buffer, stalled before it ran. */
TEST_F_TIMEOUT(uring_adopt, write_in_flight_answered_by_successor, 60)
{
	static char buf[ADOPT_LEN + 1];
	char path[PATH_MAX + 32];
	ssize_t n;

	snprintf(path, sizeof(path), "%s", M("w"));
	stall_kill(_metadata, &self->h, "WRITE", "before", adopt_writer, path);
	n = hf_read_file(S("w"), buf, sizeof(buf));
	ASSERT_EQ(ADOPT_LEN, n);
	EXPECT_EQ(-1, hf_check(buf, ADOPT_LEN, 7, 0)) TH_LOG("the data the successor wrote differs");
	ASSERT_EQ(0, hf_write_file(M("after"), "after", 5, 0644));
}

/* A WRITE that ran and was stalled before its reply: executed again, same data. */
TEST_F_TIMEOUT(uring_adopt, write_done_before_reply, 60)
{
	static char buf[ADOPT_LEN + 1];
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s", M("w"));
	stall_kill(_metadata, &self->h, "WRITE", "after", adopt_writer, path);
	ASSERT_EQ(ADOPT_LEN, hf_read_file(S("w"), buf, sizeof(buf)));
	EXPECT_EQ(-1, hf_check(buf, ADOPT_LEN, 7, 0));
}

/* MKDIR done on the host, the journal not yet told: answered from the host
 * state and the journal, not executed twice (EEXIST). */
TEST_F_TIMEOUT(uring_adopt, mkdir_mid_not_run_twice, 60)
{
	char path[PATH_MAX + 32];
	struct stat st;

	snprintf(path, sizeof(path), "%s", M("d"));
	stall_kill(_metadata, &self->h, "MKDIR", "mid", adopt_mkdir, path);
	ASSERT_EQ(0, stat(S("d"), &st));
	EXPECT_TRUE(S_ISDIR(st.st_mode));
}

/* Two kills in a row: the second server adopts what the first left, then
 * serves; the third finds the same buffers again. */
TEST_F_TIMEOUT(uring_adopt, adopted_twice, 90)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s", M("d1"));
	stall_kill(_metadata, &self->h, "MKDIR", "before", adopt_mkdir, path);
	snprintf(path, sizeof(path), "%s", M("d2"));
	stall_kill(_metadata, &self->h, "MKDIR", "after", adopt_mkdir, path);
	EXPECT_EQ(0, access(S("d1"), F_OK));
	EXPECT_EQ(0, access(S("d2"), F_OK));
}

/* enable_uring=N: the kernel does not offer the ring in INIT. */
/*
 * The backing files live on a second server's mount ("inner", /dev/fuse,
 * uncached), whose READs can be stalled on demand: a backing file that
 * makes the outer server's I/O wait for as long as the test wants.
 */
FIXTURE(uring_backend) {
	struct hf h;		/* the server under test: io_uring transport */
	struct hf inner;	/* its backing store */
};

FIXTURE_VARIANT(uring_backend) {
	const char *args;
	bool overlaps;		/* the second READ is served while the first waits */
};

FIXTURE_VARIANT_ADD(uring_backend, ring) {
	.args = "--uring-queue-depth 4 --passthrough off --backend-io uring",
	.overlaps = true,
};

FIXTURE_VARIANT_ADD(uring_backend, sync) {
	.args = "--uring-queue-depth 4 --passthrough off --backend-io sync",
	.overlaps = false,
};

FIXTURE_SETUP(uring_backend)
{
	struct hf_opts in = {
		.cache = "never",
		.fault_injection = true,
		.transport = "dev",
		.extra_args = "--passthrough off",
	};
	struct hf_opts o = {
		.cache = "auto",
		.transport = "uring",
		.shared_dir = self->inner.mnt,
		.extra_args = variant->args,
	};

	if (geteuid() != 0)
		SKIP(_exit(255), "holdfastd must run as root (euid %d)", (int)geteuid());
	ASSERT_EQ(0, hf_start(&self->inner, &in, _metadata->timeout));
	HF_SETUP(&o);
}

FIXTURE_TEARDOWN(uring_backend)
{
	/* An outer READ may still wait on the inner server: let it go first. */
	hf_ctl(&self->inner, NULL, 0, 5000, "unstall", NULL);
	HF_TEARDOWN();
	hf_teardown(&self->inner, !_metadata->passed);
}

struct seeded {
	const char *path;
	unsigned int seed;
};

/* One 4 KiB O_DIRECT read from CPU 0, so it goes to queue 0. */
static int read_on_cpu0(void *arg)
{
	static char buf[4096] __attribute__((aligned(4096)));
	const struct seeded *f = arg;
	cpu_set_t set;
	ssize_t n;
	int fd;

	CPU_ZERO(&set);
	CPU_SET(0, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return 10;
	fd = open(f->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		return 11;
	n = pread(fd, buf, sizeof(buf), 0);
	if (n < 0)
		return errno < 150 ? 100 + errno : 12; /* 100 + errno */
	if (n != (ssize_t)sizeof(buf))
		return 13;
	if (hf_check(buf, sizeof(buf), f->seed, 0) != -1)
		return 14;
	return close(fd) ? 15 : 0;
}

/* waitpid() for up to @ms; 0 if @pid is still running then. */
static int wait_for(pid_t pid, int ms, int *status)
{
	long long end = hf_now_ms() + ms;
	pid_t r;

	do {
		r = waitpid(pid, status, WNOHANG);
		if (r)
			return r;
		usleep(5000);
	} while (hf_now_ms() < end);
	return 0;
}

TEST_F_TIMEOUT(uring_backend, waiting_read_holds_no_queue, 60)
{
	static char buf[64 * 1024], doc[16384];
	struct seeded a = { NULL, 1 }, b = { NULL, 2 };
	char pa[PATH_MAX], pb[PATH_MAX], out[512];
	pid_t ca, cb;
	int st = 0;

	snprintf(pa, sizeof(pa), "%s", M("a"));
	snprintf(pb, sizeof(pb), "%s", M("b"));
	a.path = pa;
	b.path = pb;
	hf_fill(buf, sizeof(buf), a.seed, 0);
	ASSERT_EQ(0, hf_write_file(pa, buf, sizeof(buf), 0644));
	hf_fill(buf, sizeof(buf), b.seed, 0);
	ASSERT_EQ(0, hf_write_file(pb, buf, sizeof(buf), 0644));

	/* a's READ reaches the inner server and stops there. */
	ASSERT_EQ(0, hf_ctl(&self->inner, out, sizeof(out), 5000, "stall", "READ", "before", "1",
			    NULL)) TH_LOG("%s", out);
	ca = hf_fork_child(NULL, 0);
	ASSERT_LE(0, ca);
	if (ca == 0)
		_exit(read_on_cpu0(&a));
	ASSERT_TRUE(hf_wait_stalled(&self->inner, 10000)) TH_LOG("a's READ never stalled");

	/* b's READ goes to the same queue, behind a's. */
	cb = hf_fork_child(NULL, 0);
	ASSERT_LE(0, cb);
	if (cb == 0)
		_exit(read_on_cpu0(&b));
	if (variant->overlaps) {
		ASSERT_EQ(cb, wait_for(cb, 10000, &st))
			TH_LOG("b's READ waited for a's backing file");
		ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("b: status %#x", st);
		EXPECT_EQ(0, wait_for(ca, 0, &st)) TH_LOG("a finished while its READ was stalled");
		ASSERT_TRUE(hf_status(&self->h, doc, sizeof(doc)));
		EXPECT_LE(2, queue_num(doc, 0, "backend_max")) TH_LOG("%s", doc);
		EXPECT_NE(NULL, strstr(doc, "\"backend_io\":\"uring\"")) TH_LOG("%s", doc);
	} else {
		/* Served inline, a's READ holds its queue: b waits. */
		EXPECT_EQ(0, wait_for(cb, 2000, &st)) TH_LOG("b overtook a with --backend-io sync");
		ASSERT_TRUE(hf_status(&self->h, doc, sizeof(doc)));
		EXPECT_EQ(0, queue_num(doc, 0, "backend_ops")) TH_LOG("%s", doc);
	}

	ASSERT_EQ(0, hf_ctl(&self->inner, out, sizeof(out), 5000, "unstall", NULL))
		TH_LOG("%s", out);
	st = hf_wait(ca, 10000);
	ASSERT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("a: status %#x", st);
	if (!variant->overlaps) {
		st = hf_wait(cb, 10000);
		ASSERT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
			TH_LOG("b: status %#x", st);
	}
}

FIXTURE(uring_off) {
	struct hf h;
	char old;
};

FIXTURE_SETUP(uring_off)
{
	URING_SETUP('N', "--transport auto", &self->old);
}

FIXTURE_TEARDOWN(uring_off)
{
	URING_TEARDOWN(self->old);
}

TEST_F(uring_off, auto_falls_back_and_says_why)
{
	static char doc[16384];

	ASSERT_EQ(0, hf_write_file(M("f"), "x", 1, 0644));
	ASSERT_TRUE(hf_status(&self->h, doc, sizeof(doc)));
	EXPECT_NE(NULL, strstr(doc, "\"transport\":\"dev\"")) TH_LOG("%s", doc);
	EXPECT_EQ(NULL, strstr(doc, "\"uring\":{"));
	EXPECT_EQ(1, hf_log_count(&self->h, "transport: /dev/fuse, not io_uring"));
	EXPECT_EQ(1, hf_log_count(&self->h, "enable_uring is N"));
}

TEST_F(uring_off, uring_refuses_to_start)
{
	const char *bin = getenv("HOLDFASTD");
	char src[PATH_MAX], mnt[PATH_MAX], log[PATH_MAX], out[4096];
	ssize_t n;
	pid_t pid;
	int st;

	if (!bin || !*bin)
		bin = HF_DEFAULT_HOLDFASTD;
	snprintf(src, sizeof(src), "%s", hf_b(&self->h, "src2"));
	snprintf(mnt, sizeof(mnt), "%s", hf_b(&self->h, "mnt2"));
	snprintf(log, sizeof(log), "%s", hf_b(&self->h, "refused.log"));
	ASSERT_EQ(0, mkdir(src, 0755));
	ASSERT_EQ(0, mkdir(mnt, 0755));
	pid = hf_fork_child(NULL, 0);
	ASSERT_LE(0, pid);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		if (fd < 0)
			_exit(126);
		dup2(fd, 1);
		dup2(fd, 2);
		/* Under the fd store too: it must pass the verdict on. */
		execl(bin, bin, "--shared-dir", src, "--mountpoint", mnt, "--transport",
		      "uring", (char *)NULL);
		_exit(127);
	}
	st = hf_wait(pid, 15000);
	ASSERT_NE(-1, st) TH_LOG("holdfastd --transport uring did not exit");
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(1, WEXITSTATUS(st));
	EXPECT_FALSE(hf_is_mounted(mnt, NULL, 0));
	n = hf_read_file(log, out, sizeof(out) - 1);
	ASSERT_LT(0, n);
	out[n] = 0;
	EXPECT_NE(NULL, strstr(out, "--transport uring")) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "enable_uring is N")) TH_LOG("%s", out);
	if (hf_is_mounted(mnt, NULL, 0))
		umount2(mnt, MNT_DETACH);
}

TEST_HARNESS_MAIN
