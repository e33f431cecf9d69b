// SPDX-License-Identifier: GPL-2.0
/*
 * File data through holdfastd: READ/WRITE, FLUSH/RELEASE, FSYNC, sparse and
 * large offsets, O_APPEND, O_DIRECT, shared mmap, concurrent writers,
 * FALLOCATE, LSEEK (SEEK_DATA/SEEK_HOLE), COPY_FILE_RANGE and syncfs.
 *
 * Data is position-dependent (hf_fill), so a byte landing at the wrong
 * offset is caught, and the host file is always read back directly: the
 * kernel's page cache on the mount side can not paper over a server bug.
 * Each test runs in the three cache modes because the kernel sends very
 * different request streams in each (writeback turns writes into page
 * flushes and appends into plain writes at an offset).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

#define KiB (1024LL)
#define MiB (1024LL * KiB)
#define GiB (1024LL * MiB)

FIXTURE(data) {
	struct hf h;
};

HF_CACHE_VARIANTS(data);

FIXTURE_SETUP(data)
{
	HF_SETUP(&variant->o);
}

FIXTURE_TEARDOWN(data)
{
	HF_TEARDOWN();
}

/* Read @len bytes of @path at @off, straight from the host file. */
static ssize_t host_pread(const char *path, void *buf, size_t len, off_t off)
{
	ssize_t n, got = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while ((size_t)got < len) {
		n = pread(fd, (char *)buf + got, len - got, off + got);
		if (n <= 0)
			break;
		got += n;
	}
	close(fd);
	return got;
}

