// SPDX-License-Identifier: GPL-2.0
/*
 * Crash recovery: kill -9 the serving holdfastd (never its fd store) and
 * check that nobody on the mount notices.
 *
 *  - nonidem.*: every non-idempotent operation, stopped by fault injection
 *    before it runs, after the host change but before the journal says so
 *    (mid), or after both (after); the server is killed there, and the
 *    syscall must return what it would have without the crash, with its
 *    effect on the host exactly once (FUSE_NOTIFY_RESEND + journal);
 *  - streaming writes, a directory listing, open fds of every kind and
 *    locks across kills;
 *  - a mixed multi-process workload under 200+ kills;
 *  - open files and directories on a shared directory that is itself a
 *    FUSE mount, whose file handles cannot reopen anything (rec_nested);
 *  - a kill of the new server while it starts;
 *  - a corrupted state region, which the next server must refuse;
 *  - the store's crash-loop guard, which must not count a server that
 *    served and was then killed (so 200 kills in a minute are fine).
 *
 * Every test runs the store with its defaults, as holdfastd starts it.
 *
 * Clients run in hf_fork_child() children that close every inherited fd and
 * report their errno through a pipe; every wait is bounded, and teardown
 * releases stalled requests, stops the store and aborts the connection if
 * anything is still stuck.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"
#include "recovery_workload.h"

/* How long a successor may take to serve (generous: the host may be busy). */
#define REC_SERVE_TIMEOUT_MS	15000

static void msleep(int ms)
{
	usleep(ms * 1000);
}

/*
 * A client syscall in a child process.  The child runs fn() and writes its
 * result (0 or an errno) to the pipe on fd 3.
 */
struct client {
	pid_t pid;
	int rfd;
	bool have;
	int result;
};

typedef int (*client_fn)(const struct hf *h, const void *arg);

