// SPDX-License-Identifier: GPL-2.0
/*
 * Directory reading through holdfastd: OPENDIR, READDIR, READDIRPLUS,
 * RELEASEDIR and FSYNCDIR.
 *
 * The listings are compared with the host's own listing of the source
 * directory, name for name, and resumption is checked with raw getdents64
 * and d_off cookies: the design keeps the host's d_off values so a listing
 * can continue across buffer boundaries (and restarts) without losing or
 * repeating entries.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

FIXTURE(dir) {
	struct hf h;
};

HF_CACHE_VARIANTS(dir);

FIXTURE_SETUP(dir)
{
	HF_SETUP(&variant->o);
}

FIXTURE_TEARDOWN(dir)
{
	HF_TEARDOWN();
}

struct entry {
	char name[256];
	unsigned char type;
	long long off;		/* d_off: the cookie to continue after this entry */
};

struct listing {
	struct entry *e;
	int n, cap;
};

static void add(struct listing *l, const char *name, unsigned char type, long long off)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->e = realloc(l->e, l->cap * sizeof(*l->e));
		if (!l->e)
			abort();
	}
	snprintf(l->e[l->n].name, sizeof(l->e[l->n].name), "%s", name);
	l->e[l->n].type = type;
	l->e[l->n].off = off;
	l->n++;
}

static bool is_dot(const char *name)
{
	return !strcmp(name, ".") || !strcmp(name, "..");
}

/*
 * "." and ".." are checked on their own (dot_entries); the bulk
 * comparisons leave them out so a missing dot does not hide real losses.
 */
static int drop_dots(struct listing *l)
{
	int i, j, dropped = 0;

	for (i = j = 0; i < l->n; i++) {
		if (is_dot(l->e[i].name)) {
			dropped++;
			continue;
		}
		l->e[j++] = l->e[i];
	}
	l->n = j;
	return dropped;
}

