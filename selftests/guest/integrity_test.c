// SPDX-License-Identifier: GPL-2.0
/*
 * Data integrity over virtio-fs, inside the guest: what is written through
 * the mount is what comes back after the guest's page cache is dropped
 * (echo 3 > /proc/sys/vm/drop_caches), and what the host side holds.
 * Position-dependent data (hf_fill) catches bytes landing at the wrong
 * offset; odd chunk sizes cross page and descriptor boundaries, so
 * requests are split over many guest buffers (and indirect descriptor
 * tables) in every cache mode.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

#define KiB 1024L
#define MiB (1024L * KiB)

FIXTURE(integ) {
	struct hf h;
};

HF_CACHE_VARIANTS(integ);

FIXTURE_SETUP(integ)
{
	HF_SETUP(&variant->o);
}

FIXTURE_TEARDOWN(integ)
{
	HF_TEARDOWN();
}

static int drop_caches(void)
{
	int fd, r;

	sync();
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	r = write(fd, "3", 1) == 1 ? 0 : -1;
	close(fd);
	return r;
}

/* Writes @len bytes of pattern @seed at @off in @chunk-sized pieces. */
static int write_pattern(const char *path, int flags, off_t off, size_t len, unsigned seed,
			 size_t chunk)
{
	char *buf = malloc(chunk);
	size_t done = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);

	if (fd < 0 || !buf) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while (done < len) {
		size_t n = len - done < chunk ? len - done : chunk;

		hf_fill(buf, n, seed, off + done);
		if (pwrite(fd, buf, n, off + done) != (ssize_t)n)
			break;
		done += n;
	}
	free(buf);
	if (done != len || fsync(fd)) {
		close(fd);
		return -1;
	}
	return close(fd);
}

/* Offset of the first wrong byte of [off, off+len) in @path, or -1 (all good). */
static ssize_t check_pattern(const char *path, off_t off, size_t len, unsigned seed)
{
	size_t chunk = 777 * 1000, done = 0;
	char *buf = malloc(chunk);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t bad = -1;

	if (fd < 0 || !buf) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while (done < len && bad < 0) {
		size_t n = len - done < chunk ? len - done : chunk;
		ssize_t got = pread(fd, buf, n, off + done), k;

		if (got != (ssize_t)n) {
			bad = done;
			break;
		}
		k = hf_check(buf, n, seed, off + done);
		if (k >= 0)
			bad = done + k;
		done += n;
	}
	free(buf);
	close(fd);
	return bad;
}

TEST_F_TIMEOUT(integ, sizes_survive_drop_caches, 300)
{
	static const size_t sizes[] = {1, 4095, 4096, 4097, 65543, MiB + 13, 8 * MiB};
	static const size_t chunks[] = {1, 4095, 4096, 12345, 65536, 131072 + 7, 1 * MiB};
	unsigned i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		const char *p = strdup(M("f%u", i));
		const char *s = strdup(S("f%u", i));
		size_t chunk = chunks[i] < sizes[i] ? chunks[i] : sizes[i];

		ASSERT_EQ(0, write_pattern(p, O_TRUNC, 0, sizes[i], i + 1, chunk))
			TH_LOG("write %zu bytes in %zu-byte chunks: %m", sizes[i], chunk);
		EXPECT_EQ(-1, check_pattern(p, 0, sizes[i], i + 1)) TH_LOG("size %zu, cached", sizes[i]);
		ASSERT_EQ(0, drop_caches());
		EXPECT_EQ(-1, check_pattern(p, 0, sizes[i], i + 1)) TH_LOG("size %zu, cold", sizes[i]);
		EXPECT_EQ(-1, check_pattern(s, 0, sizes[i], i + 1)) TH_LOG("size %zu, host", sizes[i]);
		free((void *)p);
		free((void *)s);
	}
}

