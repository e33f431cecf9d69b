// SPDX-License-Identifier: GPL-2.0
/*
 * FUSE_NOTIFY_RESEND in the guest kernel, with a raw /dev/fuse server: the
 * test is its own FUSE server (no holdfastd, no virtio-fs).
 *
 * A client stat()s a file.  A "daemon" child reads the LOOKUP and dies
 * without answering; the parent, which holds the same /dev/fuse file (the
 * fd store), sends FUSE_NOTIFY_RESEND, reads the LOOKUP again with
 * FUSE_UNIQUE_RESEND (bit 63) set in the unique, and answers it; the client
 * succeeds.  Which kernels must have it:
 *
 *   6.9 and later                         upstream (FUSE_HAS_RESEND)
 *   6.1 with holdfast's fuse.ko           kernel/patches/6.1 (out of tree:
 *                                         /sys/module/fuse/taint has "O")
 *   6.1 with the distribution's fuse.ko   no: the notification fails with
 *                                         EINVAL, and the test checks that
 *
 * HF_EXPECT_RESEND=0|1 overrides the guess.  The kernel's INIT flags2 must
 * agree with the expectation, so a stock module passing as ours (or the
 * reverse) fails the test.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"

/* Protocol 7.40, not in the 6.1 uapi header (the values are upstream's). */
#ifndef FUSE_HAS_RESEND
#define FUSE_HAS_RESEND (1ULL << 39)
#endif
#ifndef FUSE_UNIQUE_RESEND
#define FUSE_UNIQUE_RESEND (1ULL << 63)
#endif
#define NOTIFY_RESEND 7

#define BUFSZ (FUSE_MIN_READ_BUFFER + 128 * 1024)
#define FILE_SIZE 4242

/* 1: the kernel must support RESEND, 0: must not, -1: unknown. */
static int expect_resend(void)
{
	const char *e = getenv("HF_EXPECT_RESEND");
	struct utsname u;
	char taint[16] = "";
	int maj = 0, min = 0, fd;

	if (e && *e)
		return atoi(e) != 0;
	if (uname(&u) || sscanf(u.release, "%d.%d", &maj, &min) != 2)
		return -1;
	if (maj > 6 || (maj == 6 && min >= 9))
		return 1;
	if (maj == 6 && min == 1) {
		fd = open("/sys/module/fuse/taint", O_RDONLY);
		if (fd < 0)
			return -1;
		if (read(fd, taint, sizeof(taint) - 1) < 0)
			taint[0] = 0;
		close(fd);
		return strchr(taint, 'O') != NULL;
	}
	return -1;
}

struct srv {
	int fd;
	char dir[64];
	uint64_t init_flags;
	char buf[BUFSZ];
};

static int reply(int fd, uint64_t unique, int error, const void *arg, size_t len)
{
	char b[sizeof(struct fuse_out_header) + 512];
	struct fuse_out_header *oh = (void *)b;

	oh->len = sizeof(*oh) + len;
	oh->error = error;
	oh->unique = unique;
	memcpy(b + sizeof(*oh), arg, len);
	return write(fd, b, oh->len) == (ssize_t)oh->len ? 0 : -errno;
}

static int send_resend(int fd)
{
	struct fuse_out_header oh = { .len = sizeof(oh), .error = NOTIFY_RESEND };

	return write(fd, &oh, sizeof(oh)) == sizeof(oh) ? 0 : -errno;
}

/* One request, waiting at most ms; NULL on timeout or error. */
static struct fuse_in_header *next_req(int fd, char *buf, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	if (poll(&p, 1, ms) != 1)
		return NULL;
	n = read(fd, buf, BUFSZ);
	if (n < (ssize_t)sizeof(struct fuse_in_header))
		return NULL;
	return (struct fuse_in_header *)buf;
}