static bool all_zero(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

TEST_F(data, read_write)
{
	const size_t len = MiB + 123;
	char *buf = malloc(len), *back = malloc(len);
	size_t off;
	ssize_t n;
	int fd;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, back);

	/* Host-written data read through the mount in odd-sized pieces. */
	hf_fill(buf, len, 1, 0);
	ASSERT_EQ(0, hf_write_file(S("h"), buf, len, 0644));
	fd = open(M("h"), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	for (off = 0; off < len; off += n) {
		n = read(fd, back + off, 4097);
		ASSERT_LT(0, n) TH_LOG("read at %zu: %m", off);
	}
	EXPECT_EQ(0, read(fd, back, 10));	/* EOF */
	EXPECT_EQ(-1, hf_check(back, len, 1, 0));
	ASSERT_EQ(100, pread(fd, back, 100, 777777));
	EXPECT_EQ(-1, hf_check(back, 100, 1, 777777));
	EXPECT_EQ(0, pread(fd, back, 100, len + 10));
	close(fd);

	/* Written through the mount at unaligned offsets, out of order. */
	hf_fill(buf, len, 2, 0);
	fd = open(M("w"), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(70001, pwrite(fd, buf + 1000, 70001, 1000));
	ASSERT_EQ(1000, pwrite(fd, buf, 1000, 0));
	ASSERT_EQ((ssize_t)(len - 71001), pwrite(fd, buf + 71001, len - 71001, 71001));
	/* The writer reads its own data back before anything is flushed. */
	ASSERT_EQ((ssize_t)len, pread(fd, back, len, 0));
	EXPECT_EQ(-1, hf_check(back, len, 2, 0));
	ASSERT_EQ(0, close(fd));

	memset(back, 0, len);
	ASSERT_EQ((ssize_t)len, hf_read_file(S("w"), back, len));
	EXPECT_EQ(-1, hf_check(back, len, 2, 0));
	free(buf);
	free(back);
}

TEST_F(data, partial_write_wronly)
{
	char buf[8192], back[8192], patch[10];
	int fd;

	/*
	 * A write into the middle of a page of an existing file, through an
	 * O_WRONLY fd.  With the writeback cache the kernel first READs the
	 * page through that very handle; a server that opened the host file
	 * O_WRONLY fails that read and the write is lost or corrupts data.
	 */
	hf_fill(buf, sizeof(buf), 17, 0);
	ASSERT_EQ(0, hf_write_file(S("p"), buf, sizeof(buf), 0644));
	fd = open(M("p"), O_WRONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	memset(patch, '#', sizeof(patch));
	ASSERT_EQ(10, pwrite(fd, patch, 10, 100)) TH_LOG("pwrite: %m");
	ASSERT_EQ(10, pwrite(fd, patch, 10, 5000));
	ASSERT_EQ(0, close(fd)) TH_LOG("close: %m");

	memcpy(buf + 100, patch, 10);
	memcpy(buf + 5000, patch, 10);
	ASSERT_EQ((ssize_t)sizeof(back), hf_read_file(S("p"), back, sizeof(back)));
	EXPECT_EQ(0, memcmp(buf, back, sizeof(buf)));
	ASSERT_EQ((ssize_t)sizeof(back), hf_read_file(M("p"), back, sizeof(back)));
	EXPECT_EQ(0, memcmp(buf, back, sizeof(buf)));
}

TEST_F(data, fsync_fdatasync)
{
	char buf[64 * 1024], back[64 * 1024];
	int fd;

	fd = open(M("f"), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);

	/* After fsync the host has the data even though the fd is open. */
	hf_fill(buf, sizeof(buf), 3, 0);
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(fd, buf, sizeof(buf), 0));
	ASSERT_EQ(0, fsync(fd));
	ASSERT_EQ((ssize_t)sizeof(buf), host_pread(S("f"), back, sizeof(back), 0));
	EXPECT_EQ(-1, hf_check(back, sizeof(back), 3, 0));

	hf_fill(buf, sizeof(buf), 4, sizeof(buf));
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(fd, buf, sizeof(buf), sizeof(buf)));
	ASSERT_EQ(0, fdatasync(fd));
	ASSERT_EQ((ssize_t)sizeof(buf), host_pread(S("f"), back, sizeof(back), sizeof(buf)));
	EXPECT_EQ(-1, hf_check(back, sizeof(back), 4, sizeof(buf)));
	ASSERT_EQ(0, close(fd));
}

TEST_F(data, close_flushes)
{
	char buf[200 * 1024], back[200 * 1024];
	int fd, fd2;

	hf_fill(buf, sizeof(buf), 5, 0);
	fd = open(M("f"), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	fd2 = dup(fd);
	ASSERT_LE(0, fd2);
	ASSERT_EQ((ssize_t)sizeof(buf), write(fd, buf, sizeof(buf)));
	/* Closing a dup is a FLUSH without RELEASE; it must not lose data. */
	ASSERT_EQ(0, close(fd2));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ((ssize_t)sizeof(buf), hf_read_file(S("f"), back, sizeof(back)));
	EXPECT_EQ(-1, hf_check(back, sizeof(back), 5, 0));
}

TEST_F(data, sparse_4g)
{
	const off_t far = 4 * GiB, very_far = 1024 * GiB + 1;
	char buf[4096], back[4096];
	struct stat st;
	int fd;

	hf_fill(buf, sizeof(buf), 6, far);
	fd = open(M("sparse"), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(4096, pwrite(fd, buf, 4096, far));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(far + 4096, st.st_size);
	ASSERT_EQ(0, fsync(fd));

	ASSERT_EQ(0, stat(S("sparse"), &st));
	EXPECT_EQ(far + 4096, st.st_size);
	/* Sparse on the host: only the written block (plus metadata). */
	EXPECT_GE(64 * KiB, st.st_blocks * 512) TH_LOG("host blocks %lld", (long long)st.st_blocks);
	EXPECT_LT(0, st.st_blocks);
	ASSERT_EQ(4096, host_pread(S("sparse"), back, 4096, far));
	EXPECT_EQ(-1, hf_check(back, 4096, 6, far));

	/* The hole reads as zeros through the mount. */
	memset(back, 0xff, sizeof(back));
	ASSERT_EQ(4096, pread(fd, back, 4096, 2 * GiB));
	EXPECT_TRUE(all_zero(back, 4096));
	ASSERT_EQ(4096, pread(fd, back, 4096, far));
	EXPECT_EQ(-1, hf_check(back, 4096, 6, far));

	/* Beyond 2^40, unaligned: offsets must be 64-bit all the way. */
	hf_fill(buf, 100, 7, very_far);
	ASSERT_EQ(100, pwrite(fd, buf, 100, very_far));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, stat(S("sparse"), &st));
	EXPECT_EQ(very_far + 100, st.st_size);
	ASSERT_EQ(100, host_pread(S("sparse"), back, 100, very_far));
	EXPECT_EQ(-1, hf_check(back, 100, 7, very_far));
}

TEST_F(data, append_two_fds)
{
	char rec[16], back[4096], want[4096];
	size_t wlen;
	int fa, fb, i;

	ASSERT_EQ(0, hf_write_file(S("log"), "HEAD\n", 5, 0644));
	fa = open(M("log"), O_WRONLY | O_APPEND | O_CLOEXEC);
	ASSERT_LE(0, fa);
	fb = open(M("log"), O_WRONLY | O_APPEND | O_CLOEXEC);
	ASSERT_LE(0, fb);

	/*
	 * Alternate between the two handles: each write must land at the
	 * current end, whoever wrote last.  A server that tracks its own
	 * offset per handle, or a kernel that appends at a stale size,
	 * overwrites records.
	 */
	memcpy(want, "HEAD\n", 5);
	wlen = 5;
	for (i = 0; i < 200; i++) {
		int fd = (i & 1) ? fb : fa;

		snprintf(rec, sizeof(rec), "%c%04d\n", (i & 1) ? 'B' : 'A', i);
		ASSERT_EQ(6, write(fd, rec, 6));
		memcpy(want + wlen, rec, 6);
		wlen += 6;
	}
	ASSERT_EQ(0, close(fa));
	ASSERT_EQ(0, close(fb));

	ASSERT_EQ((ssize_t)wlen, hf_read_file(S("log"), back, sizeof(back)));
	EXPECT_EQ(0, memcmp(want, back, wlen));
	ASSERT_EQ((ssize_t)wlen, hf_read_file(M("log"), back, sizeof(back)));
	EXPECT_EQ(0, memcmp(want, back, wlen));
}

TEST_F(data, direct_io)
{
	const size_t len = 256 * KiB;
	char *buf, *back;
	struct stat st;
	int fd;

	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, len));
	ASSERT_EQ(0, posix_memalign((void **)&back, 4096, len));

	fd = open(M("d"), O_CREAT | O_RDWR | O_DIRECT | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd) TH_LOG("open O_DIRECT: %m");
	hf_fill(buf, len, 8, 0);
	ASSERT_EQ((ssize_t)len, pwrite(fd, buf, len, 0)) TH_LOG("O_DIRECT pwrite: %m");
	hf_fill(buf, 64 * KiB, 8, MiB);
	ASSERT_EQ(64 * KiB, pwrite(fd, buf, 64 * KiB, MiB));

	ASSERT_EQ((ssize_t)len, pread(fd, back, len, 0));
	EXPECT_EQ(-1, hf_check(back, len, 8, 0));
	ASSERT_EQ(64 * KiB, pread(fd, back, 64 * KiB, MiB));
	EXPECT_EQ(-1, hf_check(back, 64 * KiB, 8, MiB));

	/* Direct writes are on the host without fsync or close. */
	ASSERT_EQ(0, stat(S("d"), &st));
	EXPECT_EQ(MiB + 64 * KiB, st.st_size);
	ASSERT_EQ((ssize_t)len, host_pread(S("d"), back, len, 0));
	EXPECT_EQ(-1, hf_check(back, len, 8, 0));

	/* And direct reads see what the host wrote meanwhile. */
	hf_fill(buf, 4096, 9, 8192);
	{
		int hfd = open(S("d"), O_WRONLY | O_CLOEXEC);

		ASSERT_LE(0, hfd);
		ASSERT_EQ(4096, pwrite(hfd, buf, 4096, 8192));
		close(hfd);
	}
	ASSERT_EQ(4096, pread(fd, back, 4096, 8192));
	EXPECT_EQ(-1, hf_check(back, 4096, 9, 8192));
	ASSERT_EQ(0, close(fd));
	free(buf);
	free(back);
}