TEST_F(integ, unaligned_overwrite)
{
	const char *p = strdup(M("f"));

	ASSERT_EQ(0, write_pattern(p, O_TRUNC, 0, 3 * MiB, 1, 100000));
	ASSERT_EQ(0, write_pattern(p, 0, 1000, 300001, 2, 4099));
	ASSERT_EQ(0, drop_caches());
	EXPECT_EQ(-1, check_pattern(p, 0, 1000, 1));
	EXPECT_EQ(-1, check_pattern(p, 1000, 300001, 2));
	EXPECT_EQ(-1, check_pattern(p, 301001, 3 * MiB - 301001, 1));
	EXPECT_EQ(-1, check_pattern(S("f"), 1000, 300001, 2));
	free((void *)p);
}

/*
 * READs as the guest sends them, one by one: O_DIRECT hands the server the
 * caller's own pages, so a buffer that starts inside a page, odd lengths
 * and offsets, and reads that end at or start past EOF reach the server
 * and its reply lands in those pages.  The bytes next to the buffer must
 * not change.
 */
TEST_F(integ, direct_reads_odd_offsets_and_buffers)
{
	const size_t size = 3 * MiB + 333, area = 6 * MiB, guard = 8192;
	const struct {
		off_t off;
		size_t len, skew;
	} r[] = {
		{ 0, 1, 1 },
		{ 1, 4095, 4095 },
		{ 4095, 4097, 7 },
		{ 12345, 65543, 100 },
		{ MiB - 1, MiB + 2, 4000 },
		{ 2 * MiB + 5, 2 * MiB, 2049 }, /* ends at EOF */
		{ size - 7, 4096, 3 },
		{ size - 1, 1, 0 },
		{ size, 100, 5 },		/* at EOF */
		{ size + 4096, 10, 9 },		/* past it */
	};
	const char *p = strdup(M("odd"));
	unsigned char *buf;
	unsigned i;
	size_t k;
	int fd;

	ASSERT_EQ(0, write_pattern(p, O_TRUNC, 0, size, 9, MiB));
	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, area));
	fd = open(p, O_RDONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd) TH_LOG("open O_DIRECT: %m");
	for (i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
		unsigned char *at = buf + guard + r[i].skew;
		size_t want = r[i].off >= (off_t)size ? 0 : size - r[i].off;
		ssize_t n;

		if (want > r[i].len)
			want = r[i].len;
		memset(buf, 0x5a, area);
		n = pread(fd, at, r[i].len, r[i].off);
		ASSERT_EQ((ssize_t)want, n)
			TH_LOG("%zu bytes at %lld into +%zu: %m", r[i].len, (long long)r[i].off,
			       r[i].skew);
		EXPECT_EQ(-1, hf_check(at, want, 9, r[i].off))
			TH_LOG("%zu bytes at %lld", r[i].len, (long long)r[i].off);
		for (k = 0; k < guard + r[i].skew; k++)
			ASSERT_EQ(0x5a, buf[k]) TH_LOG("byte %zu before the buffer written", k);
		for (k = guard + r[i].skew + want; k < area; k++)
			ASSERT_EQ(0x5a, buf[k]) TH_LOG("byte %zu after the data written (read %zu at %lld)",
						      k - guard - r[i].skew, r[i].len,
						      (long long)r[i].off);
	}
	close(fd);
	free(buf);
	free((void *)p);
}

/*
 * WRITEs as the guest sends them: with O_DIRECT the server gets the
 * caller's own pages, at the caller's offsets and lengths; through the page
 * cache, whole and partial pages.  A server writing straight from guest
 * memory must write exactly those bytes, wherever the buffer starts, and
 * leave the buffer as it was.  The file is checked against a copy kept
 * here, cold through the mount and through the host view.
 */