static int answer_lookup(int fd, struct fuse_in_header *ih)
{
	struct fuse_entry_out e = {
		.nodeid = 2, .generation = 1, .entry_valid = 60, .attr_valid = 60,
		.attr = { .ino = 2, .mode = S_IFREG | 0644, .nlink = 1,
			  .size = FILE_SIZE, .blksize = 4096 },
	};

	return reply(fd, ih->unique, 0, &e, sizeof(e));
}

/* Answer whatever else comes (GETATTR, ...) until the client exits. */
static int serve_until_exit(int fd, char *buf, pid_t client)
{
	struct fuse_attr_out a = {
		.attr_valid = 60,
		.attr = { .ino = 2, .mode = S_IFREG | 0644, .nlink = 1,
			  .size = FILE_SIZE, .blksize = 4096 },
	};
	struct fuse_in_header *ih;
	int st, i;

	for (i = 0; i < 100; i++) {
		if (waitpid(client, &st, WNOHANG) == client)
			return st;
		ih = next_req(fd, buf, 50);
		if (!ih)
			continue;
		if (ih->opcode == FUSE_GETATTR)
			reply(fd, ih->unique, 0, &a, sizeof(a));
		else if (ih->opcode == FUSE_LOOKUP)
			answer_lookup(fd, ih);
		else if (ih->opcode != FUSE_FORGET && ih->opcode != FUSE_BATCH_FORGET)
			reply(fd, ih->unique, -ENOSYS, NULL, 0);
	}
	kill(client, SIGKILL);
	waitpid(client, &st, 0);
	return -1;
}

/* Mount with fd=, read and answer INIT. */
static int srv_start(struct srv *s)
{
	struct fuse_in_header *ih;
	struct fuse_init_in *in;
	struct fuse_init_out out = {
		.major = FUSE_KERNEL_VERSION, .minor = 38,
		.max_readahead = 65536, .max_write = 65536,
		.max_background = 16, .congestion_threshold = 12,
	};
	char opts[128];

	s->fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (s->fd < 0)
		return -errno;
	strcpy(s->dir, "/tmp/hf-resend-XXXXXX");
	if (!mkdtemp(s->dir))
		return -errno;
	snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0", s->fd);
	if (mount("hfresend", s->dir, "fuse", MS_NOSUID | MS_NODEV, opts))
		return -errno;
	ih = next_req(s->fd, s->buf, 5000);
	if (!ih || ih->opcode != FUSE_INIT)
		return -EPROTO;
	in = (struct fuse_init_in *)(ih + 1);
	s->init_flags = in->flags;
	if (in->flags & FUSE_INIT_EXT)
		s->init_flags |= (uint64_t)in->flags2 << 32;
	if (in->minor < out.minor)
		out.minor = in->minor;
	/* Lookups in the same directory must not wait for each other. */
	out.flags = in->flags & FUSE_PARALLEL_DIROPS;
	return reply(s->fd, ih->unique, 0, &out, sizeof(out));
}

static void srv_stop(struct srv *s)
{
	if (s->dir[0])
		umount2(s->dir, MNT_DETACH);
	if (s->fd >= 0)
		close(s->fd);
	if (s->dir[0])
		rmdir(s->dir);
}

/* A client that stat()s name and exits 0 if it saw the file, else errno. */
static pid_t client(const char *dir, const char *name)
{
	char path[128];
	struct stat st;
	pid_t pid = fork();

	if (pid)
		return pid;
	/* Must not hold /dev/fuse: that would keep an abort from happening. */
	syscall(SYS_close_range, 3, ~0U, 0);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (stat(path, &st))
		_exit(errno & 0xff);
	_exit(st.st_size == FILE_SIZE ? 0 : 100);
}

FIXTURE(resend) {
	struct srv *s;
	int expect;
};