/*
 * Big READs over /dev/fuse are spliced from the backing file, the header
 * written only once the data is in a pipe: a READ that ends at EOF, a
 * file that is exactly the splice threshold, and one the host cut short
 * after it was opened must all come back with the right length and bytes.
 */
TEST_F(data, big_reads_at_eof)
{
	static const size_t sizes[] = { 64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 200 * KiB + 123,
					1 * MiB + 4097 };
	const size_t chunk = 512 * KiB;
	char *buf, *back;
	unsigned int i;

	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, 2 * MiB));
	ASSERT_EQ(0, posix_memalign((void **)&back, 4096, 2 * MiB));
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = sizes[i], got = 0;
		ssize_t n;
		int fd;

		hf_fill(buf, len, 20 + i, 0);
		ASSERT_EQ(0, hf_write_file(S("eof%u", i), buf, len, 0644));
		/* O_DIRECT: every read is a READ of `chunk` bytes at the server. */
		fd = open(M("eof%u", i), O_RDONLY | O_DIRECT | O_CLOEXEC);
		ASSERT_LE(0, fd) TH_LOG("open: %m");
		while ((n = pread(fd, back + got, chunk, got)) > 0)
			got += n;
		ASSERT_EQ(0, n) TH_LOG("size %zu: pread: %m", len);
		EXPECT_EQ(len, got) TH_LOG("size %zu: read %zu", len, got);
		EXPECT_EQ(-1, hf_check(back, len, 20 + i, 0)) TH_LOG("size %zu", len);
		/*
		 * Cut short on the host behind the open file.  (With the
		 * writeback cache the kernel owns the size and reads up to
		 * the one it knows: nothing to check there.)
		 */
		if (!variant->o.writeback) {
			ASSERT_EQ(0, truncate(S("eof%u", i), len / 2));
			n = pread(fd, back, chunk, 0);
			EXPECT_EQ((ssize_t)(len / 2 < chunk ? len / 2 : chunk), n)
				TH_LOG("size %zu", len);
			EXPECT_EQ(-1, hf_check(back, n > 0 ? n : 0, 20 + i, 0));
		}
		ASSERT_EQ(0, close(fd));
	}

	/*
	 * Reads that start inside a page span one page more than their
	 * length: a reply that does not fit the pipes must not wait for room
	 * that never comes.  (Uncached, the kernel sends a READ at exactly
	 * these offsets; cached, it reads whole pages.)
	 */
	hf_fill(buf, 2 * MiB, 30, 0);
	ASSERT_EQ(0, hf_write_file(S("odd"), buf, 2 * MiB, 0644));
	{
		static const off_t offs[] = { 100, 4095, 4097, 512 * KiB + 1 };
		int fd = open(M("odd"), O_RDONLY | O_CLOEXEC);

		ASSERT_LE(0, fd) TH_LOG("open: %m");
		for (i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
			size_t len = MiB - 200;
			ssize_t n = pread(fd, back, len, offs[i]);

			EXPECT_EQ((ssize_t)len, n) TH_LOG("at %lld: %m", (long long)offs[i]);
			if (n > 0)
				EXPECT_EQ(-1, hf_check(back, n, 30, offs[i]))
					TH_LOG("at %lld", (long long)offs[i]);
		}
		ASSERT_EQ(0, close(fd));
	}
	free(buf);
	free(back);
}

