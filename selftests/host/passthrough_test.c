// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel FUSE passthrough (FUSE_PASSTHROUGH, Linux 6.9+): regular files'
 * reads, writes and mmap go from the kernel to holdfastd's host file
 * without a request.  "Without a request" is what these tests prove: the
 * server's READ and WRITE counters stay 0 while the data is checked on
 * both sides of the mount.
 *
 *  pt:       passthrough on (the default), over /dev/fuse and over
 *            FUSE-over-io_uring: data both ways, mmap, truncate and append,
 *            two opens of one inode sharing its backing id, set-user-ID
 *            cleared by an unprivileged writer, and a SIGKILL
 *            of the server while a writer streams (the kernel keeps
 *            writing; the successor knows the ids and closes them).
 *  pt_off:   --passthrough off, the writeback cache (which the kernel
 *            does not allow with passthrough), and io_uring without
 *            --passthrough on (off by default there): the server does the
 *            I/O.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

#define MiB (1024LL * 1024)

/* A count in the status's "requests" object; absent means 0. */
static double requests(const struct hf *h, const char *op)
{
	static char doc[65536];
	char needle[64];
	const char *p;

	if (!hf_status(h, doc, sizeof(doc)))
		return -1;
	p = strstr(doc, "\"requests\":{");
	if (!p)
		return -1;
	snprintf(needle, sizeof(needle), "\"%s\":", op);
	/* Only inside the requests object (errors has the same keys). */
	{
		const char *end = strchr(p, '}');
		const char *q = strstr(p, needle);

		if (!q || (end && q > end))
			return 0;
		return strtod(q + strlen(needle), NULL);
	}
}

static bool pt_active(const struct hf *h)
{
	static char doc[65536];

	return hf_status(h, doc, sizeof(doc)) &&
	       strstr(doc, "\"passthrough\":{\"active\":true") != NULL;
}

/* Write @len pattern bytes at @off through @fd. */
static int put(int fd, unsigned int seed, off_t off, size_t len)
{
	static char buf[1 << 20];
	size_t done = 0;

	while (done < len) {
		size_t n = len - done < sizeof(buf) ? len - done : sizeof(buf);

		hf_fill(buf, n, seed, off + done);
		if (pwrite(fd, buf, n, off + done) != (ssize_t)n)
			return -1;
		done += n;
	}
	return 0;
}

/* Offset of the first wrong byte of @path in [@off, @off + @len), or -1. */
static ssize_t verify(const char *path, unsigned int seed, off_t off, size_t len)
{
	static char buf[1 << 20];
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -2;
	while (done < len) {
		size_t n = len - done < sizeof(buf) ? len - done : sizeof(buf);
		ssize_t bad;

		if (pread(fd, buf, n, off + done) != (ssize_t)n) {
			close(fd);
			return off + done;
		}
		bad = hf_check(buf, n, seed, off + done);
		if (bad >= 0) {
			close(fd);
			return off + done + bad;
		}
		done += n;
	}
	close(fd);
	return -1;
}

FIXTURE(pt) {
	struct hf h;
};

FIXTURE_VARIANT(pt) {
	struct hf_opts o;
};

FIXTURE_VARIANT_ADD(pt, dev) {
	.o = { .transport = "dev" },
};

/* On by default over the ring as well. */
FIXTURE_VARIANT_ADD(pt, uring) {
	.o = { .transport = "uring" },
};

FIXTURE_SETUP(pt)
{
	HF_SETUP(&variant->o);
	ASSERT_TRUE(pt_active(&self->h))
		TH_LOG("passthrough not negotiated; this kernel (6.9+) should offer it");
}

FIXTURE_TEARDOWN(pt)
{
	HF_TEARDOWN();
}