FIXTURE_SETUP(resend)
{
	int r;

	self->s = calloc(1, sizeof(*self->s));
	ASSERT_NE(NULL, self->s);
	self->s->fd = -1;
	r = srv_start(self->s);
	ASSERT_EQ(0, r) TH_LOG("mount/INIT: %s", strerror(-r));
	self->expect = expect_resend();
}

FIXTURE_TEARDOWN(resend)
{
	srv_stop(self->s);
	free(self->s);
}

/*
 * The daemon dies holding an unanswered LOOKUP; the fd store (this process)
 * resends it and answers.  Without RESEND support the notification must be
 * refused with EINVAL, and closing the last fd must end the client.
 */
TEST_F_TIMEOUT(resend, fdstore_survives_daemon_death, 30)
{
	struct srv *s = self->s;
	int has = !!(s->init_flags & FUSE_HAS_RESEND);
	struct fuse_in_header *ih;
	uint64_t first;
	pid_t c, d;
	int st, pfd[2];

	/* Here, not in the setup: a failed setup skips the teardown. */
	TH_LOG("kernel INIT flags 0x%llx, FUSE_HAS_RESEND %s, expected %s",
	       (unsigned long long)s->init_flags, has ? "yes" : "no",
	       self->expect < 0 ? "?" : self->expect ? "yes" : "no");
	if (self->expect >= 0)
		ASSERT_EQ(self->expect, has);

	ASSERT_EQ(0, pipe(pfd));
	c = client(s->dir, "file");
	d = fork();
	ASSERT_LE(0, d);
	if (d == 0) {
		ih = next_req(s->fd, s->buf, 5000);
		if (!ih || ih->opcode != FUSE_LOOKUP)
			_exit(1);
		if (write(pfd[1], &ih->unique, sizeof(ih->unique)) != sizeof(ih->unique))
			_exit(2);
		_exit(0);	/* dies without answering */
	}
	ASSERT_EQ(d, waitpid(d, &st, 0));
	ASSERT_EQ(0, st) TH_LOG("daemon child did not read a LOOKUP");
	ASSERT_EQ(sizeof(first), read(pfd[0], &first, sizeof(first)));
	close(pfd[0]);
	close(pfd[1]);
	ASSERT_EQ(0, first & FUSE_UNIQUE_RESEND);

	/* The client is still waiting: the connection lives on in our fd. */
	usleep(200000);
	ASSERT_EQ(0, waitpid(c, &st, WNOHANG));

	if (!has) {
		ASSERT_EQ(-EINVAL, send_resend(s->fd));
		/* Nothing comes back; the last close aborts the client's wait. */
		ASSERT_EQ(NULL, next_req(s->fd, s->buf, 200));
		close(s->fd);
		s->fd = -1;
		ASSERT_EQ(c, waitpid(c, &st, 0));
		ASSERT_TRUE(WIFEXITED(st));
		EXPECT_EQ(ECONNABORTED, WEXITSTATUS(st));
		return;
	}

	ASSERT_EQ(0, send_resend(s->fd));
	ih = next_req(s->fd, s->buf, 2000);
	ASSERT_NE(NULL, ih);
	ASSERT_EQ(FUSE_LOOKUP, ih->opcode);
	ASSERT_EQ(first | FUSE_UNIQUE_RESEND, ih->unique)
		TH_LOG("unique 0x%llx, first read as 0x%llx",
		       (unsigned long long)ih->unique, (unsigned long long)first);
	ASSERT_EQ(0, strcmp((char *)(ih + 1), "file"));
	/* The reply must echo the whole unique: the old one is unknown. */
	{
		struct fuse_in_header copy = *ih;
		struct fuse_entry_out e = { 0 };

		ASSERT_EQ(-ENOENT, reply(s->fd, first, 0, &e, sizeof(e)));
		ASSERT_EQ(0, answer_lookup(s->fd, &copy));
	}
	st = serve_until_exit(s->fd, s->buf, c);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(0, WEXITSTATUS(st)) TH_LOG("client: %s", strerror(WEXITSTATUS(st)));
}