struct linux_dirent64 {
	unsigned long long d_ino;
	long long d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/*
 * One getdents64 call into a @size byte buffer, appended to @l.
 * Returns the number of entries read, 0 at the end, -1 on error.
 */
static int getdents_once(int fd, size_t size, struct listing *l)
{
	char buf[65536];
	long n, pos;
	int count = 0;

	if (size > sizeof(buf))
		size = sizeof(buf);
	n = syscall(SYS_getdents64, fd, buf, size);
	if (n < 0)
		return -1;
	for (pos = 0; pos < n; count++) {
		struct linux_dirent64 *d = (void *)(buf + pos);

		add(l, d->d_name, d->d_type, d->d_off);
		pos += d->d_reclen;
	}
	return count;
}

static int read_all(int fd, size_t size, struct listing *l)
{
	int r;

	while ((r = getdents_once(fd, size, l)) > 0)
		;
	return r;
}

static int list_path(const char *path, struct listing *l)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return -1;
	r = read_all(fd, 32768, l);
	close(fd);
	return r;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

/*
 * Sorted name lists must be identical; returns the index of the first
 * difference or -1.  Also reports duplicates via *dup.
 */
static int compare_sets(struct listing *a, struct listing *b, int *dup)
{
	int i;

	qsort(a->e, a->n, sizeof(*a->e), cmp_name);
	qsort(b->e, b->n, sizeof(*b->e), cmp_name);
	*dup = -1;
	for (i = 1; i < a->n; i++)
		if (!strcmp(a->e[i - 1].name, a->e[i].name)) {
			*dup = i;
			break;
		}
	for (i = 0; i < a->n && i < b->n; i++)
		if (strcmp(a->e[i].name, b->e[i].name))
			return i;
	return a->n == b->n ? -1 : i;
}

static int make_files(const char *dir, int count, const char *fmt)
{
	char name[64];
	int dfd, fd, i;

	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	for (i = 0; i < count; i++) {
		snprintf(name, sizeof(name), fmt, i);
		fd = openat(dfd, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
		if (fd < 0) {
			close(dfd);
			return -1;
		}
		close(fd);
	}
	close(dfd);
	return 0;
}

TEST_F_TIMEOUT(dir, readdir_10k, 120)
{
	struct listing host = { 0 }, mnt = { 0 };
	int diff, dup;

	ASSERT_EQ(0, mkdir(S("big"), 0755));
	ASSERT_EQ(0, make_files(S("big"), 10000, "entry-%05d"));

	ASSERT_EQ(0, list_path(S("big"), &host));
	drop_dots(&host);
	ASSERT_EQ(10000, host.n);
	ASSERT_EQ(0, list_path(M("big"), &mnt)) TH_LOG("getdents64: %m");
	drop_dots(&mnt);
	EXPECT_EQ(10000, mnt.n);

	diff = compare_sets(&mnt, &host, &dup);
	EXPECT_EQ(-1, dup) TH_LOG("duplicate entry %s", mnt.e[dup].name);
	EXPECT_EQ(-1, diff) TH_LOG("first difference: mount \"%s\" host \"%s\"",
				   diff < mnt.n ? mnt.e[diff].name : "(end)",
				   diff < host.n ? host.e[diff].name : "(end)");

	/* libc's readdir() (a different buffer size) sees the same count. */
	{
		struct dirent *de;
		DIR *d = opendir(M("big"));
		int n = 0;

		ASSERT_NE(NULL, d);
		while ((de = readdir(d)))
			if (!is_dot(de->d_name))
				n++;
		closedir(d);
		EXPECT_EQ(10000, n);
	}
	free(host.e);
	free(mnt.e);
}

TEST_F(dir, dot_entries)
{
	struct listing l = { 0 };
	int i, dot = 0, dotdot = 0;
	struct stat st;

	/* The host lists "." and ".." once each; so must a passthrough. */
	ASSERT_EQ(0, mkdir(S("d"), 0755));
	ASSERT_EQ(0, hf_write_file(S("d/f"), "", 0, 0644));
	ASSERT_EQ(0, list_path(M("d"), &l));
	for (i = 0; i < l.n; i++) {
		if (!strcmp(l.e[i].name, ".")) {
			dot++;
			EXPECT_EQ(DT_DIR, l.e[i].type);
		} else if (!strcmp(l.e[i].name, "..")) {
			dotdot++;
			EXPECT_EQ(DT_DIR, l.e[i].type);
		}
	}
	EXPECT_EQ(1, dot);
	EXPECT_EQ(1, dotdot);
	EXPECT_EQ(3, l.n);
	free(l.e);

	/* And the root of the mount too. */
	memset(&l, 0, sizeof(l));
	ASSERT_EQ(0, list_path(self->h.mnt, &l));
	EXPECT_EQ(2, drop_dots(&l));
	EXPECT_EQ(1, l.n);
	free(l.e);
	ASSERT_EQ(0, stat(M("d/.."), &st));
}

/* How the type of the i-th object in the readdirplus test is chosen. */
static unsigned char kind_of(int i)
{
	if (i % 10 == 3)
		return DT_DIR;
	if (i % 7 == 5)
		return DT_LNK;
	if (i % 13 == 11)
		return DT_FIFO;
	return DT_REG;
}

TEST_F_TIMEOUT(dir, readdirplus_types_attrs, 60)
{
	struct listing mnt = { 0 };
	char name[64], buf[600];
	int dfd, i, seen = 0;

	/* Mixed types, each regular file a distinct size. */
	ASSERT_EQ(0, mkdir(S("mix"), 0755));
	memset(buf, 'x', sizeof(buf));
	for (i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "mix/o%03d", i);
		switch (kind_of(i)) {
		case DT_DIR:
			ASSERT_EQ(0, mkdir(S("%s", name), 0700 + (i % 8)));
			break;
		case DT_LNK:
			ASSERT_EQ(0, symlink(name + 4, S("%s", name)));
			break;
		case DT_FIFO:
			ASSERT_EQ(0, mkfifo(S("%s", name), 0600));
			break;
		default:
			ASSERT_EQ(0, hf_write_file(S("%s", name), buf, i, 0600 + (i % 64)));
		}
	}

	/* The "ls -l" pattern: getdents then a stat of each entry. */
	dfd = open(M("mix"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, dfd);
	ASSERT_EQ(0, read_all(dfd, 8192, &mnt));
	for (i = 0; i < mnt.n; i++) {
		struct entry *e = &mnt.e[i];
		struct stat ms, hs;
		int idx;

		if (is_dot(e->name))
			continue;
		ASSERT_EQ(1, sscanf(e->name, "o%d", &idx)) TH_LOG("stray entry %s", e->name);
		seen++;
		EXPECT_EQ(kind_of(idx), e->type) TH_LOG("d_type of %s", e->name);
		ASSERT_EQ(0, fstatat(dfd, e->name, &ms, AT_SYMLINK_NOFOLLOW));
		ASSERT_EQ(0, lstat(S("mix/%s", e->name), &hs));
		EXPECT_EQ(hs.st_mode, ms.st_mode) TH_LOG("mode of %s", e->name);
		EXPECT_EQ(hs.st_size, ms.st_size) TH_LOG("size of %s", e->name);
		EXPECT_EQ(hs.st_nlink, ms.st_nlink) TH_LOG("nlink of %s", e->name);
		EXPECT_EQ(hs.st_uid, ms.st_uid) TH_LOG("uid of %s", e->name);
	}
	EXPECT_EQ(500, seen);
	close(dfd);
	free(mnt.e);
}

TEST_F_TIMEOUT(dir, readdir_resume, 60)
{
	struct listing first = { 0 }, again = { 0 }, tail = { 0 }, host = { 0 };
	char name[300];
	int fd, fd2, diff, dup, i, k;

	/* Names of varying length so buffer boundaries fall unevenly. */
	ASSERT_EQ(0, mkdir(S("r"), 0755));
	for (i = 0; i < 2000; i++) {
		int len = 1 + (i * 37) % 200;

		snprintf(name, sizeof(name), "%04d-", i);
		memset(name + 5, 'a' + i % 26, len);
		name[5 + len] = 0;
		ASSERT_EQ(0, hf_write_file(S("r/%s", name), NULL, 0, 0644));
	}

	/* Part of the directory with a small buffer, then the rest. */
	fd = open(M("r"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_LT(0, getdents_once(fd, 1024, &first));
	ASSERT_LT(first.n, 2000);
	ASSERT_EQ(0, read_all(fd, 4096, &first));
	EXPECT_EQ(2000, first.n - (int)(is_dot(first.e[0].name) + is_dot(first.e[1].name)));

	/* The same fd rewound lists the same entries in the same order. */
	ASSERT_EQ(0, lseek(fd, 0, SEEK_SET));
	ASSERT_EQ(0, read_all(fd, 65536, &again));
	ASSERT_EQ(first.n, again.n);
	for (i = 0; i < first.n; i++)
		if (strcmp(first.e[i].name, again.e[i].name))
			break;
	EXPECT_EQ(first.n, i) TH_LOG("order differs after rewind at %d", i);

	/*
	 * A cookie taken from one open directory continues the listing in
	 * another: the entries after entry k, exactly.
	 */
	k = 777;
	fd2 = open(M("r"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, fd2);
	ASSERT_EQ(first.e[k].off, lseek(fd2, first.e[k].off, SEEK_SET));
	ASSERT_EQ(0, read_all(fd2, 2048, &tail));
	EXPECT_EQ(first.n - k - 1, tail.n);
	for (i = 0; i < tail.n && k + 1 + i < first.n; i++)
		if (strcmp(tail.e[i].name, first.e[k + 1 + i].name))
			break;
	EXPECT_EQ(tail.n, i) TH_LOG("resumed listing differs at %d", i);
	close(fd2);
	close(fd);

	/* Nothing lost or doubled in the split read. */
	ASSERT_EQ(0, list_path(S("r"), &host));
	drop_dots(&host);
	drop_dots(&first);
	diff = compare_sets(&first, &host, &dup);
	EXPECT_EQ(-1, dup) TH_LOG("duplicate %s", first.e[dup].name);
	EXPECT_EQ(-1, diff);
	free(first.e);
	free(again.e);
	free(tail.e);
	free(host.e);
}

TEST_F(dir, listing_follows_changes)
{
	struct listing host = { 0 }, mnt = { 0 };
	int diff, dup, i;

	/* Made and half removed through the mount, then compared. */
	ASSERT_EQ(0, mkdir(M("c"), 0755));
	ASSERT_EQ(0, make_files(M("c"), 100, "n%03d"));
	for (i = 0; i < 100; i += 2)
		ASSERT_EQ(0, unlink(M("c/n%03d", i)));
	ASSERT_EQ(0, mkdir(M("c/sub"), 0755));

	ASSERT_EQ(0, list_path(M("c"), &mnt));
	ASSERT_EQ(0, list_path(S("c"), &host));
	drop_dots(&mnt);
	drop_dots(&host);
	EXPECT_EQ(51, host.n);
	diff = compare_sets(&mnt, &host, &dup);
	EXPECT_EQ(-1, dup);
	EXPECT_EQ(-1, diff) TH_LOG("first difference at %d", diff);
	free(host.e);
	free(mnt.e);
}

TEST_F(dir, fsyncdir)
{
	struct listing l = { 0 };
	int dfd;

	ASSERT_EQ(0, mkdir(M("d"), 0755));
	dfd = open(M("d"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, dfd);
	ASSERT_EQ(0, hf_write_file(M("d/f"), "x", 1, 0644));
	EXPECT_EQ(0, fsync(dfd)) TH_LOG("fsync(dir): %m");
	EXPECT_EQ(0, fdatasync(dfd)) TH_LOG("fdatasync(dir): %m");
	/* The handle stays usable for reading after FSYNCDIR. */
	ASSERT_EQ(0, read_all(dfd, 4096, &l));
	drop_dots(&l);
	ASSERT_EQ(1, l.n);
	EXPECT_STREQ("f", l.e[0].name);
	close(dfd);
	free(l.e);

	/* Directories can not be opened for writing. */
	EXPECT_EQ(-1, open(M("d"), O_WRONLY | O_CLOEXEC));
	EXPECT_EQ(EISDIR, errno);
}

TEST_HARNESS_MAIN