TEST_F(data, mmap_shared)
{
	const size_t len = 256 * KiB;
	char *back = malloc(len), *map;
	int fd;

	ASSERT_NE(NULL, back);
	fd = open(M("m"), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, len));
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, map) TH_LOG("mmap MAP_SHARED: %m");

	hf_fill(map, len, 10, 0);
	ASSERT_EQ(0, msync(map, len, MS_SYNC));
	/* Still mapped and open: msync alone must have reached the host. */
	ASSERT_EQ((ssize_t)len, host_pread(S("m"), back, len, 0));
	EXPECT_EQ(-1, hf_check(back, len, 10, 0));
	ASSERT_EQ(0, munmap(map, len));
	ASSERT_EQ(0, close(fd));

	/* Host data through a read-only shared mapping. */
	hf_fill(back, len, 11, 0);
	ASSERT_EQ(0, hf_write_file(S("r"), back, len, 0644));
	fd = open(M("r"), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, map);
	EXPECT_EQ(-1, hf_check(map, len, 11, 0));
	munmap(map, len);
	close(fd);
	free(back);
}

struct writer {
	const char *path;
	int idx;
	int err;	/* errno of the first failure, 0 if fine */
	off_t bad_off;
};

#define WRITERS		4
#define REGION		(2 * MiB)
#define CHUNK		(64 * KiB)

static void *writer_thread(void *arg)
{
	struct writer *w = arg;
	char *buf = malloc(CHUNK);
	off_t off;
	int fd;

	if (!buf) {
		w->err = ENOMEM;
		return NULL;
	}
	fd = open(w->path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		w->err = errno;
		free(buf);
		return NULL;
	}
	/* Interleaved chunks: neighbours' writes race with ours. */
	for (off = w->idx * CHUNK; off < WRITERS * REGION; off += WRITERS * CHUNK) {
		hf_fill(buf, CHUNK, 12, off);
		if (pwrite(fd, buf, CHUNK, off) != CHUNK) {
			w->err = errno ? errno : EIO;
			w->bad_off = off;
			break;
		}
	}
	if (close(fd) && !w->err)
		w->err = errno;
	free(buf);
	return NULL;
}

