// SPDX-License-Identifier: GPL-2.0
/*
 * virtio-fs DAX as a guest sees it, in the VM of selftests/vm/dax-guest.sh:
 * holdfastd serves two host directories with a DAX window each, through
 * our patched QEMU (cache-size), and the guest's init mounts them:
 *
 *   /mnt/dax    -o dax=always, a window of 8 MiB (4 ranges of 2 MiB), so
 *               that touching more ranges makes the guest reclaim some
 *               (FUSE_REMOVEMAPPING);
 *   /mnt/daxi   -o dax=inode: the guest maps only files whose attributes
 *               carry FUSE_ATTR_DAX (holdfastd --dax-inode flag: the host
 *               file's FS_XFLAG_DAX).  The host made "flagged" (chattr +x,
 *               2 MiB) and "plain" (16 MiB), both filled with pattern().
 *
 * The host side of a check goes through a request file: the guest writes
 * a command to /mnt/daxi/.hf-req/NAME.req, a watcher on the host (in
 * dax-guest.sh) runs it on the host file itself and answers in NAME.ans.
 * (On /mnt/daxi these files are not DAX: they take no range of /mnt/dax's
 * window, and the only REMOVEMAPPINGs there are the tests'.)
 * Paths in commands start with "a/" (the dax=always directory) or "i/"
 * (the dax=inode one):
 *
 *   read PATH OFF LEN         answer: the byte value if all LEN bytes are
 *                             that value, "mixed", or "short N"
 *   write PATH OFF LEN BYTE   pwrite LEN bytes of BYTE; answer "ok"
 *   size PATH                 answer: st_size
 *   setdax PATH 0|1           clear or set FS_XFLAG_DAX; answer "ok"
 *
 * What the host script checks afterwards: holdfastd's FUSE_REMOVEMAPPING
 * count for /mnt/dax (reclaim happened: more than the umount's evictions
 * can send, at most one per range of the window) and its
 * FUSE_SETUPMAPPING count for /mnt/daxi (only the flagged file was
 * mapped).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"

#ifndef STATX_ATTR_DAX
#define STATX_ATTR_DAX 0x00200000
#endif

#define ALWAYS "/mnt/dax"
#define INODE "/mnt/daxi"
#define RANGE (2UL << 20) /* the guest's DAX range (FUSE_DAX_SZ) */
#define PAGE 4096UL

/* The byte at `off` of a file filled by the host (dax-guest.sh) or by
 * fill(): a function of the offset and a seed, different on every page. */
static unsigned char pattern(unsigned long off, unsigned int seed)
{
	return (unsigned char)((off / PAGE) * 7 + off % 251 + seed * 13);
}

/* Fills `fd` with pattern(seed) through write(). */
static int fill(int fd, unsigned long len, unsigned int seed)
{
	static unsigned char buf[65536];
	unsigned long off, i;

	for (off = 0; off < len; off += sizeof(buf)) {
		for (i = 0; i < sizeof(buf); i++)
			buf[i] = pattern(off + i, seed);
		if (pwrite(fd, buf, sizeof(buf), off) != (ssize_t)sizeof(buf))
			return -1;
	}
	return 0;
}

/* The first offset in [from, to) of `p` that is not pattern(seed), or -1. */
static long bad_pattern(const unsigned char *p, unsigned long from, unsigned long to,
			unsigned int seed)
{
	unsigned long off;

	for (off = from; off < to; off++)
		if (p[off] != pattern(off, seed))
			return (long)off;
	return -1;
}

