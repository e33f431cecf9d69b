// SPDX-License-Identifier: GPL-2.0
/*
 * The /dev/fuse worker pool.  A worker about to wait for a device while no
 * other worker reads /dev/fuse wakes a spare (started on first need, up to
 * --max-threads), so requests that could be served at once are not left
 * unread behind it.  Spares read the main /dev/fuse fd, which the fd store
 * keeps: what they hold at a crash is resent to the successor.
 *
 * The slow device is another holdfastd mount, stopped with SIGSTOP and
 * bind-mounted into the tested server's shared directory at "slow": a READ
 * of a file there keeps a worker waiting (in the stopped server's queue)
 * for as long as the test likes, while "p*" files beside it are on tmpfs.
 *
 * Host only, over /dev/fuse only: it starts, stops and kills its own
 * servers, and the ring transport has no worker pool.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

/* More than any variant's --max-threads: one READ stays queued. */
#define NREADS	4

/*
 * A child that stats @path, or opens it and, once told to go, READs one
 * byte.  The test process never holds a "slow" file open: every child it
 * forks closes what it inherits, and each close of a FUSE file is a FLUSH
 * that the stopped server would hold.
 */
struct client {
	pid_t pid;
	int rfd;	/* the child's reports */
	int go;		/* write a byte: READ now */
	bool went;
	int result;	/* -1 until it answered; then 0 or an errno */
};

static int client_start(struct client *c, const char *path, bool rd, char want)
{
	int p[2], g[2] = { -1, -1 }, keep[2];

	c->result = -1;
	c->go = -1;
	c->went = false;
	if (pipe2(p, O_CLOEXEC))
		return -1;
	if (rd && pipe2(g, O_CLOEXEC)) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	keep[0] = p[1];
	keep[1] = g[0];
	c->pid = hf_fork_child(keep, rd ? 2 : 1);
	if (c->pid < 0)
		return -1;
	if (c->pid == 0) {
		struct stat st;
		char b = 0;
		int r, fd;

		if (!rd) {
			r = stat(path, &st) ? errno : 0;
			_exit(write(3, &r, sizeof(r)) == sizeof(r) ? 0 : 1);
		}
		fd = open(path, O_RDONLY);
		r = fd < 0 ? errno : 0;
		if (write(3, &r, sizeof(r)) != sizeof(r) || r || read(4, &b, 1) != 1)
			_exit(1);
		r = pread(fd, &b, 1, 0) == 1 ? (b == want ? 0 : EBADMSG) : errno ? errno : EIO;
		_exit(write(3, &r, sizeof(r)) == sizeof(r) ? 0 : 1);
	}
	close(p[1]);
	c->rfd = p[0];
	if (rd) {
		int r = -1;

		close(g[0]);
		c->go = g[1];
		if (read(c->rfd, &r, sizeof(r)) != sizeof(r) || r)
			return -1;	/* could not open it */
	}
	return 0;
}

static int client_go(struct client *c)
{
	c->went = true;
	return write(c->go, "g", 1) == 1 ? 0 : -1;
}

/* Has it answered within @timeout_ms? */
static bool client_done(struct client *c, int timeout_ms)
{
	struct pollfd pfd = { .fd = c->rfd, .events = POLLIN };

	if (c->result >= 0)
		return true;
	if (poll(&pfd, 1, timeout_ms) != 1)
		return false;
	if (read(c->rfd, &c->result, sizeof(c->result)) != sizeof(c->result))
		c->result = EPIPE;	/* died without a word */
	return true;
}

static void client_end(struct client *c)
{
	if (c->pid <= 0)
		return;
	close(c->rfd);
	if (c->go >= 0)
		close(c->go);
	hf_wait(c->pid, 2000);
	c->pid = 0;
}

FIXTURE(workers) {
	struct hf h;		/* the server under test */
	struct hf slow;		/* the stopped one behind "slow" */
	char fusectl[64];	/* a private fusectl, for the stopped queue */
	pid_t stopped;
	struct client rd[NREADS];
	struct client st[NREADS];
};

FIXTURE_VARIANT(workers) {
	int max_threads;	/* --max-threads, with --thread-pool-size 1 */
};

/* Two spares: two READs wait and a stat is still served; three do not. */
FIXTURE_VARIANT_ADD(workers, max3) {
	.max_threads = 3,
};

/* No spare: one waiting READ holds the queue. */
FIXTURE_VARIANT_ADD(workers, max1) {
	.max_threads = 1,
};

/* Requests queued for the stopped server (fusectl "waiting"). */
static int slow_waiting(FIXTURE_DATA(workers) *self)
{
	return hf_read_num("%s/%u/waiting", self->fusectl, (unsigned int)self->slow.dev);
}

static bool wait_slow_waiting(FIXTURE_DATA(workers) *self, int n, int timeout_ms)
{
	long long end = hf_now_ms() + timeout_ms;

	do {
		if (slow_waiting(self) >= n)
			return true;
		usleep(2000);
	} while (hf_now_ms() < end);
	return false;
}