static void odd_writes(struct __test_metadata *_metadata, FIXTURE_DATA(integ) *self, int oflags)
{
	const size_t size = 3 * MiB + 333, area = 6 * MiB, guard = 8192, max = 8 * MiB;
	const struct {
		off_t off;
		size_t len, skew;
	} w[] = {
		{ 0, 1, 1 },
		{ 1, 4095, 4095 },
		{ 4095, 4097, 7 },
		{ 8192, 8192, 0 },		/* aligned: as O_DIRECT host files take it */
		{ 12345, 65543, 100 },
		{ MiB - 1, MiB + 2, 4000 },
		{ MiB, 3 * MiB, 512 },		/* more than one WRITE, past EOF */
		{ size - 7, 4096, 3 },
		{ 5 * MiB + 17, 10, 9 },	/* past EOF, leaving a hole */
	};
	const char *p = strdup(M("odd")), *s = strdup(S("odd"));
	unsigned char *buf, *shadow, *got;
	size_t end = size, k;
	unsigned i;
	int fd;

	ASSERT_EQ(0, write_pattern(p, O_TRUNC, 0, size, 9, MiB));
	ASSERT_EQ(0, posix_memalign((void **)&buf, 4096, area));
	ASSERT_NE(NULL, shadow = calloc(1, max));
	ASSERT_NE(NULL, got = malloc(max));
	hf_fill(shadow, size, 9, 0);
	fd = open(p, O_WRONLY | O_CLOEXEC | oflags);
	ASSERT_LE(0, fd) TH_LOG("open: %m");
	for (i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		unsigned char *at = buf + guard + w[i].skew;

		memset(buf, 0x5a, area);
		hf_fill(at, w[i].len, 20 + i, w[i].off);
		ASSERT_EQ((ssize_t)w[i].len, pwrite(fd, at, w[i].len, w[i].off))
			TH_LOG("%zu bytes at %lld from +%zu: %m", w[i].len, (long long)w[i].off,
			       w[i].skew);
		/* The server only reads the caller's memory. */
		EXPECT_EQ(-1, hf_check(at, w[i].len, 20 + i, w[i].off));
		for (k = 0; k < guard + w[i].skew; k++)
			ASSERT_EQ(0x5a, buf[k]) TH_LOG("byte %zu before the buffer changed", k);
		for (k = guard + w[i].skew + w[i].len; k < area; k++)
			ASSERT_EQ(0x5a, buf[k]) TH_LOG("byte %zu after the buffer changed", k);
		memcpy(shadow + w[i].off, at, w[i].len);
		if ((size_t)w[i].off + w[i].len > end)
			end = w[i].off + w[i].len;
	}
	ASSERT_EQ(0, fsync(fd));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, drop_caches());
	for (i = 0; i < 2; i++) {
		const char *path = i ? s : p;
		struct stat st;

		fd = open(path, O_RDONLY | O_CLOEXEC);
		ASSERT_LE(0, fd) TH_LOG("open %s: %m", path);
		ASSERT_EQ(0, fstat(fd, &st));
		EXPECT_EQ((off_t)end, st.st_size) TH_LOG("%s", path);
		memset(got, 0xa5, max);
		ASSERT_EQ((ssize_t)end, pread(fd, got, max, 0)) TH_LOG("%s: %m", path);
		close(fd);
		for (k = 0; k < end; k++)
			ASSERT_EQ(shadow[k], got[k]) TH_LOG("%s: byte %zu of %zu", path, k, end);
	}
	free(got);
	free(shadow);
	free(buf);
	free((void *)p);
	free((void *)s);
}

TEST_F(integ, direct_writes_odd_offsets_and_buffers)
{
	odd_writes(_metadata, self, O_DIRECT);
}

TEST_F(integ, buffered_writes_odd_offsets_and_buffers)
{
	odd_writes(_metadata, self, 0);
}