static int client_start(const struct hf *h, client_fn fn, const void *arg, struct client *c)
{
	int p[2];

	memset(c, 0, sizeof(*c));
	c->rfd = -1;
	c->result = -1;	/* until it reports */
	if (pipe2(p, O_CLOEXEC))
		return -1;
	c->pid = hf_fork_child(&p[1], 1);
	if (c->pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (c->pid == 0) {
		int r = fn(h, arg);

		if (write(3, &r, sizeof(r)) != sizeof(r))
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	c->rfd = p[0];
	return 0;
}

/* Has the client answered?  Waits up to @timeout_ms. */
static bool client_done(struct client *c, int timeout_ms)
{
	struct pollfd pfd = { .fd = c->rfd, .events = POLLIN };

	if (c->have)
		return true;
	if (c->rfd < 0 || poll(&pfd, 1, timeout_ms) != 1)
		return false;
	if (read(c->rfd, &c->result, sizeof(c->result)) == sizeof(c->result))
		c->have = true;
	else
		c->result = -1;	/* died without a word */
	return true;
}

/* Reap it, bounded; a child stuck on the mount is killed (and maybe stays). */
static void client_end(struct client *c, int timeout_ms)
{
	if (c->rfd >= 0) {
		close(c->rfd);
		c->rfd = -1;
	}
	if (c->pid > 0) {
		hf_wait(c->pid, timeout_ms);
		c->pid = 0;
	}
}

/* Wait for "stalled" >= n; stops early if @c already answered (no stall). */
static bool wait_stalled(const struct hf *h, int n, int timeout_ms, struct client *c)
{
	long long end = hf_now_ms() + timeout_ms;

	do {
		if (hf_status_num(h, "stalled") >= n)
			return true;
		if (c && client_done(c, 0))
			return false;
		msleep(2);
	} while (hf_now_ms() < end);
	return false;
}

/* What one kill cost, as the server and as the test saw it. */
struct kill_sample {
	double crash_to_serving_ms;	/* status: last_crash_to_serving_ms */
	double attach_ms;		/* status: last_attach_ms */
	long long kill_to_answer_ms;	/* kill() -> new pid answers status */
};

/*
 * SIGKILL the serving child and wait for its successor.  Returns the new
 * pid (or -1); @doc receives the successor's status.
 */
static pid_t kill_server(const struct hf *h, struct kill_sample *ks, char *doc, size_t cap)
{
	static char sbuf[16384];
	pid_t victim = hf_server_child(h), next;
	long long t0;

	if (!doc) {
		doc = sbuf;
		cap = sizeof(sbuf);
	}
	if (victim <= 0)
		return -1;
	t0 = hf_now_ms();
	if (kill(victim, SIGKILL))
		return -1;
	next = hf_wait_serving(h, victim, REC_SERVE_TIMEOUT_MS, doc, cap);
	if (next > 0 && ks) {
		ks->kill_to_answer_ms = hf_now_ms() - t0;
		if (!hf_json_num(doc, "last_crash_to_serving_ms", &ks->crash_to_serving_ms))
			ks->crash_to_serving_ms = -1;
		if (!hf_json_num(doc, "last_attach_ms", &ks->attach_ms))
			ks->attach_ms = -1;
	}
	return next;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* min/median/max of @n values (sorts them). */
static void stats3(double *v, int n, double *min, double *med, double *max)
{
	*min = *med = *max = 0;
	if (n <= 0)
		return;
	qsort(v, n, sizeof(*v), cmp_double);
	*min = v[0];
	*med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	*max = v[n - 1];
}

static double num(const char *doc, const char *key)
{
	double v;

	return hf_json_num(doc, key, &v) ? v : -1;
}

/* Entries of a host directory, "." and ".." excluded. */
static int count_entries(const char *path)
{
	struct dirent *de;
	int n = 0;
	DIR *d = opendir(path);

	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* ------------------------------------------------------------------ */
/* 1. Non-idempotent operations stopped before/mid/after and killed.   */
/* ------------------------------------------------------------------ */

FIXTURE(nonidem) {
	struct hf h;
};

FIXTURE_VARIANT(nonidem) {
	const char *point;
	const char *transport;
};

FIXTURE_VARIANT_ADD(nonidem, before) {
	.point = "before",
	.transport = "dev",
};

FIXTURE_VARIANT_ADD(nonidem, mid) {
	.point = "mid",
	.transport = "dev",
};

FIXTURE_VARIANT_ADD(nonidem, after) {
	.point = "after",
	.transport = "dev",
};

/*
 * The same over FUSE-over-io_uring: the request sits on the dead server's
 * ring entry, where FUSE_NOTIFY_RESEND does not reach; the successor adopts
 * the entry (Documentation/io-uring.rst) and the journal answers it.
 *
 * The caller's next request (the close after an open, say) may reach a
 * queue before the successor registered entries there; the successor's kick
 * (uring::Transport::kick) is what ends it.
 */
FIXTURE_VARIANT_ADD(nonidem, before_uring) {
	.point = "before",
	.transport = "uring",
};

FIXTURE_VARIANT_ADD(nonidem, mid_uring) {
	.point = "mid",
	.transport = "uring",
};

FIXTURE_VARIANT_ADD(nonidem, after_uring) {
	.point = "after",
	.transport = "uring",
};

FIXTURE_SETUP(nonidem)
{
	struct hf_opts o = { .fault_injection = true, .transport = variant->transport };

	/*
	 * An append journaled by the server exists only when the server does
	 * the write: with kernel passthrough no WRITE ever reaches it (see
	 * passthrough_test.c for appends there).  The other cases keep
	 * passthrough on, so OPEN, CREATE and RELEASE are replayed with
	 * backing ids.
	 */
	if (strstr(_metadata->name, "write_append"))
		o.extra_args = "--passthrough off";
	HF_SETUP(&o);
}

FIXTURE_TEARDOWN(nonidem)
{
	HF_TEARDOWN();
}

struct nonidem_case {
	const char *opcode;
	/* Set up on the mount; 0 or an errno. */
	int (*prepare)(const struct hf *h);
	/* The syscall, in a child; 0 or an errno. */
	client_fn op;
	/* Check the host side after recovery. */
	void (*verify)(struct __test_metadata *_metadata, const struct hf *h);
	/* The request outlives the syscall (RELEASE is sent after close()). */
	bool async;
};

/*
 * Arm the stall, start the syscall, wait until it is stuck at the point,
 * kill the serving child, and check the syscall and the server's counters.
 * @during, if given, runs while the request is stalled (before the kill).
 */
static void run_nonidem(struct __test_metadata *_metadata, const struct hf *h, const char *point,
			const struct nonidem_case *tc,
			void (*during)(struct __test_metadata *, const struct hf *, void *),
			void (*after_kill)(struct __test_metadata *, const struct hf *, void *),
			void *arg)
{
	static char doc[16384], out[1024];
	struct kill_sample ks = { 0 };
	struct client c;
	pid_t next;
	int rc;

	if (tc->prepare)
		ASSERT_EQ(0, tc->prepare(h)) TH_LOG("prepare for %s failed", tc->opcode);
	rc = hf_ctl(h, out, sizeof(out), 5000, "stall", tc->opcode, point, "1", NULL);
	ASSERT_EQ(0, rc) TH_LOG("holdfastctl stall %s %s: %s", tc->opcode, point, out);

	ASSERT_EQ(0, client_start(h, tc->op, NULL, &c));
	if (!wait_stalled(h, 1, 5000, tc->async ? NULL : &c)) {
		client_end(&c, 2000);
		ASSERT_TRUE(false) TH_LOG("%s never stalled at %s (client %s, result %d)",
					  tc->opcode, point,
					  c.have ? "answered" : "still waiting", c.result);
	}
	if (during)
		during(_metadata, h, arg);
	/* The request is held: the client must still be waiting. */
	if (!tc->async)
		EXPECT_FALSE(client_done(&c, 0)) TH_LOG("client returned %d while stalled",
							 c.result);

	next = kill_server(h, &ks, doc, sizeof(doc));
	if (next <= 0) {
		client_end(&c, 2000);
		ASSERT_LT(0, next) TH_LOG("no server serving %d ms after the kill",
					  REC_SERVE_TIMEOUT_MS);
	}
	if (!client_done(&c, 10000)) {
		/* Lost request: the client is stuck until the connection ends. */
		hf_abort_conn(h->dev);
		client_end(&c, 2000);
		ASSERT_TRUE(false) TH_LOG("%s (%s) never completed after the restart",
					  tc->opcode, point);
	}
	client_end(&c, 5000);
	EXPECT_EQ(0, c.result) TH_LOG("%s stalled %s, killed: the syscall failed with %s",
				      tc->opcode, point, strerror(c.result));

	if (after_kill)
		after_kill(_metadata, h, arg);
	if (tc->verify)
		tc->verify(_metadata, h);

	/* Counters, from the successor's point of view. */
	ASSERT_TRUE(hf_status(h, doc, sizeof(doc)));
	EXPECT_EQ(1, num(doc, "restarts"));
	EXPECT_EQ(2, num(doc, "generation"));
	EXPECT_EQ(0, num(doc, "stalled"));
	EXPECT_NE(NULL, strstr(doc, "\"recovered\":true"));
	EXPECT_NE(NULL, strstr(doc, "\"resend_sent\":true"));
	EXPECT_LE(1, num(doc, "resent_requests")) TH_LOG("%s", doc);
	if (strcmp(point, "before")) {
		EXPECT_LE(1, num(doc, "replayed_from_journal")) TH_LOG("%s", doc);
	} else {
		/* Nothing had happened: nothing to answer from the journal. */
		EXPECT_EQ(0, num(doc, "replayed_from_journal")) TH_LOG("%s", doc);
	}
	TH_LOG("%s %s: crash-to-serving %.2f ms, attach %.2f ms, kill->status %lld ms",
	       tc->opcode, point, ks.crash_to_serving_ms, ks.attach_ms, ks.kill_to_answer_ms);
}

/* Helpers for the cases. */
static int err_of(int r)
{
	return r < 0 ? errno : 0;
}

static int put(const struct hf *h, const char *name, const char *data, mode_t mode)
{
	return err_of(hf_write_file(hf_m(h, "%s", name), data, strlen(data), mode));
}

static void expect_content(struct __test_metadata *_metadata, const char *path, const char *want)
{
	char buf[4096];
	ssize_t n = hf_read_file(path, buf, sizeof(buf) - 1);

	ASSERT_LE(0, n) TH_LOG("read %s: %s", path, strerror(errno));
	buf[n] = 0;
	EXPECT_STREQ(want, buf) TH_LOG("%s", path);
}

static void expect_absent(struct __test_metadata *_metadata, const char *path)
{
	struct stat st;

	EXPECT_EQ(-1, lstat(path, &st)) TH_LOG("%s still exists", path);
	EXPECT_EQ(ENOENT, errno);
}

/* mkdir */
static int op_mkdir(const struct hf *h, const void *a)
{
	return err_of(mkdir(hf_m(h, "d"), 0750));
}

static void v_mkdir(struct __test_metadata *_metadata, const struct hf *h)
{
	struct stat st;

	ASSERT_EQ(0, lstat(hf_s(h, "d"), &st));
	EXPECT_TRUE(S_ISDIR(st.st_mode));
	EXPECT_EQ(0750, st.st_mode & 07777);
	EXPECT_EQ(1, count_entries(h->src));
	/* The mount agrees, and the new node id works. */
	ASSERT_EQ(0, stat(hf_m(h, "d"), &st));
	EXPECT_TRUE(S_ISDIR(st.st_mode));
	EXPECT_EQ(0, put(h, "d/inside", "x", 0644));
	EXPECT_EQ(-1, mkdir(hf_m(h, "d"), 0750));
	EXPECT_EQ(EEXIST, errno);
}

/* mknod (a FIFO) */
static int op_mknod(const struct hf *h, const void *a)
{
	return err_of(mknod(hf_m(h, "p"), S_IFIFO | 0640, 0));
}

static void v_mknod(struct __test_metadata *_metadata, const struct hf *h)
{
	struct stat st;

	ASSERT_EQ(0, lstat(hf_s(h, "p"), &st));
	EXPECT_TRUE(S_ISFIFO(st.st_mode));
	EXPECT_EQ(0640, st.st_mode & 07777);
	EXPECT_EQ(1, count_entries(h->src));
	ASSERT_EQ(0, lstat(hf_m(h, "p"), &st));
	EXPECT_TRUE(S_ISFIFO(st.st_mode));
}

/* symlink */
static int op_symlink(const struct hf *h, const void *a)
{
	return err_of(symlink("some/target", hf_m(h, "l")));
}

static void v_symlink(struct __test_metadata *_metadata, const struct hf *h)
{
	char buf[64];
	ssize_t n;

	n = readlink(hf_s(h, "l"), buf, sizeof(buf) - 1);
	ASSERT_EQ(11, n);
	buf[n] = 0;
	EXPECT_STREQ("some/target", buf);
	EXPECT_EQ(1, count_entries(h->src));
	n = readlink(hf_m(h, "l"), buf, sizeof(buf) - 1);
	ASSERT_EQ(11, n);
}

/* link */
static int p_link(const struct hf *h)
{
	return put(h, "f", "linked data", 0644);
}

static int op_link(const struct hf *h, const void *a)
{
	return err_of(link(hf_m(h, "f"), hf_m(h, "g")));
}

static void v_link(struct __test_metadata *_metadata, const struct hf *h)
{
	struct stat a, b;

	ASSERT_EQ(0, lstat(hf_s(h, "f"), &a));
	ASSERT_EQ(0, lstat(hf_s(h, "g"), &b));
	EXPECT_EQ(a.st_ino, b.st_ino);
	EXPECT_EQ(2, a.st_nlink) TH_LOG("host link count %d", (int)a.st_nlink);
	EXPECT_EQ(2, count_entries(h->src));
	ASSERT_EQ(0, stat(hf_m(h, "g"), &b));
	EXPECT_EQ(2, b.st_nlink);
	expect_content(_metadata, hf_m(h, "g"), "linked data");
}

/* create: open(O_CREAT|O_EXCL), then use the fd the reply gave */
static int op_create(const struct hf *h, const void *a)
{
	int fd = open(hf_m(h, "c"), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0640);

	if (fd < 0)
		return errno;
	if (write(fd, "hello", 5) != 5)
		return errno ? errno : EIO;
	return err_of(close(fd));
}

static void v_create(struct __test_metadata *_metadata, const struct hf *h)
{
	struct stat st;

	ASSERT_EQ(0, lstat(hf_s(h, "c"), &st));
	EXPECT_EQ(0640, st.st_mode & 07777);
	EXPECT_EQ(1, st.st_nlink);
	EXPECT_EQ(1, count_entries(h->src));
	expect_content(_metadata, hf_s(h, "c"), "hello");
}

/* unlink */
static int p_unlink(const struct hf *h)
{
	int r = put(h, "u", "doomed", 0644);

	return r ? r : put(h, "keep", "stays", 0644);
}

static int op_unlink(const struct hf *h, const void *a)
{
	return err_of(unlink(hf_m(h, "u")));
}

static void v_unlink(struct __test_metadata *_metadata, const struct hf *h)
{
	struct stat st;

	expect_absent(_metadata, hf_s(h, "u"));
	EXPECT_EQ(-1, stat(hf_m(h, "u"), &st));
	EXPECT_EQ(1, count_entries(h->src));
	expect_content(_metadata, hf_s(h, "keep"), "stays");
}

/* rmdir */
static int p_rmdir(const struct hf *h)
{
	return err_of(mkdir(hf_m(h, "r"), 0755));
}

static int op_rmdir(const struct hf *h, const void *a)
{
	return err_of(rmdir(hf_m(h, "r")));
}

static void v_rmdir(struct __test_metadata *_metadata, const struct hf *h)
{
	expect_absent(_metadata, hf_s(h, "r"));
	EXPECT_EQ(0, count_entries(h->src));
}

/* rename over an existing target */
static int p_rename(const struct hf *h)
{
	int r = put(h, "a", "A-data", 0644);

	return r ? r : put(h, "b", "old-b", 0644);
}

static int op_rename(const struct hf *h, const void *a)
{
	return err_of(rename(hf_m(h, "a"), hf_m(h, "b")));
}

static void v_rename(struct __test_metadata *_metadata, const struct hf *h)
{
	expect_absent(_metadata, hf_s(h, "a"));
	expect_content(_metadata, hf_s(h, "b"), "A-data");
	EXPECT_EQ(1, count_entries(h->src));
	expect_content(_metadata, hf_m(h, "b"), "A-data");
}

/* rename into another directory with RENAME_NOREPLACE (FUSE_RENAME2) */
static int p_rename2(const struct hf *h)
{
	int r = put(h, "a", "A2-data", 0644);

	return r ? r : err_of(mkdir(hf_m(h, "sub"), 0755));
}

static int op_rename2(const struct hf *h, const void *a)
{
	return err_of(syscall(SYS_renameat2, AT_FDCWD, hf_m(h, "a"), AT_FDCWD,
			      hf_m(h, "sub/b"), RENAME_NOREPLACE));
}

static void v_rename2(struct __test_metadata *_metadata, const struct hf *h)
{
	expect_absent(_metadata, hf_s(h, "a"));
	expect_content(_metadata, hf_s(h, "sub/b"), "A2-data");
	EXPECT_EQ(1, count_entries(h->src));
	EXPECT_EQ(1, count_entries(hf_s(h, "sub")));
}

/* open(O_TRUNC), then write through the fd the reply gave */
static int p_trunc(const struct hf *h)
{
	return put(h, "t", "a long line that the truncation must remove entirely\n", 0644);
}

static int op_trunc(const struct hf *h, const void *a)
{
	int fd = open(hf_m(h, "t"), O_WRONLY | O_TRUNC | O_CLOEXEC);

	if (fd < 0)
		return errno;
	if (write(fd, "xy", 2) != 2)
		return errno ? errno : EIO;
	return err_of(close(fd));
}

static void v_trunc(struct __test_metadata *_metadata, const struct hf *h)
{
	expect_content(_metadata, hf_s(h, "t"), "xy");
	expect_content(_metadata, hf_m(h, "t"), "xy");
}

/* write(2) on an O_APPEND fd */
static int p_append(const struct hf *h)
{
	return put(h, "log", "line1\n", 0644);
}

static int op_append(const struct hf *h, const void *a)
{
	int fd = open(hf_m(h, "log"), O_WRONLY | O_APPEND | O_CLOEXEC);

	if (fd < 0)
		return errno;
	if (write(fd, "line2\n", 6) != 6)
		return errno ? errno : EIO;
	return err_of(close(fd));
}

static void v_append(struct __test_metadata *_metadata, const struct hf *h)
{
	expect_content(_metadata, hf_s(h, "log"), "line1\nline2\n");
}

/* close(2): RELEASE is sent after close() returned */
static int p_release(const struct hf *h)
{
	int r = put(h, "r1", "first file", 0644);

	return r ? r : put(h, "r2", "second file", 0644);
}

static int op_release(const struct hf *h, const void *a)
{
	int fd = open(hf_m(h, "r1"), O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return errno;
	if (pwrite(fd, "FIRST", 5, 0) != 5)
		return errno ? errno : EIO;
	return err_of(close(fd));
}

struct release_ctx {
	int fd2;
};

/*
 * While the RELEASE is held: open another file.  If the held RELEASE has
 * already freed its handle (mid, after), the new open reuses the slot; a
 * resent RELEASE that frees it again would take the new file's handle.
 */
static void release_during(struct __test_metadata *_metadata, const struct hf *h, void *arg)
{
	struct release_ctx *rc = arg;

	rc->fd2 = open(hf_m(h, "r2"), O_RDWR | O_CLOEXEC);
	EXPECT_LE(0, rc->fd2) TH_LOG("open r2 while RELEASE is stalled: %s", strerror(errno));
}

static void release_after(struct __test_metadata *_metadata, const struct hf *h, void *arg)
{
	struct release_ctx *rc = arg;
	long long end;
	char buf[64];
	ssize_t n;
	double handles = -1;

	if (rc->fd2 < 0)
		return;
	/* The second file's handle must have survived the resent RELEASE. */
	n = pread(rc->fd2, buf, sizeof(buf) - 1, 0);
	EXPECT_EQ(11, n) TH_LOG("read through the other open file after the resent RELEASE: %s",
				n < 0 ? strerror(errno) : "short");
	if (n >= 0) {
		buf[n] = 0;
		EXPECT_STREQ("second file", buf);
	}
	EXPECT_EQ(3, pwrite(rc->fd2, "SEC", 3, 0)) TH_LOG("pwrite: %s", strerror(errno));
	EXPECT_EQ(0, fsync(rc->fd2)) TH_LOG("fsync: %s", strerror(errno));
	EXPECT_EQ(0, close(rc->fd2));
	rc->fd2 = -1;
	expect_content(_metadata, hf_s(h, "r2"), "SECond file");
	expect_content(_metadata, hf_s(h, "r1"), "FIRST file");
	/* Both RELEASEs done (asynchronously): no handle left, none failed. */
	end = hf_now_ms() + 3000;
	while (hf_now_ms() < end && (handles = hf_status_num(h, "handles")) != 0)
		msleep(10);
	EXPECT_EQ(0, handles) TH_LOG("open handles left after every file was closed");
}

/*
 * readdir: every entry of a READDIRPLUS reply is a reference the kernel
 * takes.  A resend after the kill must leave the server counting each
 * entry once: unlinking them all through the mount then lets the kernel
 * forget every one, and the server is left with the root alone.
 */
#define RDPLUS_FILES 5

static int p_readdirplus(const struct hf *h)
{
	for (int i = 0; i < RDPLUS_FILES; i++)
		if (hf_write_file(hf_s(h, "e%d", i), "x", 1, 0644) < 0)
			return errno;
	return 0;
}

static int op_readdirplus(const struct hf *h, const void *a)
{
	int n = count_entries(hf_m(h, "."));

	return n == RDPLUS_FILES ? 0 : n < 0 ? errno : EBADMSG;
}

static void v_readdirplus(struct __test_metadata *_metadata, const struct hf *h)
{
	double inodes = -1;
	long long end;
	int f;

	EXPECT_EQ(RDPLUS_FILES, count_entries(hf_m(h, ".")));
	for (f = 0; f < RDPLUS_FILES; f++) {
		EXPECT_EQ(0, unlink(hf_m(h, "e%d", f))) TH_LOG("unlink e%d: %s", f, strerror(errno));
	}
	/* The kernel's FORGETs are asynchronous. */
	end = hf_now_ms() + 5000;
	while (hf_now_ms() < end && (inodes = hf_status_num(h, "inodes")) != 1)
		msleep(10);
	EXPECT_EQ(1, inodes) TH_LOG("inodes left counted after the kernel forgot every entry");
}

static const struct nonidem_case c_mkdir = { "MKDIR", NULL, op_mkdir, v_mkdir };
static const struct nonidem_case c_mknod = { "MKNOD", NULL, op_mknod, v_mknod };
static const struct nonidem_case c_symlink = { "SYMLINK", NULL, op_symlink, v_symlink };
static const struct nonidem_case c_link = { "LINK", p_link, op_link, v_link };
static const struct nonidem_case c_create = { "CREATE", NULL, op_create, v_create };
static const struct nonidem_case c_unlink = { "UNLINK", p_unlink, op_unlink, v_unlink };
static const struct nonidem_case c_rmdir = { "RMDIR", p_rmdir, op_rmdir, v_rmdir };
static const struct nonidem_case c_rename = { "RENAME", p_rename, op_rename, v_rename };
static const struct nonidem_case c_rename2 = { "RENAME2", p_rename2, op_rename2, v_rename2 };
static const struct nonidem_case c_trunc = { "OPEN", p_trunc, op_trunc, v_trunc };
static const struct nonidem_case c_append = { "WRITE", p_append, op_append, v_append };
static const struct nonidem_case c_release = { "RELEASE", p_release, op_release, NULL, true };
static const struct nonidem_case c_readdirplus = { "READDIRPLUS", p_readdirplus, op_readdirplus,
						    v_readdirplus };

TEST_F(nonidem, mkdir)
{
	run_nonidem(_metadata, &self->h, variant->point, &c_mkdir, NULL, NULL, NULL);
}

TEST_F(nonidem, mknod_fifo)
{
	run_nonidem(_metadata, &self->h, variant->point, &c_mknod, NULL, NULL, NULL);
}

TEST_F(nonidem, symlink)
{
	run_nonidem(_metadata, &self->h, variant->point, &c_symlink, NULL, NULL, NULL);
}

TEST_F(nonidem, link)
{
	run_nonidem(_metadata, &self->h, variant->point, &c_link, NULL, NULL, NULL);
}

TEST_F(nonidem, create_excl)
{
	run_nonidem(_metadata, &self->h, variant->point, &c_create, NULL, NULL, NULL);
}

TEST_F(nonidem, unlink)
{
	run_nonidem(_metadata, &self->h, variant->point, &c_unlink, NULL, NULL, NULL);
}

TEST_F(nonidem, rmdir)
{
	run_nonidem(_metadata, &self->h, variant->point, &c_rmdir, NULL, NULL, NULL);
}

TEST_F(nonidem, rename_replace)
{
	run_nonidem(_metadata, &self->h, variant->point, &c_rename, NULL, NULL, NULL);
}

TEST_F(nonidem, rename2_noreplace)
{
	run_nonidem(_metadata, &self->h, variant->point, &c_rename2, NULL, NULL, NULL);
}

TEST_F(nonidem, open_trunc)
{
	run_nonidem(_metadata, &self->h, variant->point, &c_trunc, NULL, NULL, NULL);
}

TEST_F(nonidem, write_append)
{
	run_nonidem(_metadata, &self->h, variant->point, &c_append, NULL, NULL, NULL);
}

TEST_F(nonidem, release)
{
	struct release_ctx rc = { .fd2 = -1 };

	run_nonidem(_metadata, &self->h, variant->point, &c_release, release_during,
		    release_after, &rc);
	if (rc.fd2 >= 0)
		close(rc.fd2);
}

TEST_F(nonidem, readdirplus)
{
	run_nonidem(_metadata, &self->h, variant->point, &c_readdirplus, NULL, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* Single-kill tests on a default store.                               */
/* ------------------------------------------------------------------ */

FIXTURE(rec) {
	struct hf h;
};

/* Every crash test runs over /dev/fuse and over FUSE-over-io_uring. */
HF_TRANSPORT_VARIANTS(rec);

FIXTURE_SETUP(rec)
{
	struct hf_opts o = { .fault_injection = true, .transport = variant->transport };

	HF_SETUP(&o);
}

FIXTURE_TEARDOWN(rec)
{
	HF_TEARDOWN();
}

/*
 * Requests the kernel dispatches while a killed server's ring is being torn
 * down fail with ECANCELED on 6.18 (fuse_uring_send_in_task() for a dead
 * task ends the request; Documentation/io-uring.rst, "Risks").  Tests that
 * keep issuing requests through the kill hit that window, so by default they
 * run over /dev/fuse only; -DHF_URING_EXIT_RACE adds their io_uring variant.
 */
FIXTURE(rec_exit) {
	struct hf h;
};

FIXTURE_VARIANT(rec_exit) {
	const char *transport;
};

FIXTURE_VARIANT_ADD(rec_exit, dev) {
	.transport = "dev",
};

#ifdef HF_URING_EXIT_RACE
FIXTURE_VARIANT_ADD(rec_exit, uring) {
	.transport = "uring",
};
#endif

FIXTURE_SETUP(rec_exit)
{
	struct hf_opts o = { .fault_injection = true, .transport = variant->transport };

	HF_SETUP(&o);
}

FIXTURE_TEARDOWN(rec_exit)
{
	HF_TEARDOWN();
}

/* 2. A streaming writer while the server is killed 5 times. */

#define STREAM_SIZE	(64LL << 20)
#define STREAM_CHUNK	4096
#define STREAM_SEED	77

struct stream_shared {
	volatile long long written;
	volatile int err;
	volatile long long err_off;
	volatile int done;
};

static int stream_writer(const struct hf *h, const void *arg)
{
	struct stream_shared *sh = (struct stream_shared *)arg;
	static unsigned char buf[STREAM_CHUNK];
	long long off;
	int fd;

	fd = open(hf_m(h, "stream"), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0) {
		sh->err = errno;
		return errno;
	}
	for (off = 0; off < STREAM_SIZE; off += STREAM_CHUNK) {
		ssize_t n;

		hf_fill(buf, sizeof(buf), STREAM_SEED, off);
		n = write(fd, buf, sizeof(buf));
		if (n != sizeof(buf)) {
			sh->err = n < 0 ? errno : EIO;
			sh->err_off = off;
			return sh->err;
		}
		sh->written = off + STREAM_CHUNK;
		/*
		 * With the writeback cache the stream would land in the page
		 * cache faster than five kills can: flush every MiB so the
		 * writer's progress goes through the server being killed.
		 */
		if (!((off + STREAM_CHUNK) & ((1 << 20) - 1)) && fdatasync(fd)) {
			sh->err = errno;
			sh->err_off = off;
			return sh->err;
		}
	}
	if (fsync(fd) || close(fd)) {
		sh->err = errno;
		sh->err_off = off;
		return errno;
	}
	sh->done = 1;
	return 0;
}

FIXTURE(stream) {
	struct hf h;
};

FIXTURE_VARIANT(stream) {
	struct hf_opts o;
};

FIXTURE_VARIANT_ADD(stream, cache_auto) {
	.o = { .cache = "auto", .transport = "dev" },
};

/* Writes reach the server later, from the kernel's writeback. */
FIXTURE_VARIANT_ADD(stream, cache_always_wb) {
	.o = { .cache = "always", .writeback = true, .transport = "dev" },
};

/* See rec_exit: writes go on through every kill. */
#ifdef HF_URING_EXIT_RACE
FIXTURE_VARIANT_ADD(stream, cache_auto_uring) {
	.o = { .cache = "auto", .transport = "uring" },
};

FIXTURE_VARIANT_ADD(stream, cache_always_wb_uring) {
	.o = { .cache = "always", .writeback = true, .transport = "uring" },
};
#endif

FIXTURE_SETUP(stream)
{
	HF_SETUP(&variant->o);
}

FIXTURE_TEARDOWN(stream)
{
	HF_TEARDOWN();
}

TEST_F_TIMEOUT(stream, writer_5_kills, 90)
{
	struct stream_shared *sh;
	long long kill_at[5], bad_off = -1;
	double cts[5];
	struct kill_sample ks;
	struct client c;
	unsigned char *buf;
	int i, j, kills = 0, fd;
	long long off;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, sh);
	memset(sh, 0, sizeof(*sh));
	/* Five random points between 5% and 90% of the stream, ascending. */
	srand((unsigned int)getpid());
	for (i = 0; i < 5; i++)
		kill_at[i] = STREAM_SIZE / 20 + (long long)rand() % (STREAM_SIZE * 85 / 100);
	for (i = 0; i < 5; i++)
		for (j = i + 1; j < 5; j++)
			if (kill_at[j] < kill_at[i]) {
				off = kill_at[i];
				kill_at[i] = kill_at[j];
				kill_at[j] = off;
			}

	ASSERT_EQ(0, client_start(&self->h, stream_writer, sh, &c));
	for (i = 0; i < 5; i++) {
		long long end = hf_now_ms() + 30000;

		while (sh->written < kill_at[i] && !sh->done && !sh->err && hf_now_ms() < end)
			usleep(200);
		if (sh->done || sh->err)
			break;
		ASSERT_LT(0, hf_server_child(&self->h));
		EXPECT_LT(0, kill_server(&self->h, &ks, NULL, 0)) TH_LOG("kill %d: no successor", i);
		cts[kills++] = ks.crash_to_serving_ms;
		TH_LOG("kill %d at %lld MiB: crash-to-serving %.2f ms, kill->status %lld ms",
		       i + 1, sh->written >> 20, ks.crash_to_serving_ms, ks.kill_to_answer_ms);
	}
	if (!client_done(&c, 60000))
		hf_abort_conn(self->h.dev);
	client_end(&c, 5000);
	EXPECT_EQ(0, c.result) TH_LOG("writer failed at %lld: %s", sh->err_off, strerror(c.result));
	EXPECT_EQ(5, kills) TH_LOG("the writer finished before all kills landed");
	EXPECT_TRUE(sh->done);
	EXPECT_EQ(kills, hf_status_num(&self->h, "restarts"));

	/* Byte for byte on the host. */
	buf = malloc(1 << 20);
	ASSERT_NE(NULL, buf);
	fd = open(hf_s(&self->h, "stream"), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	for (off = 0; off < STREAM_SIZE; off += 1 << 20) {
		ssize_t n = pread(fd, buf, 1 << 20, off), k;

		ASSERT_EQ(1 << 20, n) TH_LOG("host file short at %lld", off);
		k = hf_check(buf, n, STREAM_SEED, off);
		if (k >= 0 && bad_off < 0)
			bad_off = off + k;
	}
	EXPECT_EQ(0, pread(fd, buf, 1, STREAM_SIZE)) TH_LOG("host file longer than written");
	close(fd);
	free(buf);
	EXPECT_EQ(-1, bad_off) TH_LOG("first wrong byte at %lld", bad_off);
	{
		double mn, md, mx;

		stats3(cts, kills, &mn, &md, &mx);
		TH_LOG("crash-to-serving over %d kills: min %.2f median %.2f max %.2f ms",
		       kills, mn, md, mx);
	}
	munmap(sh, sizeof(*sh));
}

/* 4. Open fds across a kill. */

TEST_F(rec, open_rw_fd_survives)
{
	char buf[64];
	struct stat st;
	int fd;

	fd = open(M("f"), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(7, write(fd, "before\n", 7));
	ASSERT_LT(0, kill_server(&self->h, NULL, NULL, 0));
	EXPECT_EQ(6, pwrite(fd, "after\n", 6, 7)) TH_LOG("pwrite: %s", strerror(errno));
	EXPECT_EQ(13, pread(fd, buf, sizeof(buf), 0)) TH_LOG("pread: %s", strerror(errno));
	EXPECT_EQ(0, memcmp(buf, "before\nafter\n", 13));
	EXPECT_EQ(0, fstat(fd, &st)) TH_LOG("fstat: %s", strerror(errno));
	EXPECT_EQ(13, st.st_size);
	EXPECT_EQ(0, fsync(fd)) TH_LOG("fsync: %s", strerror(errno));
	/* The fd's own offset (7: pwrite does not move it) survived too. */
	EXPECT_EQ(5, write(fd, "tail\n", 5)) TH_LOG("write at the fd offset: %s", strerror(errno));
	EXPECT_EQ(0, close(fd));
	expect_content(_metadata, S("f"), "before\ntail\n\n");
	EXPECT_EQ(1, hf_status_num(&self->h, "restarts"));
}

/* getdents64 in small chunks, collecting names e%05d into @seen. */
static int read_chunk(int fd, unsigned char *seen, int n, int *dups, int *others)
{
	char buf[512];
	long r = syscall(SYS_getdents64, fd, buf, sizeof(buf));
	long off = 0;

	if (r < 0)
		return -errno;
	while (off < r) {
		struct {
			uint64_t ino;
			int64_t off;
			unsigned short reclen;
			unsigned char type;
			char name[];
		} *d = (void *)(buf + off);
		int i;

		if (d->name[0] == 'e' && sscanf(d->name + 1, "%d", &i) == 1 && i >= 0 && i < n) {
			if (seen[i]++)
				(*dups)++;
		} else if (strcmp(d->name, ".") && strcmp(d->name, "..")) {
			(*others)++;
		}
		off += d->reclen;
	}
	return (int)r;
}

static void make_entries(struct __test_metadata *_metadata, const struct hf *h, const char *dir,
			 int n)
{
	char path[PATH_MAX];
	int i, fd;

	ASSERT_EQ(0, mkdir(hf_s(h, "%s", dir), 0755));
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%.2000s/%.1000s/e%05d", h->src, dir, i);
		fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
		ASSERT_LE(0, fd);
		close(fd);
	}
}

/*
 * List @n entries with getdents64 in 512-byte chunks, killing the server
 * every @every chunks.  Returns the number of kills.
 */
static int list_with_kills(struct __test_metadata *_metadata, const struct hf *h, const char *dir,
			   int n, int every, double *cts, int max_kills)
{
	unsigned char *seen = calloc(n, 1);
	int fd, r, chunks = 0, kills = 0, dups = 0, others = 0, missing = 0, i;
	struct kill_sample ks;

	fd = open(hf_m(h, "%s", dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !seen) {
		free(seen);
		EXPECT_LE(0, fd);
		return 0;
	}
	while ((r = read_chunk(fd, seen, n, &dups, &others)) > 0) {
		if (++chunks % every == 0 && kills < max_kills) {
			if (kill_server(h, &ks, NULL, 0) <= 0) {
				EXPECT_TRUE(false) TH_LOG("no successor after kill %d", kills + 1);
				break;
			}
			cts[kills++] = ks.crash_to_serving_ms;
		}
	}
	EXPECT_EQ(0, r) TH_LOG("getdents64 after %d chunks, %d kills: %s", chunks, kills,
			       strerror(-r));
	close(fd);
	for (i = 0; i < n; i++)
		missing += !seen[i];
	EXPECT_EQ(0, missing) TH_LOG("%d of %d entries never listed", missing, n);
	EXPECT_EQ(0, dups) TH_LOG("%d entries listed twice", dups);
	EXPECT_EQ(0, others);
	TH_LOG("%d entries in %d chunks, %d kills", n, chunks, kills);
	free(seen);
	return kills;
}

TEST_F(rec, open_dir_stream_continues)
{
	double cts[8];

	make_entries(_metadata, &self->h, "dir", 300);
	/* Three kills: below the store's back-off threshold. */
	EXPECT_EQ(3, list_with_kills(_metadata, &self->h, "dir", 300, 4, cts, 3));
	EXPECT_EQ(3, hf_status_num(&self->h, "restarts"));
}

/*
 * A file unlinked while open, then the server killed: the fd still reads
 * and writes.  @src: the shared directory's files on the host.
 */
static void unlinked_open_file_check(struct __test_metadata *_metadata, const struct hf *h,
				     const char *src)
{
	char buf[64], path[PATH_MAX];
	struct stat st;
	int fd;

	fd = open(hf_m(h, "u"), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(12, write(fd, "still here\n\n", 12));
	ASSERT_EQ(0, unlink(hf_m(h, "u")));
	snprintf(path, sizeof(path), "%s/u", src);
	expect_absent(_metadata, path);
	ASSERT_LT(0, kill_server(h, NULL, NULL, 0));
	EXPECT_EQ(12, pread(fd, buf, sizeof(buf), 0)) TH_LOG("pread: %s", strerror(errno));
	EXPECT_EQ(0, memcmp(buf, "still here\n\n", 12));
	EXPECT_EQ(4, pwrite(fd, "more", 4, 12)) TH_LOG("pwrite: %s", strerror(errno));
	EXPECT_EQ(16, pread(fd, buf, sizeof(buf), 0));
	EXPECT_EQ(0, memcmp(buf, "still here\n\nmore", 16));
	EXPECT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(0, st.st_nlink);
	EXPECT_EQ(16, st.st_size);
	EXPECT_EQ(0, fsync(fd));
	EXPECT_EQ(0, close(fd));
	EXPECT_EQ(0, count_entries(src));
}

TEST_F(rec, unlinked_open_file_survives)
{
	unlinked_open_file_check(_metadata, &self->h, self->h.src);
}

TEST_F(rec, tmpfile_survives_and_links)
{
	char proc[64], buf[64];
	struct stat st;
	int fd;

	fd = open(self->h.mnt, O_TMPFILE | O_RDWR | O_CLOEXEC, 0640);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR))
		SKIP(return, "O_TMPFILE not supported on this mount: %s", strerror(errno));
	ASSERT_LE(0, fd) TH_LOG("O_TMPFILE: %s", strerror(errno));
	ASSERT_EQ(8, write(fd, "tmpdata\n", 8));
	EXPECT_EQ(0, count_entries(self->h.src));
	ASSERT_LT(0, kill_server(&self->h, NULL, NULL, 0));
	EXPECT_EQ(8, pread(fd, buf, sizeof(buf), 0)) TH_LOG("pread: %s", strerror(errno));
	EXPECT_EQ(4, pwrite(fd, "more", 4, 8)) TH_LOG("pwrite: %s", strerror(errno));
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	EXPECT_EQ(0, linkat(AT_FDCWD, proc, AT_FDCWD, M("named"), AT_SYMLINK_FOLLOW))
		TH_LOG("linkat via /proc after the kill: %s", strerror(errno));
	EXPECT_EQ(0, close(fd));
	expect_content(_metadata, S("named"), "tmpdata\nmore");
	ASSERT_EQ(0, lstat(S("named"), &st));
	EXPECT_EQ(0640, st.st_mode & 07777);
	EXPECT_EQ(1, st.st_nlink);
	expect_content(_metadata, M("named"), "tmpdata\nmore");
}

/*
 * Lock holder: opens the file, takes the lock (@arg: "posix" or "flock"),
 * reports 0 on fd 3, then waits for a byte on fd 4 and exits (closing the
 * file, which drops the lock).
 */
struct holder {
	pid_t pid;
	int rfd, wfd;
};

static int holder_start(const struct hf *h, const char *kind, struct holder *hd)
{
	int up[2], down[2];

	if (pipe2(up, O_CLOEXEC) || pipe2(down, O_CLOEXEC))
		return -1;
	{
		int keep[2] = { up[1], down[0] };

		hd->pid = hf_fork_child(keep, 2);
	}
	if (hd->pid < 0)
		return -1;
	if (hd->pid == 0) {
		int fd = open(hf_m(h, "lk"), O_RDWR | O_CLOEXEC), r = 0;
		char c;

		if (fd < 0) {
			r = errno;
		} else if (!strcmp(kind, "posix")) {
			struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
					    .l_start = 0, .l_len = 100 };

			if (fcntl(fd, F_SETLK, &fl))
				r = errno;
		} else if (flock(fd, LOCK_EX | LOCK_NB)) {
			r = errno;
		}
		if (write(3, &r, sizeof(r)) != sizeof(r))
			_exit(1);
		if (read(4, &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	hd->rfd = up[0];
	hd->wfd = down[1];
	return 0;
}

static int holder_result(struct holder *hd)
{
	struct pollfd pfd = { .fd = hd->rfd, .events = POLLIN };
	int r = -1;

	if (poll(&pfd, 1, 5000) == 1 && read(hd->rfd, &r, sizeof(r)) == sizeof(r))
		return r;
	return -1;
}

static void holder_end(struct holder *hd)
{
	if (write(hd->wfd, "x", 1) < 0)
		;
	close(hd->wfd);
	close(hd->rfd);
	hf_wait(hd->pid, 5000);
}

/* The contender, in its own process: 0, or the errno of its attempt. */
static int try_posix(const struct hf *h, const void *arg)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10 };
	int fd = open(hf_m(h, "lk"), O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return 200;
	if (arg) {
		/* F_GETLK: 0 if the conflicting lock is reported, 201 if not. */
		if (fcntl(fd, F_GETLK, &fl))
			return 202;
		return fl.l_type == F_WRLCK && fl.l_start == 0 && fl.l_len == 100 ? 0 : 201;
	}
	return fcntl(fd, F_SETLK, &fl) ? errno : 0;
}

static int try_flock(const struct hf *h, const void *arg)
{
	int fd = open(hf_m(h, "lk"), O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return 200;
	return flock(fd, LOCK_EX | LOCK_NB) ? errno : 0;
}

static int run_client(const struct hf *h, client_fn fn, const void *arg)
{
	struct client c;
	int r = -1;

	if (client_start(h, fn, arg, &c))
		return -1;
	if (client_done(&c, 10000))
		r = c.have ? c.result : -1;
	else
		hf_abort_conn(h->dev);
	client_end(&c, 5000);
	return r;
}

static void lock_survives(struct __test_metadata *_metadata, struct hf *h, const char *kind,
			  client_fn contender)
{
	struct holder hd;
	long long end;
	int r;

	ASSERT_EQ(0, hf_write_file(hf_m(h, "lk"), "0123456789abcdef0123456789", 26, 0666));
	ASSERT_EQ(0, holder_start(h, kind, &hd));
	ASSERT_EQ(0, holder_result(&hd)) TH_LOG("taking the %s lock failed", kind);
	/* Sanity: it conflicts before the kill. */
	EXPECT_EQ(EAGAIN, run_client(h, contender, NULL));

	ASSERT_LT(0, kill_server(h, NULL, NULL, 0));
	r = run_client(h, contender, NULL);
	EXPECT_EQ(EAGAIN, r) TH_LOG("%s lock after the kill: contender got %d (%s)", kind, r,
				    r > 0 && r < 200 ? strerror(r) : "-");
	if (contender == try_posix)
		EXPECT_EQ(0, run_client(h, contender, "getlk"))
			TH_LOG("F_GETLK does not report the held lock after the kill");

	/* The holder goes away: the lock must go with it. */
	holder_end(&hd);
	end = hf_now_ms() + 3000;
	do {
		r = run_client(h, contender, NULL);
		if (r != EAGAIN)
			break;
		msleep(20);
	} while (hf_now_ms() < end);
	EXPECT_EQ(0, r) TH_LOG("%s lock still held after its holder exited", kind);
}

TEST_F(rec, posix_lock_held_across_kill)
{
	lock_survives(_metadata, &self->h, "posix", try_posix);
}

TEST_F(rec, flock_held_across_kill)
{
	lock_survives(_metadata, &self->h, "flock", try_flock);
}

TEST_F(rec_exit, mmap_shared_across_kill)
{
	const size_t len = 3 * 4096;
	char *map, *host;
	int fd;

	fd = open(M("m"), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, len));
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, map) TH_LOG("mmap: %s", strerror(errno));
	memcpy(map, "written before the kill", 23);
	ASSERT_LT(0, kill_server(&self->h, NULL, NULL, 0));
	memcpy(map + 8192, "written after the kill", 22);
	if (msync(map, len, MS_SYNC)) {
		static char doc[16384];
		const char *e = hf_status(&self->h, doc, sizeof(doc)) ? strstr(doc, "\"requests\":")
								      : NULL;

		EXPECT_TRUE(false) TH_LOG("msync: %s; server %s", strerror(errno),
					  e ? e : "status unavailable");
	}
	EXPECT_EQ(0, fsync(fd)) TH_LOG("fsync: %s", strerror(errno));

	host = malloc(len);
	ASSERT_NE(NULL, host);
	ASSERT_EQ((ssize_t)len, hf_read_file(S("m"), host, len));
	EXPECT_EQ(0, memcmp(host, "written before the kill", 23));
	EXPECT_EQ(0, memcmp(host + 8192, "written after the kill", 22));
	free(host);
	munmap(map, len);
	EXPECT_EQ(0, close(fd));
}

/* 6. A kill of the new server while it starts. */

/* A line of the server log containing both @a and @b? */
static bool log_has(const struct hf *h, const char *a, const char *b)
{
	char line[4096];
	bool found = false;
	FILE *f = fopen(h->log, "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, a) && strstr(line, b);
	fclose(f);
	return found;
}

static int op_mkdir_n(const struct hf *h, const void *arg)
{
	return err_of(mkdir(hf_m(h, "%s", (const char *)arg), 0755));
}

/*
 * Stall a mkdir after its journal record, kill the server, then kill its
 * successor @delay_us after it appears (0: as soon as it exists, before it
 * can serve), and let the third one recover the request.
 */
static void kill_during_restart(struct __test_metadata *_metadata, const struct hf *h,
				const char *name, int delay_us)
{
	static char doc[16384], out[512];
	pid_t victim, second = 0, third;
	struct client c;
	long long end;
	char needle[64];
	bool served;

	ASSERT_EQ(0, hf_ctl(h, out, sizeof(out), 5000, "stall", "MKDIR", "after", "1", NULL))
		TH_LOG("%s", out);
	ASSERT_EQ(0, client_start(h, op_mkdir_n, name, &c));
	ASSERT_TRUE(wait_stalled(h, 1, 5000, &c));
	victim = hf_server_child(h);
	ASSERT_LT(0, victim);
	ASSERT_EQ(0, kill(victim, SIGKILL));
	/* Spin for the successor: it takes milliseconds to start serving. */
	end = hf_now_ms() + REC_SERVE_TIMEOUT_MS;
	while (hf_now_ms() < end) {
		second = hf_server_child(h);
		if (second > 0 && second != victim)
			break;
		second = 0;
	}
	ASSERT_LT(0, second) TH_LOG("no successor appeared");
	if (delay_us)
		usleep(delay_us);
	EXPECT_EQ(0, kill(second, SIGKILL));
	third = hf_wait_serving(h, second, REC_SERVE_TIMEOUT_MS, doc, sizeof(doc));
	if (third <= 0 || third == victim) {
		hf_abort_conn(h->dev);
		client_end(&c, 2000);
		ASSERT_TRUE(false) TH_LOG("no third server serving");
	}
	if (!client_done(&c, 10000))
		hf_abort_conn(h->dev);
	client_end(&c, 5000);
	EXPECT_EQ(0, c.result) TH_LOG("mkdir %s after two kills: %s", name, strerror(c.result));
	{
		struct stat st;

		EXPECT_EQ(0, lstat(hf_s(h, "%s", name), &st));
		EXPECT_TRUE(S_ISDIR(st.st_mode));
	}
	snprintf(needle, sizeof(needle), "holdfastd[%d] ", second);
	/*
	 * Over io_uring the second one answers the request it adopted before
	 * it logs "recovered": then the third may only commit that reply.
	 */
	served = log_has(h, needle, "recovered") ||
		 log_has(h, needle, "our predecessor left in entry");
	/*
	 * Unless the second one got to answer it, the third got it resent.
	 * Its counters now, not when it started serving: the kernel's resend
	 * may reach it a moment after that (seen in CI: 0 then).
	 */
	if (!served) {
		EXPECT_TRUE(hf_status(h, doc, sizeof(doc)));
		EXPECT_LE(1, num(doc, "resent_requests"));
	}
	TH_LOG("second server %d killed %d us after it appeared: %d log lines, %s", second,
	       delay_us, hf_log_count(h, needle),
	       served ? "it had recovered" : "before it served");
}

TEST_F(rec, kill_during_restart)
{
	struct stat st;

	kill_during_restart(_metadata, &self->h, "d1", 0);
	EXPECT_EQ(2, hf_status_num(&self->h, "restarts"));
	/* Again, a few milliseconds into the successor's start (attach, resend). */
	kill_during_restart(_metadata, &self->h, "d2", 3000);
	EXPECT_EQ(4, hf_status_num(&self->h, "restarts"));
	kill_during_restart(_metadata, &self->h, "d3", 10000);
	EXPECT_EQ(6, hf_status_num(&self->h, "restarts"));
	EXPECT_EQ(3, count_entries(self->h.src));
	EXPECT_EQ(0, stat(M("d1"), &st));
	EXPECT_EQ(0, stat(M("d2"), &st));
	EXPECT_EQ(0, stat(M("d3"), &st));
}

/* 7. A corrupted state region is refused. */

/* The state memfd among @pid's fds: "/proc/PID/fd/N", or "" */
static void find_state_memfd(pid_t pid, char *out, size_t len)
{
	char dir[64], link[PATH_MAX], path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	out[0] = 0;
	snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		ssize_t n;

		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		if (strstr(link, "memfd:holdfast-state")) {
			snprintf(out, len, "%s", path);
			break;
		}
	}
	closedir(d);
}

static void corrupt_region(struct __test_metadata *_metadata, struct hf *h, off_t off,
			   const void *bytes, size_t len, const char *reason)
{
	static char doc[16384], out[512];
	char memfd[PATH_MAX];
	struct client c;
	pid_t victim, store = h->pid;
	long long end;
	int fd, found = 0, status;

	ASSERT_EQ(0, hf_ctl(h, out, sizeof(out), 5000, "stall", "MKDIR", "after", "1", NULL));
	ASSERT_EQ(0, client_start(h, op_mkdir_n, "victim-dir", &c));
	ASSERT_TRUE(wait_stalled(h, 1, 5000, &c));
	victim = hf_server_child(h);
	ASSERT_LT(0, victim);
	find_state_memfd(victim, memfd, sizeof(memfd));
	ASSERT_NE(0, memfd[0]) TH_LOG("no memfd:holdfast-state among %d's fds", victim);
	fd = open(memfd, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd) TH_LOG("open %s: %s", memfd, strerror(errno));
	ASSERT_EQ((ssize_t)len, pwrite(fd, bytes, len, off));
	close(fd);

	ASSERT_EQ(0, kill(victim, SIGKILL));
	end = hf_now_ms() + 5000;
	while (hf_now_ms() < end && !(found = hf_log_count(h, "refusing state region")))
		msleep(10);
	EXPECT_LT(0, found) TH_LOG("no 'refusing state region' in the server log");
	EXPECT_LT(0, hf_log_count(h, reason)) TH_LOG("the refusal does not say '%s'", reason);

	/*
	 * Nobody serves garbage.  The refusing server exits with status 78
	 * ("restarting cannot help"), so the store gives up at once instead of
	 * looping: it exits 78 and releases the connection, and the caller gets
	 * a clear ECONNABORTED rather than hanging.
	 */
	status = hf_wait(store, 5000);
	h->reaped = status != -1;
	h->wstatus = status;
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 78)
		TH_LOG("the store did not give up with status 78 (wait status %#x)", status);
	EXPECT_FALSE(hf_status(h, doc, sizeof(doc))) TH_LOG("a server answers: %s", doc);
	EXPECT_TRUE(client_done(&c, 5000)) TH_LOG("client still stuck after the store gave up");
	client_end(&c, 5000);
	EXPECT_EQ(ECONNABORTED, c.result) TH_LOG("mkdir returned %d", c.result);
	EXPECT_EQ(0, hf_log_count(h, "restarting with") - 1)
		TH_LOG("the store restarted the refusing server");
	if (status == -1) {
		/* Clean up without hanging: abort the connection, stop the store. */
		hf_abort_conn(h->dev);
		kill(store, SIGKILL);
		h->wstatus = hf_wait(store, 10000);
		h->reaped = true;
	}
}

TEST_F(rec, corrupt_region_magic_refused)
{
	corrupt_region(_metadata, &self->h, 0, "BADMAGIC", 8, "bad magic");
}

TEST_F(rec, corrupt_region_version_refused)
{
	uint32_t v = 999;

	corrupt_region(_metadata, &self->h, 8, &v, sizeof(v), "layout version 999");
}

/* ------------------------------------------------------------------ */
/* A shared directory that is itself a FUSE mount (another holdfastd's). */
/* ------------------------------------------------------------------ */

/*
 * Its file handles do not bring inodes back (none at all since Linux 6.6
 * without FUSE_EXPORT_SUPPORT; before, only while the kernel has the inode
 * cached): the fd store must keep the inodes' fds for the successor.  The
 * outer server runs with --cache never, so every access after the kill
 * reaches it instead of the page cache.
 */
FIXTURE(rec_nested) {
	struct hf h;		/* the server that is killed */
	struct hf inner;	/* its shared directory's server */
};

HF_TRANSPORT_VARIANTS(rec_nested);

/*
 * For fixtures with an outer server "h" and an "inner" one: starts the
 * inner server, then the outer one with the options @_o on its mount.
 */
#define NESTED_SETUP(_o) do {						\
	struct hf_opts _in = { .transport = "dev" };			\
									\
	if (geteuid() != 0)						\
		SKIP(_exit(255), "holdfastd must run as root (euid %d)",	\
		     (int)geteuid());						\
	ASSERT_EQ(0, hf_start(&self->inner, &_in, _metadata->timeout));	\
	(_o)->shared_dir = self->inner.mnt;				\
	HF_SETUP(_o);							\
} while (0)

#define NESTED_TEARDOWN() do {						\
	HF_TEARDOWN();							\
	hf_teardown(&self->inner, !_metadata->passed);			\
} while (0)

FIXTURE_SETUP(rec_nested)
{
	struct hf_opts o = { .cache = "never", .transport = variant->transport };

	NESTED_SETUP(&o);
}

FIXTURE_TEARDOWN(rec_nested)
{
	NESTED_TEARDOWN();
}

TEST_F(rec_nested, open_files_survive)
{
	char buf[64];
	struct stat st;
	int rfd, wfd;

	ASSERT_EQ(0, hf_write_file(hf_s(&self->inner, "r"), "read me\n", 8, 0644));
	rfd = open(M("r"), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, rfd) TH_LOG("open r: %s", strerror(errno));
	wfd = open(M("w"), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	ASSERT_LE(0, wfd) TH_LOG("create w: %s", strerror(errno));
	ASSERT_EQ(7, write(wfd, "before\n", 7));
	ASSERT_LT(0, kill_server(&self->h, NULL, NULL, 0));

	EXPECT_EQ(8, pread(rfd, buf, sizeof(buf), 0)) TH_LOG("pread: %s", strerror(errno));
	EXPECT_EQ(0, memcmp(buf, "read me\n", 8));
	EXPECT_EQ(6, pwrite(wfd, "after\n", 6, 7)) TH_LOG("pwrite: %s", strerror(errno));
	EXPECT_EQ(13, pread(wfd, buf, sizeof(buf), 0)) TH_LOG("pread: %s", strerror(errno));
	EXPECT_EQ(0, fstat(wfd, &st)) TH_LOG("fstat: %s", strerror(errno));
	EXPECT_EQ(13, st.st_size);
	EXPECT_EQ(0, fsync(wfd)) TH_LOG("fsync: %s", strerror(errno));
	EXPECT_EQ(0, close(rfd));
	EXPECT_EQ(0, close(wfd));
	expect_content(_metadata, hf_s(&self->inner, "w"), "before\nafter\n");
	EXPECT_EQ(1, hf_status_num(&self->h, "restarts"));
}

TEST_F(rec_nested, dir_fd_survives)
{
	struct stat st;
	DIR *d;
	int dfd, fd, n = 0;

	ASSERT_EQ(0, mkdir(M("d"), 0755));
	ASSERT_EQ(0, hf_write_file(M("d/old"), "x", 1, 0644));
	dfd = open(M("d"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, dfd);
	ASSERT_LT(0, kill_server(&self->h, NULL, NULL, 0));

	/* LOOKUPs in the directory's node id, and a handle opened on it. */
	EXPECT_EQ(0, fstatat(dfd, "old", &st, 0)) TH_LOG("fstatat: %s", strerror(errno));
	fd = openat(dfd, "new", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	EXPECT_LE(0, fd) TH_LOG("openat: %s", strerror(errno));
	if (fd >= 0) {
		EXPECT_EQ(1, write(fd, "y", 1));
		EXPECT_EQ(0, close(fd));
	}
	d = fdopendir(dfd);
	ASSERT_NE(NULL, d) TH_LOG("fdopendir: %s", strerror(errno));
	errno = 0;
	while (readdir(d))
		n++;
	EXPECT_EQ(0, errno) TH_LOG("readdir: %s", strerror(errno));
	EXPECT_EQ(4, n);	/* ., .., old, new */
	closedir(d);
	expect_content(_metadata, hf_s(&self->inner, "d/new"), "y");
}

TEST_F(rec_nested, unlinked_open_file_survives)
{
	unlinked_open_file_check(_metadata, &self->h, self->inner.src);
}

/*
 * The same with a store of 64 fds: inodes' fds may take 48 of them, and
 * LOOKUPs only 36, so that files opened after a big listing still find
 * room.  60 files looked up fill the LOOKUPs' part; one of them opened
 * after that, and one created, must still survive the crash.
 */
#define REC_SMALL_STORE	64
#define REC_LISTED	60

FIXTURE(rec_nested_small_store) {
	struct hf h;
	struct hf inner;
};

FIXTURE_SETUP(rec_nested_small_store)
{
	struct hf_opts o = { .transport = "dev", .store_max_fds = REC_SMALL_STORE };

	NESTED_SETUP(&o);
}

FIXTURE_TEARDOWN(rec_nested_small_store)
{
	NESTED_TEARDOWN();
}

TEST_F(rec_nested_small_store, open_files_keep_room)
{
	char name[16], buf[16];
	struct stat st;
	int i, fd, cfd;

	for (i = 0; i < REC_LISTED; i++) {
		snprintf(name, sizeof(name), "e%02d", i);
		ASSERT_EQ(0, hf_write_file(hf_s(&self->inner, "%s", name), name, 3, 0644));
	}
	/* Each one a kernel reference, held while its dentry is cached. */
	for (i = 0; i < REC_LISTED; i++)
		ASSERT_EQ(0, stat(M("e%02d", i), &st));
	EXPECT_EQ(1, hf_log_count(&self->h, "all it has room for besides open files"));
	fd = open(M("e%02d", REC_LISTED - 1), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	cfd = open(M("created"), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	ASSERT_LE(0, cfd);
	ASSERT_LT(0, kill_server(&self->h, NULL, NULL, 0));

	/* Never read before the kill: the page cache cannot answer. */
	memset(buf, 0, sizeof(buf));
	EXPECT_EQ(3, pread(fd, buf, sizeof(buf), 0)) TH_LOG("pread: %s", strerror(errno));
	EXPECT_STREQ("e59", buf);
	EXPECT_EQ(4, pwrite(cfd, "new\n", 4, 0)) TH_LOG("pwrite: %s", strerror(errno));
	EXPECT_EQ(0, fsync(cfd)) TH_LOG("fsync: %s", strerror(errno));
	EXPECT_EQ(0, close(fd));
	EXPECT_EQ(0, close(cfd));
	expect_content(_metadata, hf_s(&self->inner, "created"), "new\n");
	EXPECT_EQ(0, hf_log_count(&self->h, "should be in the fd store but is not"));
}

/* ------------------------------------------------------------------ */
/* Many kills: the store started with REC_MANY_STORE_ARGS.             */
/* ------------------------------------------------------------------ */

FIXTURE(many) {
	struct hf h;
};

HF_TRANSPORT_VARIANTS(many);

FIXTURE_SETUP(many)
{
	struct hf_opts o = { .transport = variant->transport };

	HF_SETUP(&o);
}

FIXTURE_TEARDOWN(many)
{
	HF_TEARDOWN();
}

/* See rec_exit. */
FIXTURE(many_exit) {
	struct hf h;
};

FIXTURE_VARIANT(many_exit) {
	const char *transport;
};

FIXTURE_VARIANT_ADD(many_exit, dev) {
	.transport = "dev",
};

#ifdef HF_URING_EXIT_RACE
FIXTURE_VARIANT_ADD(many_exit, uring) {
	.transport = "uring",
};
#endif

FIXTURE_SETUP(many_exit)
{
	struct hf_opts o = { .transport = variant->transport };

	HF_SETUP(&o);
}

FIXTURE_TEARDOWN(many_exit)
{
	HF_TEARDOWN();
}

/* 3. A 10k-entry listing, killed between chunks. */
TEST_F_TIMEOUT(many, readdir_10k_killed_between_chunks, 90)
{
	double cts[64], mn, md, mx;
	int kills;

	make_entries(_metadata, &self->h, "big", 10000);
	kills = list_with_kills(_metadata, &self->h, "big", 10000, 40, cts, 12);
	EXPECT_EQ(12, kills);
	stats3(cts, kills, &mn, &md, &mx);
	TH_LOG("readdir: crash-to-serving over %d kills: min %.2f median %.2f max %.2f ms",
	       kills, mn, md, mx);
}

/* 5. A mixed workload under 200+ kills. */
#define MANY_KILLS	200
#define MANY_WORKERS	4

TEST_F_TIMEOUT(many_exit, repeated_kills_mixed_workload, 170)
{
	static double cts[MANY_KILLS + 8], k2a[MANY_KILLS + 8];
	long iterations, syscalls, failures, corrupt, bytes;
	double mn, md, mx, restarts;
	struct kill_sample ks;
	long long t0 = hf_now_ms();
	struct wl wl;
	int kills = 0, bad, i;

	srand((unsigned int)getpid());
	ASSERT_EQ(0, wl_start(&wl, self->h.mnt, MANY_WORKERS));
	while (kills < MANY_KILLS && !wl_failed(&wl) && hf_now_ms() - t0 < 140000) {
		msleep(50 + rand() % 101);
		if (kill_server(&self->h, &ks, NULL, 0) <= 0) {
			TH_LOG("kill %d: no successor serving", kills + 1);
			break;
		}
		cts[kills] = ks.crash_to_serving_ms;
		k2a[kills] = (double)ks.kill_to_answer_ms;
		kills++;
	}
	/* Let the workers run a little on the last server, then stop them. */
	msleep(200);
	bad = wl_stop(&wl, 20000);
	if (wl_stuck(&wl)) {
		TH_LOG("%d workers stuck on the mount: aborting the connection", wl_stuck(&wl));
		hf_abort_conn(self->h.dev);
	}
	wl_totals(&wl, &iterations, &syscalls, &failures, &corrupt, &bytes);
	for (i = 0; i < wl.n; i++)
		if (wl.sh->w[i].what[0])
			TH_LOG("worker %d: %s", i, wl.sh->w[i].what);
	EXPECT_EQ(0, failures);
	EXPECT_EQ(0, corrupt);
	EXPECT_EQ(0, bad) TH_LOG("%d workers did not finish cleanly", bad);
	restarts = hf_status_num(&self->h, "restarts");
	if (!failures && !corrupt) {
		/* (The killer stops at the first failure: no point in more.) */
		EXPECT_LE(MANY_KILLS, kills);
		EXPECT_LE(MANY_KILLS, restarts);
	}
	TH_LOG("%d kills in %.1f s; workers: %ld passes, %ld checked syscalls, %ld MiB verified, "
	       "%ld failed, %ld bytes corrupt; restarts %g",
	       kills, (hf_now_ms() - t0) / 1000.0, iterations, syscalls, bytes >> 20, failures,
	       corrupt, restarts);
	stats3(cts, kills, &mn, &md, &mx);
	TH_LOG("crash-to-serving (server's view): "
	       "min %.2f median %.2f max %.2f ms", mn, md, mx);
	stats3(k2a, kills, &mn, &md, &mx);
	TH_LOG("kill -> successor answers status (test's view): min %.0f median %.0f max %.0f ms",
	       mn, md, mx);
	wl_free(&wl);
}

/* ------------------------------------------------------------------ */
/* The store's crash-loop guard, with its defaults.                    */
/* ------------------------------------------------------------------ */

/*
 * A server that came up, served, and was then killed from outside is not a
 * crash loop: the store must keep restarting it, without backing off (the
 * mount's life depends on it).  Only deaths before READY=1 may count
 * toward --restart-max (20 in 60 s); before 0318d79 every death did, and
 * the 21st kill within a minute ended the mount, after back-offs of up to
 * 3.2 s per restart from the 4th on.  A successor must serve within 2 s of
 * each kill, so a back-off fails this test quickly.
 */
TEST_F_TIMEOUT(rec, crash_loop_guard_spares_serving_server, 60)
{
	static char doc[16384];
	char buf[16];
	int kills, r;

	for (kills = 0; kills < 25; kills++) {
		pid_t victim = hf_server_child(&self->h), next;

		/* It serves: a file written and read back through it. */
		snprintf(buf, sizeof(buf), "pass %02d", kills);
		ASSERT_EQ(0, hf_write_file(M("f"), buf, 7, 0644)) TH_LOG("write before kill %d",
									 kills + 1);
		ASSERT_EQ(7, hf_read_file(M("f"), buf, sizeof(buf)));
		ASSERT_LT(0, victim);
		ASSERT_EQ(0, kill(victim, SIGKILL));
		next = hf_wait_serving(&self->h, victim, 2000, doc, sizeof(doc));
		if (next <= 0)
			break;
		msleep(100);
	}
	TH_LOG("%d kills survived; store log: %d restarts, %d 'crash loop'", kills,
	       hf_log_count(&self->h, "restarting with"), hf_log_count(&self->h, "crash loop"));
	EXPECT_EQ(25, kills) TH_LOG("no server serving within 2 s of kill %d", kills + 1);
	if (kills < 25)
		hf_abort_conn(self->h.dev);
	r = hf_write_file(M("f"), "end", 3, 0644);
	EXPECT_EQ(0, r) TH_LOG("mount after %d kills: %s", kills, strerror(errno));
}

TEST_HARNESS_MAIN