FIXTURE_SETUP(workers)
{
	struct hf_opts so = { .cache = "never", .transport = "dev" };
	char extra[64];
	struct hf_opts o = {
		.cache = "never", .threads = 1, .transport = "dev", .extra_args = extra,
	};
	int i;

	snprintf(extra, sizeof(extra), "--max-threads %d", variant->max_threads);
	HF_SETUP(&o);
	ASSERT_EQ(0, hf_start(&self->slow, &so, _metadata->timeout));
	strcpy(self->fusectl, "/tmp/holdfast-fusectl.XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->fusectl));
	ASSERT_EQ(0, mount("none", self->fusectl, "fusectl", 0, NULL))
		TH_LOG("mount fusectl: %s", strerror(errno));

	ASSERT_EQ(0, mkdir(S("slow"), 0755));
	ASSERT_EQ(0, mount(self->slow.mnt, S("slow"), NULL, MS_BIND, NULL))
		TH_LOG("bind %s: %s", self->slow.mnt, strerror(errno));
	for (i = 0; i < NREADS; i++) {
		char b = 'a' + i;

		ASSERT_EQ(0, hf_write_file(hf_s(&self->slow, "r%d", i), &b, 1, 0644));
		ASSERT_EQ(0, hf_write_file(S("p%d", i), "p", 1, 0644));
		ASSERT_EQ(0, client_start(&self->rd[i], M("slow/r%d", i), true, b))
			TH_LOG("open slow/r%d failed", i);
	}
	self->stopped = hf_server_child(&self->slow);
	ASSERT_LT(0, self->stopped);
	ASSERT_EQ(0, kill(self->stopped, SIGSTOP));
	ASSERT_LE(0, slow_waiting(self)) TH_LOG("no fusectl entry for the stopped server");
}

FIXTURE_TEARDOWN(workers)
{
	int i;

	if (self->stopped > 0)
		kill(self->stopped, SIGCONT);
	for (i = 0; i < NREADS; i++) {
		client_end(&self->rd[i]);
		client_end(&self->st[i]);
	}
	umount2(S("slow"), MNT_DETACH);
	if (self->fusectl[0]) {
		umount2(self->fusectl, MNT_DETACH);
		rmdir(self->fusectl);
	}
	HF_TEARDOWN();
	hf_teardown(&self->slow, !_metadata->passed);
}

/*
 * READs of "slow" files, one at a time: while fewer than --max-threads
 * wait, a stat of a tmpfs file is served at once; once all of them wait,
 * the stat and one more READ wait too.
 */
static void hold_workers(struct __test_metadata *_metadata, FIXTURE_DATA(workers) *self,
			 int max)
{
	int i;

	ASSERT_EQ(1, hf_status_num(&self->h, "threads"));
	ASSERT_EQ(max, hf_status_num(&self->h, "max_threads"));
	for (i = 0; i < max; i++) {
		ASSERT_EQ(0, client_go(&self->rd[i]));
		ASSERT_TRUE(wait_slow_waiting(self, i + 1, 5000))
			TH_LOG("READ %d never reached the stopped server (%d waiting)", i,
			       slow_waiting(self));
		ASSERT_EQ(0, client_start(&self->st[i], M("p%d", i), false, 0));
		if (i + 1 < max) {
			ASSERT_TRUE(client_done(&self->st[i], 5000))
				TH_LOG("stat not served with %d of %d workers waiting", i + 1, max);
			EXPECT_EQ(0, self->st[i].result);
		}
	}
	EXPECT_EQ(max, hf_status_num(&self->h, "workers"));
	ASSERT_EQ(0, client_go(&self->rd[max]));
	EXPECT_FALSE(client_done(&self->st[max - 1], 1000))
		TH_LOG("stat served with all %d workers waiting", max);
	EXPECT_EQ(max, slow_waiting(self)) TH_LOG("READ %d reached a worker", max);
	for (i = 0; i <= max; i++)
		EXPECT_FALSE(client_done(&self->rd[i], 0)) TH_LOG("READ %d returned", i);
}

/* Everything answers, right, once the slow server goes on. */
static void release(struct __test_metadata *_metadata, FIXTURE_DATA(workers) *self)
{
	int i;

	ASSERT_EQ(0, kill(self->stopped, SIGCONT));
	self->stopped = 0;
	for (i = 0; i < NREADS; i++) {
		struct client *c[2] = { &self->rd[i], &self->st[i] };
		int k;

		for (k = 0; k < 2; k++) {
			if (!c[k]->pid || (!k && !c[k]->went))
				continue;
			ASSERT_TRUE(client_done(c[k], 10000))
				TH_LOG("%s %d never answered", k ? "stat" : "READ", i);
			EXPECT_EQ(0, c[k]->result) TH_LOG("%s %d: %s", k ? "stat" : "READ", i,
							  strerror(c[k]->result));
		}
	}
}

TEST_F(workers, spares_read_while_workers_wait)
{
	hold_workers(_metadata, self, variant->max_threads);
	release(_metadata, self);
	/* Spares stay, parked. */
	EXPECT_EQ(variant->max_threads, hf_status_num(&self->h, "workers"));
}

/*
 * A crash while spares hold requests: the successor gets them again
 * (FUSE_NOTIFY_RESEND) and every caller succeeds.  The slow server goes on
 * right after the kill: the dying server's exit waits for it.
 */
TEST_F(workers, held_requests_survive_a_crash)
{
	pid_t victim;
	long long end;

	hold_workers(_metadata, self, variant->max_threads);
	victim = hf_server_child(&self->h);
	ASSERT_LT(0, victim);
	ASSERT_EQ(0, kill(victim, SIGKILL));
	/* Its exit flushes its files on "slow": that waits for the server. */
	release(_metadata, self);
	end = hf_now_ms() + 10000;
	while (hf_pid_alive(victim) && hf_now_ms() < end)
		usleep(2000);
	ASSERT_FALSE(hf_pid_alive(victim));
	ASSERT_LT(0, hf_wait_serving(&self->h, victim, 15000, NULL, 0));
	EXPECT_LE(1, hf_status_num(&self->h, "resent_requests"));
}

TEST_HARNESS_MAIN