TEST_F(integ, truncate_grow_shrink)
{
	const char *p = strdup(M("f"));
	char buf[8192];
	struct stat st;
	int i;

	ASSERT_EQ(0, write_pattern(p, O_TRUNC, 0, 64 * KiB, 3, 4096));
	ASSERT_EQ(0, truncate(p, 10000));
	ASSERT_EQ(0, truncate(p, 3 * 4096 + 5));
	ASSERT_EQ(0, drop_caches());
	ASSERT_EQ(0, stat(p, &st));
	EXPECT_EQ(3 * 4096 + 5, st.st_size);
	EXPECT_EQ(-1, check_pattern(p, 0, 10000, 3));
	{
		int fd = open(p, O_RDONLY | O_CLOEXEC);

		ASSERT_LE(0, fd);
		ASSERT_EQ(3 * 4096 + 5 - 10000, pread(fd, buf, sizeof(buf), 10000));
		close(fd);
	}
	for (i = 0; i < 3 * 4096 + 5 - 10000; i++)
		ASSERT_EQ(0, buf[i]) TH_LOG("byte %d after the shrink point is not zero", 10000 + i);
	free((void *)p);
}

TEST_F(integ, sparse_far_offset)
{
	const char *p = strdup(M("f"));
	const off_t far = 5LL * 1024 * MiB + 4093;
	struct stat st;

	ASSERT_EQ(0, write_pattern(p, O_TRUNC, far, 10000, 4, 10000));
	ASSERT_EQ(0, drop_caches());
	ASSERT_EQ(0, stat(p, &st));
	EXPECT_EQ(far + 10000, st.st_size);
	EXPECT_EQ(-1, check_pattern(p, far, 10000, 4));
	EXPECT_EQ(-1, check_pattern(S("f"), far, 10000, 4));
	free((void *)p);
}

TEST_F(integ, parallel_writers)
{
	const char *p = strdup(M("f"));
	pid_t kids[4];
	int i;

	ASSERT_EQ(0, write_pattern(p, O_TRUNC, 0, 1, 9, 1));
	for (i = 0; i < 4; i++) {
		kids[i] = hf_fork_child(NULL, 0);
		ASSERT_LE(0, kids[i]);
		if (kids[i] == 0)
			_exit(write_pattern(p, 0, i * MiB, MiB, 10 + i, 4096 * 3 + 1) ? 1 : 0);
	}
	for (i = 0; i < 4; i++) {
		int st = hf_wait(kids[i], 120000);

		ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) TH_LOG("writer %d failed", i);
	}
	ASSERT_EQ(0, drop_caches());
	for (i = 0; i < 4; i++) {
		EXPECT_EQ(-1, check_pattern(p, i * MiB, MiB, 10 + i)) TH_LOG("region %d", i);
		EXPECT_EQ(-1, check_pattern(S("f"), i * MiB, MiB, 10 + i)) TH_LOG("host, region %d", i);
	}
	free((void *)p);
}

TEST_F(integ, shared_mmap_write)
{
	const char *p = strdup(M("f"));
	size_t len = 2 * MiB + 4096;
	char *m;
	int fd;

	ASSERT_EQ(0, write_pattern(p, O_TRUNC, 0, len, 5, MiB));
	fd = open(p, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED && errno == ENODEV && !strcmp(variant->o.cache, "never")) {
		/* cache=never is direct I/O: 6.1 refuses shared mappings of it. */
		TH_LOG("shared mmap refused on a direct-I/O file (ENODEV), as the kernel should");
		close(fd);
		free((void *)p);
		return;
	}
	ASSERT_NE(MAP_FAILED, m) TH_LOG("mmap: %m");
	hf_fill(m + 12345, MiB, 6, 12345);
	ASSERT_EQ(0, msync(m, len, MS_SYNC));
	munmap(m, len);
	close(fd);
	ASSERT_EQ(0, drop_caches());
	EXPECT_EQ(-1, check_pattern(p, 0, 12345, 5));
	EXPECT_EQ(-1, check_pattern(p, 12345, MiB, 6));
	EXPECT_EQ(-1, check_pattern(S("f"), 12345, MiB, 6));
	EXPECT_EQ(-1, check_pattern(p, 12345 + MiB, len - 12345 - MiB, 5));
	free((void *)p);
}

TEST_HARNESS_MAIN