/* Runs `cmd` on the host (see the top); the answer in `ans`.  0 or -1. */
static int host(const char *cmd, char *ans, size_t len)
{
	static unsigned int seq;
	char tmp[128], req[128], rep[128];
	struct timespec t = { 0, 50 * 1000 * 1000 };
	ssize_t n;
	int fd, i;

	mkdir(INODE "/.hf-req", 0755);
	snprintf(tmp, sizeof(tmp), INODE "/.hf-req/%d.%u.tmp", (int)getpid(), seq);
	snprintf(req, sizeof(req), INODE "/.hf-req/%d.%u.req", (int)getpid(), seq);
	snprintf(rep, sizeof(rep), INODE "/.hf-req/%d.%u.ans", (int)getpid(), seq);
	seq++;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	n = write(fd, cmd, strlen(cmd));
	close(fd);
	if (n != (ssize_t)strlen(cmd) || rename(tmp, req))
		return -1;
	/* 60 s: the host polls every 50 ms, TCG is slow. */
	for (i = 0; i < 1200; i++) {
		fd = open(rep, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			n = read(fd, ans, len - 1);
			close(fd);
			unlink(rep);
			if (n < 0)
				return -1;
			ans[n] = 0;
			ans[strcspn(ans, "\n")] = 0;
			return 0;
		}
		nanosleep(&t, NULL);
	}
	snprintf(ans, len, "no answer from the host");
	return -1;
}

/* The host's answer to "read PATH OFF LEN" as a byte value, -1 otherwise
 * (the answer is logged). */
static int host_byte(struct __test_metadata *_metadata, const char *path, unsigned long off,
		     unsigned long len)
{
	char cmd[256], ans[64];

	snprintf(cmd, sizeof(cmd), "read %s %lu %lu", path, off, len);
	if (host(cmd, ans, sizeof(ans))) {
		TH_LOG("host '%s': %s", cmd, ans);
		return -1;
	}
	if (ans[0] < '0' || ans[0] > '9') {
		TH_LOG("host '%s': %s", cmd, ans);
		return -1;
	}
	return atoi(ans);
}

static int host_write(const char *path, unsigned long off, unsigned long len, int byte)
{
	char cmd[256], ans[64];

	snprintf(cmd, sizeof(cmd), "write %s %lu %lu %d", path, off, len, byte);
	return host(cmd, ans, sizeof(ans)) || strcmp(ans, "ok") ? -1 : 0;
}

static long host_size(const char *path)
{
	char cmd[256], ans[64];

	snprintf(cmd, sizeof(cmd), "size %s", path);
	if (host(cmd, ans, sizeof(ans)) || ans[0] < '0' || ans[0] > '9')
		return -1;
	return atol(ans);
}

/* Whether the guest kernel has the file in DAX mode (S_DAX), -1 on error. */
static int is_dax(const char *path)
{
	struct statx stx;

	if (statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &stx))
		return -1;
	if (!(stx.stx_attributes_mask & STATX_ATTR_DAX))
		return -1; /* the kernel does not report it at all */
	return !!(stx.stx_attributes & STATX_ATTR_DAX);
}

static bool mounted_with(const char *mnt, const char *opt)
{
	char line[512], want[64];
	bool found = false;
	FILE *f = fopen("/proc/mounts", "re");

	if (!f)
		return false;
	snprintf(want, sizeof(want), " %s virtiofs ", mnt);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, want) && strstr(line, opt))
			found = true;
	fclose(f);
	return found;
}

/* A new file of `len` bytes of pattern(seed) under `dir`; its fd. */
static int new_file(const char *dir, const char *name, unsigned long len, unsigned int seed,
		    char *path, size_t plen)
{
	int fd;

	snprintf(path, plen, "%s/%s", dir, name);
	unlink(path);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (fill(fd, len, seed)) {
		close(fd);
		return -1;
	}
	return fd;
}

FIXTURE(dax) {
	char path[256];
	int fd;
	unsigned char *p;
	size_t len;
};

FIXTURE_SETUP(dax)
{
	self->fd = -1;
	self->p = MAP_FAILED;
	ASSERT_TRUE(mounted_with(ALWAYS, "dax=always")) TH_LOG(ALWAYS " is not mounted dax=always");
}

FIXTURE_TEARDOWN(dax)
{
	if (self->p != MAP_FAILED)
		munmap(self->p, self->len);
	if (self->fd >= 0)
		close(self->fd);
}