/*
 * Requests read through a cloned fd are resent as well (every fuse_dev of
 * the connection), and they come back ahead of requests never read.  A
 * kernel without RESEND must refuse it and leave the requests alone: each
 * is then answered through the fd it was read from, unchanged.
 */
TEST_F_TIMEOUT(resend, all_devices_and_order, 30)
{
	struct srv *s = self->s;
	struct fuse_in_header *ih;
	uint64_t u1, u2, u3;
	uint32_t master = s->fd;
	pid_t c1, c2, c3;
	int clone_fd, st;

	clone_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, clone_fd);
	ASSERT_EQ(0, ioctl(clone_fd, FUSE_DEV_IOC_CLONE, &master));

	c1 = client(s->dir, "file");
	ih = next_req(s->fd, s->buf, 2000);
	ASSERT_NE(NULL, ih);
	ASSERT_EQ(FUSE_LOOKUP, ih->opcode);
	u1 = ih->unique;
	/* Other names: a second lookup of "file" would wait for the first. */
	c2 = client(s->dir, "file2");
	ih = next_req(clone_fd, s->buf, 2000);
	ASSERT_NE(NULL, ih);
	ASSERT_EQ(FUSE_LOOKUP, ih->opcode);
	u2 = ih->unique;
	/* c3's LOOKUP stays unread on the pending queue. */
	c3 = client(s->dir, "file3");
	usleep(200000);

	if (!(s->init_flags & FUSE_HAS_RESEND)) {
		struct fuse_in_header h1 = { .unique = u1 }, h2 = { .unique = u2 };

		ASSERT_EQ(-EINVAL, send_resend(s->fd));
		ASSERT_EQ(-EINVAL, send_resend(clone_fd));
		ih = next_req(s->fd, s->buf, 2000);
		ASSERT_NE(NULL, ih);
		EXPECT_EQ(0, ih->unique & FUSE_UNIQUE_RESEND);
		EXPECT_NE(u1, ih->unique);
		EXPECT_NE(u2, ih->unique);
		ASSERT_EQ(0, answer_lookup(s->fd, ih));
		ASSERT_EQ(0, answer_lookup(clone_fd, &h2));
		ASSERT_EQ(0, answer_lookup(s->fd, &h1));
		goto wait;
	}

	ASSERT_EQ(0, send_resend(s->fd));
	/* The two read ones first, oldest first, then the never-read one. */
	ih = next_req(s->fd, s->buf, 2000);
	ASSERT_NE(NULL, ih);
	EXPECT_TRUE(ih->unique == (u1 | FUSE_UNIQUE_RESEND) ||
		    ih->unique == (u2 | FUSE_UNIQUE_RESEND))
		TH_LOG("first after resend: 0x%llx", (unsigned long long)ih->unique);
	ASSERT_EQ(0, answer_lookup(s->fd, ih));
	ih = next_req(s->fd, s->buf, 2000);
	ASSERT_NE(NULL, ih);
	EXPECT_TRUE(ih->unique == (u1 | FUSE_UNIQUE_RESEND) ||
		    ih->unique == (u2 | FUSE_UNIQUE_RESEND))
		TH_LOG("second after resend: 0x%llx", (unsigned long long)ih->unique);
	ASSERT_EQ(0, answer_lookup(s->fd, ih));
	ih = next_req(s->fd, s->buf, 2000);
	ASSERT_NE(NULL, ih);
	u3 = ih->unique;
	EXPECT_EQ(0, u3 & FUSE_UNIQUE_RESEND);
	ASSERT_EQ(0, answer_lookup(s->fd, ih));

wait:
	st = serve_until_exit(s->fd, s->buf, c1);
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	st = serve_until_exit(s->fd, s->buf, c2);
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	st = serve_until_exit(s->fd, s->buf, c3);
	EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(clone_fd);
}

TEST_HARNESS_MAIN
