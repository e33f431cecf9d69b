// SPDX-License-Identifier: GPL-2.0
/*
 * --direct-io: an O_DIRECT open on the mount gets an O_DIRECT host fd, so
 * its data bypasses the host page cache; without the option O_DIRECT is
 * dropped on the host.  The shared directory is on ext4 under /var/tmp
 * (direct I/O there needs 512-byte alignment), or on a tmpfs (Linux 6.6+
 * takes O_DIRECT opens, and needs no alignment).
 *
 * What is checked, in the server's own files:
 *  - /proc/<holdfastd>/fdinfo: the host fd of an O_DIRECT open carries
 *    O_DIRECT (040000) with the option, none does without;
 *  - the host page cache (mincore() of the host file): aligned O_DIRECT
 *    reads and writes through the mount leave it empty with the option,
 *    and fill it without: WRITE payloads land page-aligned over /dev/fuse
 *    and io_uring alike, or they would go the buffered way;
 *  - data: aligned and unaligned (buffer, offset, length) reads and writes
 *    return what was written, both ways and mixed.  Unaligned ones are
 *    served through a second, buffered fd, never EINVAL;
 *  - a SIGKILLed server's successor reopens the handle O_DIRECT again.
 *
 * Variants: "on"/"off" with --passthrough off (holdfastd does the I/O);
 * "on_pt"/"off_pt" with kernel passthrough on: the kernel does the I/O on a
 * backing file it opens with the mount file's own flags, so O_DIRECT on
 * the mount is direct on the host with or without the option, and
 * unaligned I/O fails with EINVAL there, as on ext4 itself.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

#define KiB 1024L
#define MiB (1024L * 1024)

/* Host fds of @path's file in process @pid: how many carry O_DIRECT, how many not (O_PATH fds aside). */
static int host_fds(pid_t pid, const char *path, int *direct, int *buffered)
{
	char dir[64], p[PATH_MAX], line[256];
	struct stat want, st;
	struct dirent *e;
	DIR *d;

	*direct = *buffered = 0;
	if (stat(path, &want) < 0)
		return -1;
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		unsigned long flags = 0;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (stat(p, &st) < 0 || st.st_dev != want.st_dev || st.st_ino != want.st_ino)
			continue;
		snprintf(p, sizeof(p), "/proc/%d/fdinfo/%s", (int)pid, e->d_name);
		f = fopen(p, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "flags: %lo", &flags) == 1)
				break;
		fclose(f);
		if (flags & O_PATH)
			continue;
		if (flags & O_DIRECT)
			(*direct)++;
		else
			(*buffered)++;
	}
	closedir(d);
	return 0;
}

/* Pages of [off, off+len) of the host file @path in the host page cache. */
static long resident(const char *path, off_t off, size_t len)
{
	long page = sysconf(_SC_PAGESIZE), n = 0;
	unsigned char *vec;
	void *map;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, off);
	close(fd);
	if (map == MAP_FAILED)
		return -1;
	vec = calloc(len / page + 1, 1);
	if (vec && mincore(map, len, vec) == 0)
		for (size_t i = 0; i < len / page; i++)
			n += vec[i] & 1;
	else
		n = -1;
	free(vec);
	munmap(map, len);
	return n;
}

/* Drop the host file's clean pages: what stays resident was read since. */
static int drop_cache(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return -1;
	r = fdatasync(fd) || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) ? -1 : 0;
	close(fd);
	return r;
}

static void *aligned_buf(size_t len)
{
	void *p = NULL;

	return posix_memalign(&p, 4096, len) ? NULL : p;
}

FIXTURE(dio) {
	struct hf h;
	char dir[64];		/* the shared directory, on ext4 or a tmpfs */
	char host[PATH_MAX];	/* the test file, seen from the host */
	bool tmpfs;
};

FIXTURE_VARIANT(dio) {
	const char *args;
	bool tmpfs;
	bool direct;	/* O_DIRECT host fds expected */
	bool served;	/* holdfastd does the I/O (no kernel passthrough) */
};

FIXTURE_VARIANT_ADD(dio, on) {
	.args = "--direct-io on --passthrough off", .direct = true, .served = true,
};
FIXTURE_VARIANT_ADD(dio, off) {
	.args = "--direct-io off --passthrough off", .served = true,
};
FIXTURE_VARIANT_ADD(dio, on_pt) {
	.args = "--direct-io on --passthrough on", .direct = true,
};
FIXTURE_VARIANT_ADD(dio, off_pt) {
	.args = "--passthrough on",
};
FIXTURE_VARIANT_ADD(dio, tmpfs_on) {
	.args = "--direct-io on --passthrough off", .tmpfs = true, .direct = true, .served = true,
};

#define FILE_LEN (4 * MiB)