/* Maps `len` bytes of a new file of pattern(seed) MAP_SHARED. */
static void map_new(struct __test_metadata *_metadata, FIXTURE_DATA(dax) *self,
		    const char *name, size_t len, unsigned int seed)
{
	self->fd = new_file(ALWAYS, name, len, seed, self->path, sizeof(self->path));
	ASSERT_GE(self->fd, 0) TH_LOG("%s: %s", self->path, strerror(errno));
	self->len = len;
	self->p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, 0);
	ASSERT_NE(self->p, MAP_FAILED) TH_LOG("mmap %s: %s", self->path, strerror(errno));
}

/* dax=always puts every regular file in DAX mode. */
TEST_F(dax, always_files_are_dax)
{
	map_new(_metadata, self, "is_dax", RANGE, 1);
	EXPECT_EQ(is_dax(self->path), 1);
	EXPECT_EQ(bad_pattern(self->p, 0, RANGE, 1), -1);
}

/* A store through the guest's mapping is in the host file at once: the
 * mapping is the host file's pages (no msync, no FUSE_WRITE). */
TEST_F_TIMEOUT(dax, mmap_guest_store_reaches_the_host, 120)
{
	map_new(_metadata, self, "g2h", 2 * RANGE, 2);
	memset(self->p + 3 * PAGE, 0x5a, 2 * PAGE);
	memset(self->p + RANGE + 5 * PAGE, 0xa5, PAGE);
	EXPECT_EQ(host_byte(_metadata, "a/g2h", 3 * PAGE, 2 * PAGE), 0x5a);
	EXPECT_EQ(host_byte(_metadata, "a/g2h", RANGE + 5 * PAGE, PAGE), 0xa5);
	/* Untouched bytes next to them are still the pattern. */
	EXPECT_EQ(host_byte(_metadata, "a/g2h", 2 * PAGE + 7, 1), pattern(2 * PAGE + 7, 2));
	EXPECT_EQ(host_byte(_metadata, "a/g2h", RANGE + 6 * PAGE, 1), pattern(RANGE + 6 * PAGE, 2));
}

/* A write to the host file shows in the guest's mapping made before it,
 * without a new mmap or any FUSE request. */
TEST_F_TIMEOUT(dax, mmap_host_write_reaches_the_guest_mapping, 120)
{
	volatile unsigned char *v;

	map_new(_metadata, self, "h2g", 2 * RANGE, 3);
	v = self->p;
	/* Fault both ranges in first: the mapping exists before the host writes. */
	ASSERT_EQ(v[7 * PAGE], pattern(7 * PAGE, 3));
	ASSERT_EQ(v[RANGE + 9 * PAGE], pattern(RANGE + 9 * PAGE, 3));
	ASSERT_EQ(host_write("a/h2g", 7 * PAGE, PAGE, 0xc3), 0);
	ASSERT_EQ(host_write("a/h2g", RANGE + 9 * PAGE + 100, 10, 0x3c), 0);
	EXPECT_EQ(v[7 * PAGE], 0xc3);
	EXPECT_EQ(v[8 * PAGE - 1], 0xc3);
	EXPECT_EQ(v[8 * PAGE], pattern(8 * PAGE, 3));
	EXPECT_EQ(v[RANGE + 9 * PAGE + 100], 0x3c);
	EXPECT_EQ(v[RANGE + 9 * PAGE + 109], 0x3c);
	EXPECT_EQ(v[RANGE + 9 * PAGE + 110], pattern(RANGE + 9 * PAGE + 110, 3));
}