TEST_F_TIMEOUT(data, concurrent_writers, 90)
{
	struct writer w[WRITERS];
	pthread_t t[WRITERS];
	const char *path;
	char *back;
	struct stat st;
	int i, fd;

	back = malloc(WRITERS * REGION);
	ASSERT_NE(NULL, back);
	fd = open(M("c"), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	close(fd);

	path = strdup(M("c"));
	for (i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){ .path = path, .idx = i };
		ASSERT_EQ(0, pthread_create(&t[i], NULL, writer_thread, &w[i]));
	}
	for (i = 0; i < WRITERS; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < WRITERS; i++) {
		struct writer *wi = &w[i];

		EXPECT_EQ(0, wi->err) TH_LOG("writer %d at %lld: %s", i,
					     (long long)wi->bad_off, strerror(wi->err));
	}

	ASSERT_EQ(0, stat(S("c"), &st));
	EXPECT_EQ(WRITERS * REGION, st.st_size);
	ASSERT_EQ(WRITERS * REGION, hf_read_file(S("c"), back, WRITERS * REGION));
	EXPECT_EQ(-1, hf_check(back, WRITERS * REGION, 12, 0));
	free(back);
}

TEST_F(data, fallocate_punch_hole)
{
	const size_t len = MiB;
	char *buf = malloc(len), *back = malloc(len);
	struct stat st, st2;
	int fd;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, back);
	fd = open(M("fa"), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);

	/* Plain allocation extends the size and reserves blocks. */
	ASSERT_EQ(0, fallocate(fd, 0, 0, len)) TH_LOG("fallocate: %m");
	ASSERT_EQ(0, stat(S("fa"), &st));
	EXPECT_EQ((off_t)len, st.st_size);
	EXPECT_LE((blkcnt_t)(len / 512), st.st_blocks);

	/* KEEP_SIZE past EOF: blocks yes, size no. */
	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_KEEP_SIZE, len, len));
	ASSERT_EQ(0, stat(S("fa"), &st));
	EXPECT_EQ((off_t)len, st.st_size);
	EXPECT_LE((blkcnt_t)(2 * len / 512), st.st_blocks);

	hf_fill(buf, len, 13, 0);
	ASSERT_EQ((ssize_t)len, pwrite(fd, buf, len, 0));
	ASSERT_EQ(0, fsync(fd));
	ASSERT_EQ(0, stat(S("fa"), &st));

	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       256 * KiB, 128 * KiB)) TH_LOG("punch hole: %m");
	ASSERT_EQ(0, stat(S("fa"), &st2));
	EXPECT_EQ((off_t)len, st2.st_size);
	EXPECT_GE(st.st_blocks - 128 * KiB / 512, st2.st_blocks)
		TH_LOG("blocks before %lld after %lld", (long long)st.st_blocks,
		       (long long)st2.st_blocks);

	ASSERT_EQ((ssize_t)len, host_pread(S("fa"), back, len, 0));
	EXPECT_EQ(-1, hf_check(back, 256 * KiB, 13, 0));
	EXPECT_TRUE(all_zero(back + 256 * KiB, 128 * KiB));
	EXPECT_EQ(-1, hf_check(back + 384 * KiB, len - 384 * KiB, 13, 384 * KiB));

	/* The mount's page cache must not resurrect the punched data. */
	ASSERT_EQ((ssize_t)len, pread(fd, back, len, 0));
	EXPECT_TRUE(all_zero(back + 256 * KiB, 128 * KiB));
	EXPECT_EQ(-1, hf_check(back + 384 * KiB, len - 384 * KiB, 13, 384 * KiB));
	close(fd);
	free(buf);
	free(back);
}