/* The shared directory, and the tmpfs on it: setup's and teardown's to undo. */
static void remove_dir(FIXTURE_DATA(dio) *self)
{
	if (self->tmpfs)
		umount2(self->dir, MNT_DETACH);
	self->tmpfs = false;
	if (self->dir[0])
		hf_rm_rf(self->dir);
	self->dir[0] = 0;
}

/* The test file, FILE_LEN bytes of seed 1, not in the host page cache. */
static int make_source(FIXTURE_DATA(dio) *self, bool tmpfs)
{
	char *buf;
	int r;

	if (tmpfs) {
		if (mount("hf-dio", self->dir, "tmpfs", 0, "size=64m") < 0)
			return -1;
		self->tmpfs = true;
	}
	snprintf(self->host, sizeof(self->host), "%s/f", self->dir);
	buf = aligned_buf(FILE_LEN);
	if (!buf)
		return -1;
	hf_fill(buf, FILE_LEN, 1, 0);
	r = hf_write_file(self->host, buf, FILE_LEN, 0644);
	free(buf);
	return r < 0 ? r : drop_cache(self->host);
}

FIXTURE_SETUP(dio)
{
	/*
	 * HOLDFAST_TRANSPORT=uring: set enable_uring for each server's start
	 * (and put it back after), not once for the run, which another
	 * test's teardown may undo meanwhile.
	 */
	struct hf_opts o = {
		.extra_args = variant->args,
		.transport = getenv("HOLDFAST_TRANSPORT"),
	};
	const char *why;

	/* HF_SETUP's checks, but a failed start must not leave our directory. */
	if (geteuid() != 0)
		SKIP(_exit(255), "holdfastd must run as root (euid %d)", (int)geteuid());
	why = hf_transport_unavailable(&o);
	if (why)
		SKIP(_exit(255), "%s", why);
	snprintf(self->dir, sizeof(self->dir), "/var/tmp/hf-dio.XXXXXX");
	if (!mkdtemp(self->dir)) {
		self->dir[0] = 0;
		ASSERT_TRUE(false) TH_LOG("mkdtemp: %s", strerror(errno));
	}
	o.shared_dir = self->dir;
	if (make_source(self, variant->tmpfs) != 0 ||
	    hf_start(&self->h, &o, _metadata->timeout) != 0) {
		remove_dir(self);
		ASSERT_TRUE(false) TH_LOG("no source or no server: %s", strerror(errno));
	}
}

FIXTURE_TEARDOWN(dio)
{
	HF_TEARDOWN();
	remove_dir(self);
}

static pid_t server(struct __test_metadata *_metadata, const struct hf *h)
{
	pid_t pid = hf_server_child(h);

	return pid > 0 ? pid : h->pid;
}