/* In the guest, read()/write() and the mapping see each other's bytes. */
TEST_F(dax, read_write_and_mmap_agree)
{
	unsigned char buf[PAGE];
	volatile unsigned char *v;

	map_new(_metadata, self, "rw", 2 * RANGE, 4);
	v = self->p;
	ASSERT_EQ(v[RANGE + 2 * PAGE], pattern(RANGE + 2 * PAGE, 4));
	memset(buf, 0x77, sizeof(buf));
	ASSERT_EQ(pwrite(self->fd, buf, sizeof(buf), RANGE + 2 * PAGE), (ssize_t)sizeof(buf));
	EXPECT_EQ(v[RANGE + 2 * PAGE], 0x77);
	EXPECT_EQ(v[RANGE + 3 * PAGE - 1], 0x77);
	memset(self->p + 11 * PAGE, 0x99, PAGE);
	ASSERT_EQ(pread(self->fd, buf, sizeof(buf), 11 * PAGE), (ssize_t)sizeof(buf));
	EXPECT_EQ(buf[0], 0x99);
	EXPECT_EQ(buf[PAGE - 1], 0x99);
	/* A read() across the range boundary. */
	ASSERT_EQ(pread(self->fd, buf, sizeof(buf), RANGE - PAGE / 2), (ssize_t)sizeof(buf));
	EXPECT_EQ(buf[0], pattern(RANGE - PAGE / 2, 4));
	EXPECT_EQ(buf[PAGE - 1], pattern(RANGE + PAGE / 2 - 1, 4));
}

#define RECLAIM_FILES 3
#define RECLAIM_RANGES 6 /* per file: 18 ranges through a window of 4 */
#define RECLAIM_ROUNDS 2

/* One word per page of file `k`, round `r`: who wrote what, where. */
static uint32_t stamp(int k, int r, unsigned long page)
{
	return 0xda000000u | (uint32_t)k << 20 | (uint32_t)r << 16 | (uint32_t)page;
}

/* Child `k`: maps its file and, each round, stamps and checks every page of
 * every range, in an order that keeps leaving and coming back to ranges;
 * exits 0 when all verified. */
static int reclaim_child(int k)
{
	const unsigned long len = RECLAIM_RANGES * RANGE, pages = len / PAGE;
	char path[256];
	uint32_t *p, w;
	unsigned long pg;
	int fd, r, i;

	snprintf(path, sizeof(path), ALWAYS "/reclaim.%d", k);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 10;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return 11;
	for (r = 0; r < RECLAIM_ROUNDS; r++) {
		for (i = 0; i < RECLAIM_RANGES; i++) {
			/* Ranges in a stride order, different per child. */
			unsigned long rg = (unsigned long)(i * 5 + k) % RECLAIM_RANGES;

			for (pg = rg * RANGE / PAGE; pg < (rg + 1) * RANGE / PAGE; pg++)
				p[pg * PAGE / 4] = stamp(k, r, pg);
		}
		for (pg = 0; pg < pages; pg++)
			if (p[pg * PAGE / 4] != stamp(k, r, pg)) {
				fprintf(stderr, "# child %d round %d: page %lu has %#x\n", k, r, pg,
					p[pg * PAGE / 4]);
				return 12;
			}
		/* And through read(), which maps by itself. */
		for (pg = 0; pg < pages; pg += 37) {
			if (pread(fd, &w, 4, pg * PAGE) != 4 || w != stamp(k, r, pg)) {
				fprintf(stderr, "# child %d round %d: read() of page %lu: %#x\n", k,
					r, pg, w);
				return 13;
			}
		}
	}
	munmap(p, len);
	close(fd);
	return 0;
}

/* Many more 2 MiB ranges than the window holds, from several processes:
 * the guest reclaims ranges (FUSE_REMOVEMAPPING; the host script checks
 * holdfastd counted some) and every byte still verifies, in the guest and
 * on the host. */