TEST_F_TIMEOUT(pt, data_both_ways_without_read_or_write, 120)
{
	const size_t len = 32 * MiB;
	int fd;

	fd = open(M("big"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	/* Open: the inode has a registered backing file. */
	EXPECT_EQ(1, (int)hf_status_num(&self->h, "backing_inodes"));
	ASSERT_EQ(0, put(fd, 1, 0, len));
	ASSERT_EQ(0, fsync(fd));
	ASSERT_EQ(0, close(fd));
	EXPECT_EQ(-1, verify(S("big"), 1, 0, len));
	EXPECT_EQ(-1, verify(M("big"), 1, 0, len));

	/* Written on the host, read through the mount (no page cache of ours). */
	fd = open(S("host"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, put(fd, 2, 0, 4 * MiB));
	ASSERT_EQ(0, close(fd));
	EXPECT_EQ(-1, verify(M("host"), 2, 0, 4 * MiB));

	EXPECT_EQ(0, (int)requests(&self->h, "READ"));
	EXPECT_EQ(0, (int)requests(&self->h, "WRITE"));
	/*
	 * HANDLE_KILLPRIV_V2 lets the kernel skip the security.capability
	 * lookup per write (passthrough_hp pays one GETXATTR each); without
	 * --xattr the one it makes gets ENOSYS and it never asks again.
	 */
	EXPECT_GE(1, (int)requests(&self->h, "GETXATTR"));
	/* Every file closed: every backing id unregistered. */
	EXPECT_EQ(0, (int)hf_status_num(&self->h, "backing_inodes"));
	EXPECT_LE(3, (int)hf_status_num(&self->h, "opens"));
}

TEST_F(pt, mmap_shared_both_ways)
{
	const size_t len = 1 * MiB;
	char *map;
	int fd;

	fd = open(M("m"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, len));
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, map);
	hf_fill(map, len, 3, 0);
	ASSERT_EQ(0, msync(map, len, MS_SYNC));
	EXPECT_EQ(-1, verify(S("m"), 3, 0, len));
	/* The host file and the mapping are one page cache: a host write shows. */
	{
		int hfd = open(S("m"), O_WRONLY | O_CLOEXEC);
		char b[4096];

		ASSERT_LE(0, hfd);
		hf_fill(b, sizeof(b), 4, 8192);
		ASSERT_EQ((ssize_t)sizeof(b), pwrite(hfd, b, sizeof(b), 8192));
		close(hfd);
		EXPECT_EQ(-1, hf_check(map + 8192, sizeof(b), 4, 8192));
	}
	ASSERT_EQ(0, munmap(map, len));
	ASSERT_EQ(0, close(fd));
	EXPECT_EQ(0, (int)requests(&self->h, "READ"));
	EXPECT_EQ(0, (int)requests(&self->h, "WRITE"));
}

TEST_F(pt, truncate_and_append)
{
	struct stat st;
	char buf[64];
	int fd;

	fd = open(M("a"), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(5, write(fd, "hello", 5));
	ASSERT_EQ(6, write(fd, " world", 6));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(11, st.st_size);
	ASSERT_EQ(0, ftruncate(fd, 5));
	/* O_APPEND after a truncate lands at the new end. */
	ASSERT_EQ(1, write(fd, "!", 1));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(6, hf_read_file(S("a"), buf, sizeof(buf)));
	EXPECT_EQ(0, memcmp(buf, "hello!", 6));
	ASSERT_EQ(0, stat(M("a"), &st));
	EXPECT_EQ(6, st.st_size);
	/* truncate(2) by path, and O_TRUNC, through the mount. */
	ASSERT_EQ(0, truncate(M("a"), 2));
	ASSERT_EQ(2, hf_read_file(M("a"), buf, sizeof(buf)));
	EXPECT_EQ(0, memcmp(buf, "he", 2));
	fd = open(M("a"), O_WRONLY | O_TRUNC | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, stat(S("a"), &st));
	EXPECT_EQ(0, st.st_size);
	EXPECT_EQ(0, (int)requests(&self->h, "READ"));
	EXPECT_EQ(0, (int)requests(&self->h, "WRITE"));
}

TEST_F(pt, opens_of_one_inode_share_a_backing_id)
{
	char buf[8];
	int r, w;

	/* The kernel refuses a second backing file for an open inode. */
	w = open(M("s"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	ASSERT_LE(0, w);
	r = open(M("s"), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, r) TH_LOG("second open: %s", strerror(errno));
	EXPECT_EQ(1, (int)hf_status_num(&self->h, "backing_inodes"));
	ASSERT_EQ(4, pwrite(w, "abcd", 4, 0));
	ASSERT_EQ(4, pread(r, buf, sizeof(buf), 0));
	EXPECT_EQ(0, memcmp(buf, "abcd", 4));
	ASSERT_EQ(0, close(w));
	/* One open left: the id stays. */
	EXPECT_EQ(1, (int)hf_status_num(&self->h, "backing_inodes"));
	ASSERT_EQ(0, close(r));
	EXPECT_EQ(0, (int)hf_status_num(&self->h, "backing_inodes"));
}

static int append_x(void *arg)
{
	int fd = open((const char *)arg, O_WRONLY | O_APPEND | O_CLOEXEC);

	if (fd < 0)
		return 1;
	if (write(fd, "x", 1) != 1)
		return 2;
	return close(fd) ? 3 : 0;
}

/*
 * No WRITE tells the server that a writer who would lose set-user-ID wrote;
 * the backing file is registered without CAP_FSETID, so the host kernel
 * clears the bits on the kernel's write itself.
 */
TEST_F(pt, unprivileged_write_clears_suid_sgid)
{
	char path[PATH_MAX];
	struct stat st;

	ASSERT_EQ(0, hf_write_file(M("suid"), "hi\n", 3, 0644));
	ASSERT_EQ(0, chmod(M("suid"), 06777));
	ASSERT_EQ(0, stat(S("suid"), &st));
	ASSERT_EQ(06777, (int)(st.st_mode & 07777));
	snprintf(path, sizeof(path), "%s", M("suid"));
	ASSERT_EQ(0, hf_run_child(HF_NOBODY, HF_NOBODY, append_x, path, 10000));
	ASSERT_EQ(0, stat(S("suid"), &st));
	EXPECT_EQ(0777, (int)(st.st_mode & 07777));
	EXPECT_EQ(4, (int)st.st_size);
	EXPECT_EQ(0, (int)requests(&self->h, "WRITE"));
}

/*
 * SIGKILL the server while a child streams 48 MiB through a passthrough fd
 * opened before the kill.  The kernel writes on without any server; the
 * successor finds the backing id in the handle record, gives a new open of
 * the same inode that very id (a new one would be refused while the old
 * file is open), and unregisters it at the last RELEASE.
 */
TEST_F_TIMEOUT(pt, survives_sigkill_mid_stream, 120)
{
	const size_t chunk = 1 * MiB, total = 48 * MiB;
	int pipefd[2], fd, status;
	pid_t child, succ;
	char c;

	fd = open(M("stream"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, pipe(pipefd));
	{
		int keep[2] = { fd, pipefd[1] };

		child = hf_fork_child(keep, 2);
	}
	if (child == 0) {
		/* fd is 3, the pipe 4. */
		for (size_t off = 0; off < total; off += chunk) {
			if (put(3, 5, off, chunk))
				_exit(1);
			if (off == 8 * MiB && write(4, "x", 1) != 1)
				_exit(2);
			/* Paced, so the kill lands while we write. */
			if (off >= 8 * MiB)
				usleep(5000);
		}
		_exit(fsync(3) ? 3 : 0);
	}
	ASSERT_LT(0, child);
	close(pipefd[1]);
	ASSERT_EQ(1, read(pipefd[0], &c, 1));
	close(pipefd[0]);

	succ = hf_kill_server(&self->h, 20000);
	ASSERT_LT(0, succ) TH_LOG("no successor serving");
	status = hf_wait(child, 60000);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
		TH_LOG("writer: status %#x", status);
	EXPECT_EQ(-1, verify(S("stream"), 5, 0, total));

	/* The successor knows the id; a second open shares it. */
	ASSERT_TRUE(pt_active(&self->h));
	EXPECT_EQ(1, (int)hf_status_num(&self->h, "backing_inodes"));
	{
		int r = open(M("stream"), O_RDONLY | O_CLOEXEC);
		char b[4096];

		ASSERT_LE(0, r) TH_LOG("open after the crash: %s", strerror(errno));
		ASSERT_EQ((ssize_t)sizeof(b), pread(r, b, sizeof(b), 40 * MiB));
		EXPECT_EQ(-1, hf_check(b, sizeof(b), 5, 40 * MiB));
		ASSERT_EQ(0, close(r));
	}
	EXPECT_EQ(1, (int)hf_status_num(&self->h, "backing_inodes"));
	ASSERT_EQ(0, close(fd));
	EXPECT_EQ(0, (int)hf_status_num(&self->h, "backing_inodes"));
	EXPECT_EQ(-1, verify(M("stream"), 5, 0, total));
	EXPECT_EQ(0, (int)requests(&self->h, "READ"));
	EXPECT_EQ(0, (int)requests(&self->h, "WRITE"));
	EXPECT_EQ(1, (int)hf_status_num(&self->h, "restarts"));
}

FIXTURE(pt_off) {
	struct hf h;
};

FIXTURE_VARIANT(pt_off) {
	struct hf_opts o;
	const char *why; /* in the log, for the writeback case */
};

FIXTURE_VARIANT_ADD(pt_off, option_off) {
	.o = { .extra_args = "--passthrough off" },
	.why = NULL,
};

FIXTURE_VARIANT_ADD(pt_off, writeback) {
	.o = { .cache = "always", .writeback = true },
	.why = "not allow it with the writeback cache",
};

FIXTURE_VARIANT_ADD(pt_off, uring_option_off) {
	.o = { .transport = "uring", .extra_args = "--passthrough off" },
	.why = NULL,
};

FIXTURE_SETUP(pt_off)
{
	HF_SETUP(&variant->o);
}

FIXTURE_TEARDOWN(pt_off)
{
	HF_TEARDOWN();
}

TEST_F(pt_off, server_does_the_io)
{
	const size_t len = 4 * MiB;
	char *map;
	int fd;

	EXPECT_FALSE(pt_active(&self->h));
	if (variant->why)
		EXPECT_LT(0, hf_log_count(&self->h, variant->why));
	fd = open(M("f"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, put(fd, 6, 0, len));
	ASSERT_EQ(0, fsync(fd));
	map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, map);
	EXPECT_EQ(-1, hf_check(map, len, 6, 0));
	ASSERT_EQ(0, munmap(map, len));
	ASSERT_EQ(0, close(fd));
	EXPECT_EQ(-1, verify(S("f"), 6, 0, len));
	/* Drop our page cache so the read below reaches the server. */
	fd = open(M("f"), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED));
	ASSERT_EQ(0, close(fd));
	EXPECT_EQ(-1, verify(M("f"), 6, 0, len));
	EXPECT_LT(0, (int)requests(&self->h, "WRITE"));
	EXPECT_LT(0, (int)requests(&self->h, "READ"));
	EXPECT_EQ(0, (int)hf_status_num(&self->h, "opens"));
}

TEST_HARNESS_MAIN