TEST_F(data, seek_data_hole)
{
	static const off_t offs[] = {
		0, 1, 64 * KiB - 1, 64 * KiB, 100 * KiB, MiB - 1, MiB,
		MiB + 64 * KiB, 2 * MiB - 1,
	};
	char buf[64 * 1024];
	off_t h, m;
	int hfd, fd;
	size_t i;
	int w;

	/* data [0,64K) hole [64K,1M) data [1M,1M+64K) hole up to 2M. */
	hf_fill(buf, sizeof(buf), 14, 0);
	hfd = open(S("sp"), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	ASSERT_LE(0, hfd);
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(hfd, buf, sizeof(buf), 0));
	ASSERT_EQ((ssize_t)sizeof(buf), pwrite(hfd, buf, sizeof(buf), MiB));
	ASSERT_EQ(0, ftruncate(hfd, 2 * MiB));
	ASSERT_EQ(0, fsync(hfd));
	/* Precondition: the host filesystem reports holes at all. */
	ASSERT_EQ(64 * KiB, lseek(hfd, 0, SEEK_HOLE));

	fd = open(M("sp"), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	for (w = SEEK_DATA; w <= SEEK_HOLE; w++) {
		for (i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
			h = lseek(hfd, offs[i], w);
			m = lseek(fd, offs[i], w);
			EXPECT_EQ(h, m) TH_LOG("lseek(%lld, %s)", (long long)offs[i],
					       w == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE");
		}
	}
	/* At or past EOF there is no data: ENXIO. */
	EXPECT_EQ(-1, lseek(fd, 2 * MiB, SEEK_DATA));
	EXPECT_EQ(ENXIO, errno);
	EXPECT_EQ(-1, lseek(fd, 2 * MiB + 5, SEEK_HOLE));
	EXPECT_EQ(ENXIO, errno);
	close(fd);
	close(hfd);
}

TEST_F(data, copy_file_range)
{
	const size_t len = MiB + 5;
	char *buf = malloc(len), *back = malloc(len);
	loff_t in_off = 100, out_off = 4096;
	size_t left = len - 100;
	int in, out;

	ASSERT_NE(NULL, buf);
	ASSERT_NE(NULL, back);
	hf_fill(buf, len, 15, 0);
	ASSERT_EQ(0, hf_write_file(M("in"), buf, len, 0644));
	memset(back, 'z', 8192);
	ASSERT_EQ(0, hf_write_file(M("out"), back, 8192, 0644));

	in = open(M("in"), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, in);
	out = open(M("out"), O_WRONLY | O_CLOEXEC);
	ASSERT_LE(0, out);
	while (left) {
		ssize_t n = copy_file_range(in, &in_off, out, &out_off, left, 0);

		ASSERT_LT(0, n) TH_LOG("copy_file_range with %zu left: %m", left);
		left -= n;
	}
	EXPECT_EQ((loff_t)len, in_off);
	EXPECT_EQ((loff_t)(4096 + len - 100), out_off);
	ASSERT_EQ(0, close(out));
	close(in);

	/* out = 4096 x 'z', then in[100..]. */
	ASSERT_EQ((ssize_t)(4096 + len - 100), hf_read_file(S("out"), back, len + 4096));
	EXPECT_EQ(0, memcmp(back, "zzzzzzzz", 8));
	EXPECT_EQ('z', back[4095]);
	EXPECT_EQ(-1, hf_check(back + 4096, len - 100, 15, 100));
	free(buf);
	free(back);
}

TEST_F(data, syncfs)
{
	char buf[128 * 1024], back[128 * 1024];
	long long end;
	ssize_t n;
	int fd;

	hf_fill(buf, sizeof(buf), 16, 0);
	fd = open(M("s"), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd);
	ASSERT_EQ((ssize_t)sizeof(buf), write(fd, buf, sizeof(buf)));
	ASSERT_EQ(0, syncfs(fd)) TH_LOG("syncfs: %m");
	/*
	 * For a /dev/fuse mount the kernel starts writeback of dirty pages
	 * on syncfs but (unlike fsync) need not wait for the WRITEs to be
	 * answered, so allow a few seconds.  Without syncfs, dirty pages of
	 * the writeback-cache variant would sit for dirty_expire (30 s).
	 */
	end = hf_now_ms() + 5000;
	do {
		n = host_pread(S("s"), back, sizeof(back), 0);
		if (n == (ssize_t)sizeof(back) && hf_check(back, sizeof(back), 16, 0) == -1)
			break;
		usleep(20000);
	} while (hf_now_ms() < end);
	ASSERT_EQ((ssize_t)sizeof(buf), n);
	EXPECT_EQ(-1, hf_check(back, sizeof(back), 16, 0));
	close(fd);
}

TEST_HARNESS_MAIN