TEST_F_TIMEOUT(dax, reclaim_under_a_small_window, 300)
{
	const unsigned long len = RECLAIM_RANGES * RANGE;
	pid_t pid[RECLAIM_FILES];
	char path[256], name[64];
	int k, status, fd;
	uint32_t w;

	for (k = 0; k < RECLAIM_FILES; k++) {
		snprintf(name, sizeof(name), "reclaim.%d", k);
		fd = new_file(ALWAYS, name, len, 10 + k, path, sizeof(path));
		ASSERT_GE(fd, 0) TH_LOG("%s: %s", path, strerror(errno));
		close(fd);
	}
	for (k = 0; k < RECLAIM_FILES; k++) {
		pid[k] = fork();
		ASSERT_GE(pid[k], 0);
		if (pid[k] == 0)
			_exit(reclaim_child(k));
	}
	for (k = 0; k < RECLAIM_FILES; k++) {
		ASSERT_EQ(waitpid(pid[k], &status, 0), pid[k]);
		EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
			TH_LOG("child %d: status %#x", k, status);
	}
	/* The last round's stamps, and the pattern around them, on the host. */
	for (k = 0; k < RECLAIM_FILES; k++) {
		unsigned long pg = (unsigned long)k * 97 + 5;
		uint32_t want = stamp(k, RECLAIM_ROUNDS - 1, pg);
		char cmd[64];

		snprintf(path, sizeof(path), ALWAYS "/reclaim.%d", k);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(pread(fd, &w, 4, pg * PAGE), 4);
		EXPECT_EQ(w, want);
		ASSERT_EQ(pread(fd, &w, 1, pg * PAGE + 100), 1);
		EXPECT_EQ(w & 0xff, pattern(pg * PAGE + 100, 10 + k));
		close(fd);
		snprintf(cmd, sizeof(cmd), "a/reclaim.%d", k);
		EXPECT_EQ(host_byte(_metadata, cmd, pg * PAGE + 3, 1), want >> 24);
		EXPECT_EQ(host_byte(_metadata, cmd, pg * PAGE + 100, 1),
			  pattern(pg * PAGE + 100, 10 + k));
	}
}

static sigjmp_buf bus_jmp;
static void on_sigbus(int sig)
{
	siglongjmp(bus_jmp, 1);
}

/* Whether touching `addr` raises SIGBUS (and nothing else), in this process. */
static bool sigbus_at(volatile unsigned char *addr)
{
	struct sigaction sa = { .sa_handler = on_sigbus }, old;
	bool bus = false;

	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(bus_jmp, 1))
		bus = true;
	else
		(void)*addr;
	sigaction(SIGBUS, &old, NULL);
	return bus;
}

/* ftruncate() shrinking a mapped file: past the new EOF the mapping gives
 * SIGBUS, below it the data is intact, the host file has the new size, and
 * the mount (and QEMU) carry on; growing it again maps zeroes that take
 * stores. */
TEST_F_TIMEOUT(dax, truncate_while_mapped, 120)
{
	const unsigned long eof = RANGE / 2 + PAGE;
	volatile unsigned char *v;
	struct stat st;
	pid_t pid;
	int status;

	map_new(_metadata, self, "trunc", 2 * RANGE, 5);
	v = self->p;
	/* Both ranges mapped. */
	ASSERT_EQ(v[RANGE + 3], pattern(RANGE + 3, 5));
	ASSERT_EQ(v[eof + 3], pattern(eof + 3, 5));
	ASSERT_EQ(ftruncate(self->fd, eof), 0);

	/* In a child as well: a SIGBUS that kills a process leaves QEMU alone. */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		(void)v[RANGE + 3];
		_exit(0);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS)
		TH_LOG("child touching the second range past EOF: status %#x", status);
	EXPECT_TRUE(sigbus_at(v + eof)) TH_LOG("the first page past EOF did not fault");
	EXPECT_TRUE(sigbus_at(v + RANGE + 5 * PAGE));
	EXPECT_EQ(bad_pattern(self->p, 0, eof, 5), -1);
	ASSERT_EQ(fstat(self->fd, &st), 0);
	EXPECT_EQ(st.st_size, (off_t)eof);
	EXPECT_EQ(host_size("a/trunc"), (long)eof);

	/* Grow it back: zeroes past the old EOF, through the same mapping. */
	ASSERT_EQ(ftruncate(self->fd, 2 * RANGE), 0);
	EXPECT_FALSE(sigbus_at(v + RANGE + 5 * PAGE));
	EXPECT_EQ(v[RANGE + 5 * PAGE], 0);
	EXPECT_EQ(v[eof], 0);
	EXPECT_EQ(v[eof - 1], pattern(eof - 1, 5));
	self->p[RANGE + 5 * PAGE] = 0x42;
	EXPECT_EQ(host_byte(_metadata, "a/trunc", RANGE + 5 * PAGE, 1), 0x42);
	EXPECT_EQ(host_byte(_metadata, "a/trunc", eof, 1), 0);
	/* The mount still serves. */
	EXPECT_EQ(stat(ALWAYS, &st), 0);
}