/* The O_DIRECT open's host fd is O_DIRECT exactly with the option. */
TEST_F(dio, host_fd_flags)
{
	int fd, bfd, direct, buffered;
	char *buf = aligned_buf(4096);

	ASSERT_NE(NULL, buf);
	fd = open(M("f"), O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(4096, pread(fd, buf, 4096, 0));
	ASSERT_EQ(0, host_fds(server(_metadata, &self->h), self->host, &direct, &buffered));
	EXPECT_EQ(variant->direct ? 1 : 0, direct);
	EXPECT_EQ(variant->direct ? 0 : 1, buffered);
	/* A buffered open of the same file stays buffered on the host. */
	bfd = open(M("f"), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, bfd);
	ASSERT_EQ(0, host_fds(server(_metadata, &self->h), self->host, &direct, &buffered));
	EXPECT_EQ(variant->direct ? 1 : 0, direct);
	EXPECT_EQ(variant->direct ? 1 : 2, buffered);
	close(bfd);
	close(fd);
	free(buf);
}

/* Aligned O_DIRECT reads (small, and big enough to be spliced) and writes. */
TEST_F(dio, aligned_data)
{
	const size_t sizes[] = { 4 * KiB, 64 * KiB, 1 * MiB };
	char *buf = aligned_buf(FILE_LEN), *back = aligned_buf(FILE_LEN);
	int fd;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, back);
	fd = open(M("f"), O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	for (size_t i = 0; i < 3; i++)
		for (off_t off = 0; off + (off_t)sizes[i] <= FILE_LEN; off += 3 * sizes[i]) {
			ASSERT_EQ((ssize_t)sizes[i], pread(fd, buf, sizes[i], off));
			ASSERT_EQ(-1, hf_check(buf, sizes[i], 1, off)) TH_LOG("read %zu at %lld", sizes[i], (long long)off);
		}
	hf_fill(buf, 1 * MiB, 2, 512 * KiB);
	ASSERT_EQ((ssize_t)MiB, pwrite(fd, buf, 1 * MiB, 512 * KiB));
	hf_fill(buf, 8 * KiB, 3, 3 * MiB);
	ASSERT_EQ((ssize_t)(8 * KiB), pwrite(fd, buf, 8 * KiB, 3 * MiB));
	ASSERT_EQ((ssize_t)FILE_LEN, pread(fd, back, FILE_LEN, 0));
	EXPECT_EQ(-1, hf_check(back, 512 * KiB, 1, 0));
	EXPECT_EQ(-1, hf_check(back + 512 * KiB, 1 * MiB, 2, 512 * KiB));
	EXPECT_EQ(-1, hf_check(back + 3 * MiB, 8 * KiB, 3, 3 * MiB));
	EXPECT_EQ(-1, hf_check(back + 3 * MiB + 8 * KiB, 1 * MiB - 8 * KiB, 1, 3 * MiB + 8 * KiB));
	/* The host file has it too. */
	ASSERT_EQ((ssize_t)FILE_LEN, hf_read_file(self->host, back, FILE_LEN));
	EXPECT_EQ(-1, hf_check(back + 512 * KiB, 1 * MiB, 2, 512 * KiB));
	/* A read across the end: short, as ever. */
	ASSERT_EQ((ssize_t)(64 * KiB), pread(fd, buf, 1 * MiB, FILE_LEN - 64 * KiB));
	EXPECT_EQ(-1, hf_check(buf, 64 * KiB, 1, FILE_LEN - 64 * KiB));
	close(fd);
	free(buf);
	free(back);
}

/*
 * Unaligned buffers, offsets and lengths.  Served by holdfastd: they
 * work, mixed with aligned ones on the same file.  Passed through on ext4:
 * EINVAL from the host file system, with or without --direct-io.
 */
TEST_F(dio, unaligned_data)
{
	char *buf = aligned_buf(2 * MiB), *back = aligned_buf(2 * MiB);
	const bool works = variant->served || self->tmpfs;
	int fd;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, back);
	fd = open(M("f"), O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	if (!works) {
		errno = 0;
		EXPECT_EQ(-1, pread(fd, buf + 3, 1000, 100));
		EXPECT_EQ(EINVAL, errno);
		goto out;
	}
	/* Odd buffer, offset and length. */
	ASSERT_EQ(1000, pread(fd, buf + 3, 1000, 100));
	EXPECT_EQ(-1, hf_check(buf + 3, 1000, 1, 100));
	/* Aligned buffer and offset, odd length; and an odd offset. */
	ASSERT_EQ(4097, pread(fd, buf, 4097, 8192));
	EXPECT_EQ(-1, hf_check(buf, 4097, 1, 8192));
	ASSERT_EQ((ssize_t)MiB, pread(fd, buf, 1 * MiB, 4096 + 1));
	EXPECT_EQ(-1, hf_check(buf, 1 * MiB, 1, 4096 + 1));
	/* Unaligned writes, then aligned reads of them (direct after buffered). */
	hf_fill(buf + 5, 3000, 4, 700);
	ASSERT_EQ(3000, pwrite(fd, buf + 5, 3000, 700));
	hf_fill(buf, 1 * MiB + 1, 5, 2 * MiB + 511);
	ASSERT_EQ((ssize_t)MiB + 1, pwrite(fd, buf, 1 * MiB + 1, 2 * MiB + 511));
	ASSERT_EQ((ssize_t)(4 * KiB), pread(fd, back, 4 * KiB, 0));
	EXPECT_EQ(-1, hf_check(back, 700, 1, 0));
	EXPECT_EQ(-1, hf_check(back + 700, 3000, 4, 700));
	EXPECT_EQ(-1, hf_check(back + 3700, 4096 - 3700, 1, 3700));
	ASSERT_EQ((ssize_t)(2 * MiB), pread(fd, back, 2 * MiB, 2 * MiB));
	EXPECT_EQ(-1, hf_check(back, 511, 1, 2 * MiB));
	EXPECT_EQ(-1, hf_check(back + 511, 1 * MiB + 1, 5, 2 * MiB + 511));
	EXPECT_EQ(-1, hf_check(back + 1 * MiB + 512, 1 * MiB - 512, 1, 3 * MiB + 512));
	/* An aligned write, then an unaligned read of it (buffered after direct). */
	hf_fill(buf, 64 * KiB, 6, 1 * MiB);
	ASSERT_EQ((ssize_t)(64 * KiB), pwrite(fd, buf, 64 * KiB, 1 * MiB));
	ASSERT_EQ(999, pread(fd, back + 1, 999, 1 * MiB + 77));
	EXPECT_EQ(-1, hf_check(back + 1, 999, 6, 1 * MiB + 77));
	/* Growing the file by an odd length, and reading past its new end. */
	hf_fill(buf, 100, 7, FILE_LEN);
	ASSERT_EQ(100, pwrite(fd, buf, 100, FILE_LEN));
	ASSERT_EQ(100, pread(fd, back, 4096, FILE_LEN));
	EXPECT_EQ(-1, hf_check(back, 100, 7, FILE_LEN));
out:
	close(fd);
	free(buf);
	free(back);
}

/* Aligned O_DIRECT I/O leaves the host page cache empty with the option. */
TEST_F(dio, host_page_cache)
{
	char *buf = aligned_buf(1 * MiB);
	/* The kernel's passthrough backing file carries the mount file's O_DIRECT. */
	const bool bypass = variant->direct || !variant->served;
	long n;
	int fd;

	if (self->tmpfs) {
		/* All of a tmpfs is page cache: there is nothing to bypass. */
		EXPECT_EQ(FILE_LEN / 4096, resident(self->host, 0, FILE_LEN));
		return;
	}
	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, resident(self->host, 0, FILE_LEN)) TH_LOG("drop_cache() did not");
	fd = open(M("f"), O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	for (off_t off = 0; off < 2 * MiB; off += MiB) {
		ASSERT_EQ((ssize_t)MiB, pread(fd, buf, MiB, off));
		ASSERT_EQ(-1, hf_check(buf, MiB, 1, off));
	}
	n = resident(self->host, 0, 2 * MiB);
	if (bypass) {
		EXPECT_EQ(0, n);
	} else {
		EXPECT_LE(2 * MiB / 4096 / 2, n);
	}
	/* Writes: the payload must be aligned in the server's buffer too. */
	for (off_t off = 2 * MiB; off < FILE_LEN; off += 64 * KiB) {
		hf_fill(buf, 64 * KiB, 8, off);
		ASSERT_EQ((ssize_t)(64 * KiB), pwrite(fd, buf, 64 * KiB, off));
	}
	ASSERT_EQ(0, fdatasync(fd));
	n = resident(self->host, 2 * MiB, 2 * MiB);
	if (bypass) {
		EXPECT_EQ(0, n);
	} else {
		EXPECT_LE(2 * MiB / 4096 / 2, n);
	}
	ASSERT_EQ((ssize_t)MiB, pread(fd, buf, MiB, 3 * MiB));
	EXPECT_EQ(-1, hf_check(buf, MiB, 8, 3 * MiB));
	close(fd);
	free(buf);
}

/* A SIGKILLed server's successor opens the handle O_DIRECT again. */
TEST_F_TIMEOUT(dio, survives_a_crash, 120)
{
	char *buf = aligned_buf(1 * MiB);
	int fd, direct, buffered;
	pid_t pid;

	ASSERT_NE(NULL, buf);
	fd = open(M("f"), O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	hf_fill(buf, 64 * KiB, 9, 0);
	ASSERT_EQ((ssize_t)(64 * KiB), pwrite(fd, buf, 64 * KiB, 0));
	pid = hf_kill_server(&self->h, 20000);
	ASSERT_LT(0, pid);
	/* The successor serves the same open file. */
	ASSERT_EQ((ssize_t)(64 * KiB), pread(fd, buf, 64 * KiB, 0));
	EXPECT_EQ(-1, hf_check(buf, 64 * KiB, 9, 0));
	hf_fill(buf, 1 * MiB, 10, 1 * MiB);
	ASSERT_EQ((ssize_t)MiB, pwrite(fd, buf, 1 * MiB, 1 * MiB));
	if (variant->served || self->tmpfs) {
		hf_fill(buf + 1, 5000, 11, 123);
		ASSERT_EQ(5000, pwrite(fd, buf + 1, 5000, 123));
		ASSERT_EQ(5000, pread(fd, buf + 7, 5000, 123));
		EXPECT_EQ(-1, hf_check(buf + 7, 5000, 11, 123));
	}
	ASSERT_EQ((ssize_t)MiB, pread(fd, buf, 1 * MiB, 1 * MiB));
	EXPECT_EQ(-1, hf_check(buf, 1 * MiB, 10, 1 * MiB));
	if (variant->served) {
		/* The kernel passes I/O through without the handle: only a served one is reopened. */
		ASSERT_EQ(0, host_fds(pid, self->host, &direct, &buffered));
		EXPECT_EQ(variant->direct ? 1 : 0, direct);
	}
	if (variant->served && !self->tmpfs) {
		ASSERT_EQ(0, drop_cache(self->host));
		ASSERT_EQ((ssize_t)MiB, pread(fd, buf, 1 * MiB, 2 * MiB));
		EXPECT_EQ(-1, hf_check(buf, 1 * MiB, 1, 2 * MiB));
		if (variant->direct) {
			EXPECT_EQ(0, resident(self->host, 2 * MiB, 1 * MiB));
		} else {
			EXPECT_LT(0, resident(self->host, 2 * MiB, 1 * MiB));
		}
	}
	close(fd);
	free(buf);
}

TEST_HARNESS_MAIN