/* dax=inode: the host file with FS_XFLAG_DAX is in DAX mode, the other is
 * not; both read and write correctly (the host script also checks that
 * holdfastd mapped no more than the flagged file's range). */
static void inode_file(struct __test_metadata *_metadata, const char *name, unsigned long len,
		       int want_dax, unsigned char mark)
{
	char path[256], hpath[64];
	unsigned char *p;
	int fd;

	snprintf(path, sizeof(path), INODE "/%s", name);
	snprintf(hpath, sizeof(hpath), "i/%s", name);
	EXPECT_EQ(is_dax(path), want_dax) TH_LOG("%s", path);
	fd = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_GE(fd, 0) TH_LOG("%s: %s", path, strerror(errno));
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(p, MAP_FAILED) TH_LOG("mmap %s: %s", path, strerror(errno));
	EXPECT_EQ(bad_pattern(p, 0, len, 0), -1);
	memset(p + len - 2 * PAGE, mark, PAGE);
	ASSERT_EQ(pwrite(fd, &mark, 1, 0), 1);
	/* Through the page cache the host sees it after msync; with DAX at once. */
	ASSERT_EQ(msync(p, len, MS_SYNC), 0);
	EXPECT_EQ(host_byte(_metadata, hpath, len - 2 * PAGE, PAGE), mark);
	EXPECT_EQ(host_byte(_metadata, hpath, 0, 1), mark);
	EXPECT_EQ(host_byte(_metadata, hpath, len - PAGE, 1), pattern(len - PAGE, 0));
	munmap(p, len);
	close(fd);
}

TEST(inode_flagged_file_is_dax)
{
	ASSERT_TRUE(mounted_with(INODE, "dax=inode")) TH_LOG(INODE " is not mounted dax=inode");
	inode_file(_metadata, "flagged", RANGE, 1, 0xf1);
}

TEST(inode_plain_file_is_not_dax)
{
	ASSERT_TRUE(mounted_with(INODE, "dax=inode")) TH_LOG(INODE " is not mounted dax=inode");
	inode_file(_metadata, "plain", 8 * RANGE, 0, 0xe1);
}

/* The host clears and sets FS_XFLAG_DAX: the guest's inode follows once
 * it is set up again (the kernel drops an inode whose flag changed as soon
 * as nobody uses it; the next lookup brings it back in the new mode). */
static bool wait_dax(const char *path, int want)
{
	struct timespec t = { 0, 200 * 1000 * 1000 };
	int i;

	for (i = 0; i < 50; i++) {
		if (is_dax(path) == want)
			return true;
		nanosleep(&t, NULL);
	}
	return false;
}

TEST(inode_host_flag_change_takes_effect)
{
	char ans[64];

	ASSERT_TRUE(mounted_with(INODE, "dax=inode")) TH_LOG(INODE " is not mounted dax=inode");
	ASSERT_TRUE(wait_dax(INODE "/flagged", 1));
	ASSERT_EQ(host("setdax i/flagged 0", ans, sizeof(ans)), 0);
	ASSERT_STREQ(ans, "ok");
	EXPECT_TRUE(wait_dax(INODE "/flagged", 0)) TH_LOG("still DAX 10 s after chattr -x");
	ASSERT_EQ(host("setdax i/flagged 1", ans, sizeof(ans)), 0);
	ASSERT_STREQ(ans, "ok");
	EXPECT_TRUE(wait_dax(INODE "/flagged", 1)) TH_LOG("not DAX 10 s after chattr +x");
}

TEST_HARNESS_MAIN
