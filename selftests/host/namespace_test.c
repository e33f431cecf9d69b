// SPDX-License-Identifier: GPL-2.0
/*
 * Namespace and attribute operations through holdfastd: LOOKUP, GETATTR,
 * SETATTR, SYMLINK/READLINK, MKNOD, MKDIR/RMDIR, UNLINK, RENAME/RENAME2,
 * LINK, CREATE/OPEN and TMPFILE.  Every operation done through the mount is
 * checked on the host (source) side, and host-made objects are checked
 * through the mount, so a server that answers from its own idea of the
 * tree instead of the host's is caught.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

FIXTURE(ns) {
	struct hf h;
};

HF_CACHE_VARIANTS(ns);

FIXTURE_SETUP(ns)
{
	HF_SETUP(&variant->o);
}

FIXTURE_TEARDOWN(ns)
{
	HF_TEARDOWN();
}

/* Entries other than "." and "..", or -1. */
static int count_entries(const char *path)
{
	struct dirent *de;
	int n = 0;
	DIR *d;

	d = opendir(path);
	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void expect_same_stat(struct __test_metadata *_metadata, const char *mnt_path,
			     const char *src_path)
{
	struct stat m, s;

	ASSERT_EQ(0, lstat(mnt_path, &m)) TH_LOG("lstat %s: %m", mnt_path);
	ASSERT_EQ(0, lstat(src_path, &s)) TH_LOG("lstat %s: %m", src_path);
	EXPECT_EQ(s.st_mode, m.st_mode) TH_LOG("%s mode", mnt_path);
	EXPECT_EQ(s.st_uid, m.st_uid) TH_LOG("%s uid", mnt_path);
	EXPECT_EQ(s.st_gid, m.st_gid) TH_LOG("%s gid", mnt_path);
	EXPECT_EQ(s.st_nlink, m.st_nlink) TH_LOG("%s nlink", mnt_path);
	EXPECT_EQ(s.st_size, m.st_size) TH_LOG("%s size", mnt_path);
	EXPECT_EQ(s.st_rdev, m.st_rdev) TH_LOG("%s rdev", mnt_path);
	EXPECT_EQ(s.st_mtim.tv_sec, m.st_mtim.tv_sec) TH_LOG("%s mtime", mnt_path);
	EXPECT_EQ(s.st_mtim.tv_nsec, m.st_mtim.tv_nsec) TH_LOG("%s mtime ns", mnt_path);
}

TEST_F(ns, lookup_stat)
{
	struct stat st;

	/*
	 * The root of the mount is the source directory.  Compared before the
	 * host changes it: in the caching modes the kernel may keep serving
	 * the root's attributes from its cache for a while.
	 */
	expect_same_stat(_metadata, self->h.mnt, self->h.src);

	/* Objects made on the host first; the mount has never seen them. */
	ASSERT_EQ(0, hf_write_file(S("f"), "hello", 5, 0640));
	ASSERT_EQ(0, chown(S("f"), 1000, 1001));
	ASSERT_EQ(0, mkdir(S("d"), 0711));
	ASSERT_EQ(0, mkdir(S("d/e"), 0755));
	ASSERT_EQ(0, hf_write_file(S("d/e/deep"), "0123456789", 10, 0600));
	ASSERT_EQ(0, symlink("f", S("sl")));

	expect_same_stat(_metadata, M("f"), S("f"));
	expect_same_stat(_metadata, M("d"), S("d"));
	expect_same_stat(_metadata, M("d/e/deep"), S("d/e/deep"));
	expect_same_stat(_metadata, M("sl"), S("sl"));

	/* stat() follows the symlink to "f" inside the mount. */
	ASSERT_EQ(0, stat(M("sl"), &st));
	EXPECT_EQ(5, st.st_size);
	EXPECT_TRUE(S_ISREG(st.st_mode));

	ASSERT_EQ(-1, stat(M("d/e/missing"), &st));
	EXPECT_EQ(ENOENT, errno);
}

TEST_F(ns, chmod)
{
	struct stat st;
	int fd;

	fd = open(M("f"), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_LE(0, fd);

	ASSERT_EQ(0, chmod(M("f"), 0754));
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_EQ(0754, st.st_mode & 07777);

	/* fchmod goes through the open handle rather than a path. */
	ASSERT_EQ(0, fchmod(fd, 04711));
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_EQ(04711, st.st_mode & 07777);
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(04711, st.st_mode & 07777);
	close(fd);

	ASSERT_EQ(0, mkdir(M("d"), 0700));
	ASSERT_EQ(0, chmod(M("d"), 01777));
	ASSERT_EQ(0, stat(S("d"), &st));
	EXPECT_EQ(01777, st.st_mode & 07777);
	EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST_F(ns, chown)
{
	struct stat st;
	int fd;

	ASSERT_EQ(0, hf_write_file(M("f"), "x", 1, 0644));
	ASSERT_EQ(0, chown(M("f"), 1000, 1001));
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_EQ(1000, st.st_uid);
	EXPECT_EQ(1001, st.st_gid);

	/* -1 leaves that id alone. */
	ASSERT_EQ(0, chown(M("f"), -1, 2000));
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_EQ(1000, st.st_uid);
	EXPECT_EQ(2000, st.st_gid);

	fd = open(M("f"), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fchown(fd, 3000, 3001));
	close(fd);
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_EQ(3000, st.st_uid);
	EXPECT_EQ(3001, st.st_gid);

	/* lchown must change the link itself, not its target. */
	ASSERT_EQ(0, symlink("f", M("l")));
	ASSERT_EQ(0, lchown(M("l"), 4000, 4001));
	ASSERT_EQ(0, lstat(S("l"), &st));
	EXPECT_EQ(4000, st.st_uid);
	EXPECT_EQ(4001, st.st_gid);
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_EQ(3000, st.st_uid);
}

TEST_F(ns, truncate)
{
	static char buf[200000], back[200000];
	struct stat st;
	ssize_t n;
	int fd, i;

	hf_fill(buf, 100000, 7, 0);
	ASSERT_EQ(0, hf_write_file(M("f"), buf, 100000, 0644));

	/* Grow: the new tail reads as zeros, the old data stays. */
	ASSERT_EQ(0, truncate(M("f"), 200000));
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_EQ(200000, st.st_size);
	n = hf_read_file(S("f"), back, sizeof(back));
	ASSERT_EQ(200000, n);
	EXPECT_EQ(-1, hf_check(back, 100000, 7, 0));
	for (i = 100000; i < 200000; i++)
		if (back[i])
			break;
	EXPECT_EQ(200000, i) TH_LOG("non-zero byte at %d after growing", i);

	/* Shrink, then read back through the mount as well. */
	ASSERT_EQ(0, truncate(M("f"), 5000));
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_EQ(5000, st.st_size);
	n = hf_read_file(M("f"), back, sizeof(back));
	ASSERT_EQ(5000, n);
	EXPECT_EQ(-1, hf_check(back, 5000, 7, 0));

	/* ftruncate on a handle, to zero. */
	fd = open(M("f"), O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ftruncate(fd, 0));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(0, st.st_size);
	close(fd);
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_EQ(0, st.st_size);
}

/*
 * "Now" as the backing filesystem stamps it. time(NULL) and the kernel's
 * inode clock can disagree by more than a second on a loaded machine (seen
 * in CI: a UTIME_NOW stamp 2 s past the time(NULL) taken after it), and in
 * a guest the stamp may come from either side's clock (the host's, or the
 * guest kernel's with a writeback cache): bounds take the wider of the two.
 */
static time_t fs_now(const char *stamp)
{
	struct stat st;
	int fd = open(stamp, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return (time_t)-1;
	if (futimens(fd, NULL) || fstat(fd, &st))
		st.st_mtim.tv_sec = (time_t)-1;
	close(fd);
	return st.st_mtim.tv_sec;
}

TEST_F(ns, utimens)
{
	struct timespec ts[2] = {
		{ .tv_sec = 1000000000, .tv_nsec = 123456789 },
		{ .tv_sec = 1100000000, .tv_nsec = 987654321 },
	};
	struct stat st;
	time_t before, after;
	int fd;

	ASSERT_EQ(0, hf_write_file(M("f"), "x", 1, 0644));
	ASSERT_EQ(0, utimensat(AT_FDCWD, M("f"), ts, 0));
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_EQ(1000000000, st.st_atim.tv_sec);
	EXPECT_EQ(123456789, st.st_atim.tv_nsec);
	EXPECT_EQ(1100000000, st.st_mtim.tv_sec);
	EXPECT_EQ(987654321, st.st_mtim.tv_nsec);

	/* atime := now, mtime untouched. */
	ts[0].tv_nsec = UTIME_NOW;
	ts[1].tv_nsec = UTIME_OMIT;
	before = fs_now(S("stamp"));
	ASSERT_NE((time_t)-1, before);
	if (time(NULL) < before)
		before = time(NULL);
	ASSERT_EQ(0, utimensat(AT_FDCWD, M("f"), ts, 0));
	after = fs_now(S("stamp"));
	ASSERT_NE((time_t)-1, after);
	if (time(NULL) > after)
		after = time(NULL);
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_LE(before - 1, st.st_atim.tv_sec);
	EXPECT_GE(after + 1, st.st_atim.tv_sec);
	EXPECT_EQ(1100000000, st.st_mtim.tv_sec);
	EXPECT_EQ(987654321, st.st_mtim.tv_nsec);

	/* The other way round, on a handle (futimens). */
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_nsec = UTIME_NOW;
	fd = open(M("f"), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, futimens(fd, ts));
	close(fd);
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_LE(before - 1, st.st_atim.tv_sec);
	EXPECT_LE(before - 1, st.st_mtim.tv_sec);
	after = fs_now(S("stamp"));
	if (time(NULL) > after)
		after = time(NULL);
	EXPECT_GE(after + 1, st.st_mtim.tv_sec);

	/*
	 * A symlink's own times (AT_SYMLINK_NOFOLLOW): a server that reopens
	 * the inode by path or follows the link would change "f" instead.
	 */
	ASSERT_EQ(0, symlink("f", M("l")));
	ts[0] = (struct timespec){ .tv_sec = 1200000000, .tv_nsec = 5 };
	ts[1] = (struct timespec){ .tv_sec = 1300000000, .tv_nsec = 6 };
	ASSERT_EQ(0, utimensat(AT_FDCWD, M("l"), ts, AT_SYMLINK_NOFOLLOW));
	ASSERT_EQ(0, lstat(S("l"), &st));
	EXPECT_EQ(1300000000, st.st_mtim.tv_sec);
	EXPECT_EQ(6, st.st_mtim.tv_nsec);
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_NE(1300000000, st.st_mtim.tv_sec);
}

TEST_F(ns, symlink_readlink)
{
	char target[1200], buf[4096];
	struct stat st;
	ssize_t n;

	/* Made through the mount: the host sees the exact target bytes. */
	ASSERT_EQ(0, symlink("a/../b/./c", M("rel")));
	n = readlink(S("rel"), buf, sizeof(buf));
	ASSERT_EQ(10, n);
	EXPECT_EQ(0, memcmp(buf, "a/../b/./c", 10));
	ASSERT_EQ(0, lstat(M("rel"), &st));
	EXPECT_TRUE(S_ISLNK(st.st_mode));
	EXPECT_EQ(10, st.st_size);

	/* Made on the host: the mount returns it unchanged, not resolved. */
	ASSERT_EQ(0, symlink("/nonexistent/abs", S("abs")));
	n = readlink(M("abs"), buf, sizeof(buf));
	ASSERT_EQ(16, n);
	EXPECT_EQ(0, memcmp(buf, "/nonexistent/abs", 16));

	/* A long target survives the round trip. */
	memset(target, 'x', sizeof(target) - 1);
	for (n = 50; n < (ssize_t)sizeof(target) - 1; n += 51)
		target[n] = '/';
	target[sizeof(target) - 1] = 0;
	ASSERT_EQ(0, symlink(target, M("long")));
	n = readlink(S("long"), buf, sizeof(buf));
	ASSERT_EQ((ssize_t)strlen(target), n);
	EXPECT_EQ(0, memcmp(buf, target, n));
	n = readlink(M("long"), buf, sizeof(buf));
	ASSERT_EQ((ssize_t)strlen(target), n);
	EXPECT_EQ(0, memcmp(buf, target, n));

	/* readlink on a non-link is EINVAL. */
	ASSERT_EQ(0, hf_write_file(M("f"), "", 0, 0644));
	EXPECT_EQ(-1, readlink(M("f"), buf, sizeof(buf)));
	EXPECT_EQ(EINVAL, errno);
}

TEST_F(ns, mknod)
{
	struct stat st, mst;

	ASSERT_EQ(0, mkfifo(M("fifo"), 0640));
	ASSERT_EQ(0, lstat(S("fifo"), &st));
	EXPECT_TRUE(S_ISFIFO(st.st_mode));
	EXPECT_EQ(0640, st.st_mode & 07777);

	ASSERT_EQ(0, mknod(M("reg"), S_IFREG | 0604, 0));
	ASSERT_EQ(0, lstat(S("reg"), &st));
	EXPECT_TRUE(S_ISREG(st.st_mode));
	EXPECT_EQ(0604, st.st_mode & 07777);
	EXPECT_EQ(0, st.st_size);

	/* A device node needs CAP_MKNOD in the server's credentials too. */
	ASSERT_EQ(0, mknod(M("null"), S_IFCHR | 0600, makedev(1, 3)));
	ASSERT_EQ(0, lstat(S("null"), &st));
	EXPECT_TRUE(S_ISCHR(st.st_mode));
	EXPECT_EQ(makedev(1, 3), st.st_rdev);
	ASSERT_EQ(0, lstat(M("null"), &mst));
	EXPECT_TRUE(S_ISCHR(mst.st_mode));
	EXPECT_EQ(makedev(1, 3), mst.st_rdev);
}

TEST_F(ns, mkdir_rmdir)
{
	struct stat st;

	ASSERT_EQ(0, mkdir(M("a"), 0750));
	ASSERT_EQ(0, mkdir(M("a/b"), 0705));
	ASSERT_EQ(0, stat(S("a"), &st));
	EXPECT_TRUE(S_ISDIR(st.st_mode));
	EXPECT_EQ(0750, st.st_mode & 07777);
	EXPECT_EQ(3, st.st_nlink);
	ASSERT_EQ(0, stat(S("a/b"), &st));
	EXPECT_EQ(0705, st.st_mode & 07777);

	ASSERT_EQ(0, rmdir(M("a/b")));
	EXPECT_EQ(-1, stat(S("a/b"), &st));
	EXPECT_EQ(ENOENT, errno);
	ASSERT_EQ(0, rmdir(M("a")));
	EXPECT_EQ(-1, stat(S("a"), &st));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(-1, stat(M("a"), &st));
	EXPECT_EQ(ENOENT, errno);

	/*
	 * Host semantics apply: a directory made in a setgid directory
	 * inherits its group and the setgid bit.
	 */
	ASSERT_EQ(0, mkdir(S("g"), 02775));
	ASSERT_EQ(0, chown(S("g"), 0, 1234));
	ASSERT_EQ(0, chmod(S("g"), 02775));
	ASSERT_EQ(0, mkdir(M("g/sub"), 0755));
	ASSERT_EQ(0, stat(S("g/sub"), &st));
	EXPECT_EQ(1234, st.st_gid);
	EXPECT_TRUE(st.st_mode & S_ISGID);
}

TEST_F(ns, unlink)
{
	char buf[16];
	struct stat st;
	int fd;

	ASSERT_EQ(0, hf_write_file(S("u"), "gone", 4, 0644));
	ASSERT_EQ(0, stat(M("u"), &st));
	ASSERT_EQ(0, unlink(M("u")));
	EXPECT_EQ(-1, lstat(S("u"), &st));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(-1, stat(M("u"), &st));
	EXPECT_EQ(ENOENT, errno);

	/* An unlinked but open file keeps working through its handle. */
	ASSERT_EQ(0, hf_write_file(M("o"), "still here", 10, 0644));
	fd = open(M("o"), O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, unlink(M("o")));
	EXPECT_EQ(-1, lstat(S("o"), &st));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(0, st.st_nlink);
	ASSERT_EQ(10, pread(fd, buf, sizeof(buf), 0));
	EXPECT_EQ(0, memcmp(buf, "still here", 10));
	ASSERT_EQ(3, pwrite(fd, "new", 3, 0));
	ASSERT_EQ(10, pread(fd, buf, sizeof(buf), 0));
	EXPECT_EQ(0, memcmp(buf, "newll here", 10));
	close(fd);

	/* Unlinking a symlink removes the link, not the target. */
	ASSERT_EQ(0, hf_write_file(S("t"), "t", 1, 0644));
	ASSERT_EQ(0, symlink("t", S("lt")));
	ASSERT_EQ(0, unlink(M("lt")));
	EXPECT_EQ(-1, lstat(S("lt"), &st));
	EXPECT_EQ(0, stat(S("t"), &st));
}

TEST_F(ns, rename)
{
	char buf[8];
	struct stat st;

	ASSERT_EQ(0, mkdir(S("d"), 0755));
	ASSERT_EQ(0, hf_write_file(S("a"), "A", 1, 0644));
	ASSERT_EQ(0, stat(M("a"), &st));	/* cached in the kernel */
	ASSERT_EQ(0, rename(M("a"), M("d/b")));
	EXPECT_EQ(-1, lstat(S("a"), &st));
	EXPECT_EQ(ENOENT, errno);
	ASSERT_EQ(1, hf_read_file(S("d/b"), buf, sizeof(buf)));
	EXPECT_EQ('A', buf[0]);
	EXPECT_EQ(-1, stat(M("a"), &st));
	ASSERT_EQ(1, hf_read_file(M("d/b"), buf, sizeof(buf)));
	EXPECT_EQ('A', buf[0]);

	/* Over an existing file: the target is replaced atomically. */
	ASSERT_EQ(0, hf_write_file(S("x"), "XX", 2, 0644));
	ASSERT_EQ(0, hf_write_file(S("y"), "YYY", 3, 0644));
	ASSERT_EQ(3, hf_read_file(M("y"), buf, sizeof(buf)));
	ASSERT_EQ(0, rename(M("x"), M("y")));
	ASSERT_EQ(2, hf_read_file(S("y"), buf, sizeof(buf)));
	EXPECT_EQ(0, memcmp(buf, "XX", 2));
	EXPECT_EQ(-1, lstat(S("x"), &st));
	ASSERT_EQ(2, hf_read_file(M("y"), buf, sizeof(buf)));
	EXPECT_EQ(0, memcmp(buf, "XX", 2));

	/* A whole directory moves with its contents. */
	ASSERT_EQ(0, mkdir(M("d2"), 0755));
	ASSERT_EQ(0, rename(M("d"), M("d2/moved")));
	ASSERT_EQ(1, hf_read_file(S("d2/moved/b"), buf, sizeof(buf)));
	ASSERT_EQ(1, hf_read_file(M("d2/moved/b"), buf, sizeof(buf)));
	EXPECT_EQ(-1, lstat(S("d"), &st));
}

TEST_F(ns, rename_noreplace)
{
	char buf[8];
	struct stat st;

	ASSERT_EQ(0, hf_write_file(M("x"), "X", 1, 0644));
	ASSERT_EQ(0, hf_write_file(M("y"), "Y", 1, 0644));
	EXPECT_EQ(-1, renameat2(AT_FDCWD, M("x"), AT_FDCWD, M("y"), RENAME_NOREPLACE));
	EXPECT_EQ(EEXIST, errno);
	ASSERT_EQ(1, hf_read_file(S("x"), buf, sizeof(buf)));
	EXPECT_EQ('X', buf[0]);
	ASSERT_EQ(1, hf_read_file(S("y"), buf, sizeof(buf)));
	EXPECT_EQ('Y', buf[0]);

	/*
	 * The kernel's dcache knows "y" exists; make one it does not know
	 * about, so the server's own check has to refuse.
	 */
	EXPECT_EQ(-1, stat(M("z"), &st));
	ASSERT_EQ(0, hf_write_file(S("z"), "Z", 1, 0644));
	EXPECT_EQ(-1, renameat2(AT_FDCWD, M("x"), AT_FDCWD, M("z"), RENAME_NOREPLACE))
		TH_LOG("RENAME_NOREPLACE replaced a file that existed on the host");
	EXPECT_EQ(EEXIST, errno);
	ASSERT_EQ(1, hf_read_file(S("z"), buf, sizeof(buf)));
	EXPECT_EQ('Z', buf[0]);

	ASSERT_EQ(0, renameat2(AT_FDCWD, M("x"), AT_FDCWD, M("new"), RENAME_NOREPLACE));
	EXPECT_EQ(-1, lstat(S("x"), &st));
	ASSERT_EQ(1, hf_read_file(S("new"), buf, sizeof(buf)));
	EXPECT_EQ('X', buf[0]);
}

TEST_F(ns, rename_exchange)
{
	char buf[8];
	struct stat st;

	ASSERT_EQ(0, hf_write_file(M("p"), "P", 1, 0644));
	ASSERT_EQ(0, hf_write_file(M("q"), "QQ", 2, 0644));
	ASSERT_EQ(0, renameat2(AT_FDCWD, M("p"), AT_FDCWD, M("q"), RENAME_EXCHANGE));
	ASSERT_EQ(2, hf_read_file(S("p"), buf, sizeof(buf)));
	EXPECT_EQ(0, memcmp(buf, "QQ", 2));
	ASSERT_EQ(1, hf_read_file(S("q"), buf, sizeof(buf)));
	EXPECT_EQ('P', buf[0]);
	/* And the kernel's view agrees with the host's. */
	ASSERT_EQ(2, hf_read_file(M("p"), buf, sizeof(buf)));
	EXPECT_EQ(0, memcmp(buf, "QQ", 2));

	/* File <-> directory. */
	ASSERT_EQ(0, mkdir(M("dd"), 0700));
	ASSERT_EQ(0, hf_write_file(M("dd/inner"), "i", 1, 0644));
	ASSERT_EQ(0, renameat2(AT_FDCWD, M("p"), AT_FDCWD, M("dd"), RENAME_EXCHANGE));
	ASSERT_EQ(0, lstat(S("p"), &st));
	EXPECT_TRUE(S_ISDIR(st.st_mode));
	ASSERT_EQ(0, lstat(S("p/inner"), &st));
	ASSERT_EQ(0, lstat(S("dd"), &st));
	EXPECT_TRUE(S_ISREG(st.st_mode));
	ASSERT_EQ(0, lstat(M("p/inner"), &st));

	/* Exchange needs both to exist. */
	EXPECT_EQ(-1, renameat2(AT_FDCWD, M("q"), AT_FDCWD, M("nope"), RENAME_EXCHANGE));
	EXPECT_EQ(ENOENT, errno);
}

TEST_F(ns, link)
{
	struct stat s1, s2, m1, m2;
	char buf[8];
	int fd;

	ASSERT_EQ(0, hf_write_file(M("f"), "one", 3, 0644));
	ASSERT_EQ(0, link(M("f"), M("g")));
	ASSERT_EQ(0, stat(S("f"), &s1));
	ASSERT_EQ(0, stat(S("g"), &s2));
	EXPECT_EQ(s1.st_ino, s2.st_ino);
	EXPECT_EQ(2, s1.st_nlink);

	/* Through the mount both names are one inode with two links. */
	ASSERT_EQ(0, stat(M("f"), &m1));
	ASSERT_EQ(0, stat(M("g"), &m2));
	EXPECT_EQ(m1.st_ino, m2.st_ino);
	EXPECT_EQ(2, m1.st_nlink);
	EXPECT_EQ(2, m2.st_nlink);

	/* Data written through one name is read through the other. */
	fd = open(M("g"), O_WRONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(3, pwrite(fd, "two", 3, 0));
	close(fd);
	ASSERT_EQ(3, hf_read_file(M("f"), buf, sizeof(buf)));
	EXPECT_EQ(0, memcmp(buf, "two", 3));

	ASSERT_EQ(0, unlink(M("f")));
	ASSERT_EQ(0, stat(M("g"), &m2));
	EXPECT_EQ(1, m2.st_nlink);
	ASSERT_EQ(0, stat(S("g"), &s2));
	EXPECT_EQ(1, s2.st_nlink);
}

TEST_F(ns, open_create_trunc_excl)
{
	char buf[8];
	struct stat st;
	int fd;

	fd = open(M("n"), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0604);
	ASSERT_LE(0, fd);
	ASSERT_EQ(4, write(fd, "data", 4));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, stat(S("n"), &st));
	EXPECT_TRUE(S_ISREG(st.st_mode));
	EXPECT_EQ(0604, st.st_mode & 07777);
	EXPECT_EQ(4, st.st_size);
	EXPECT_EQ(0, st.st_uid);

	EXPECT_EQ(-1, open(M("n"), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600));
	EXPECT_EQ(EEXIST, errno);

	/* O_CREAT without O_EXCL opens the existing file and keeps the data. */
	fd = open(M("n"), O_CREAT | O_RDONLY | O_CLOEXEC, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ(4, read(fd, buf, sizeof(buf)));
	close(fd);
	ASSERT_EQ(0, stat(S("n"), &st));
	EXPECT_EQ(0604, st.st_mode & 07777);

	/* O_TRUNC empties it on the host. */
	fd = open(M("n"), O_WRONLY | O_TRUNC | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, stat(S("n"), &st));
	EXPECT_EQ(0, st.st_size);
	ASSERT_EQ(2, write(fd, "ab", 2));
	close(fd);
	ASSERT_EQ(2, hf_read_file(S("n"), buf, sizeof(buf)));

	/* O_CREAT | O_EXCL on a dangling symlink must not follow it. */
	ASSERT_EQ(0, symlink("dangling-target", S("dl")));
	EXPECT_EQ(-1, open(M("dl"), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(-1, lstat(S("dangling-target"), &st));
}

TEST_F(ns, tmpfile_linkat)
{
	char proc[64], buf[8];
	struct stat st;
	int fd;

	ASSERT_EQ(0, mkdir(M("d"), 0755));
	fd = open(M("d"), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_LE(0, fd) TH_LOG("open(O_TMPFILE) through the mount: %m");
	ASSERT_EQ(3, write(fd, "tmp", 3));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(0, st.st_nlink);
	EXPECT_EQ(0600, st.st_mode & 07777);

	/* Nameless until linked: the host dir is still empty. */
	ASSERT_EQ(0, stat(S("d"), &st));
	EXPECT_EQ(2, st.st_nlink);
	EXPECT_EQ(0, count_entries(S("d")));

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ASSERT_EQ(0, linkat(AT_FDCWD, proc, AT_FDCWD, M("d/linked"), AT_SYMLINK_FOLLOW))
		TH_LOG("linkat(%s): %m", proc);
	ASSERT_EQ(0, stat(S("d/linked"), &st));
	EXPECT_EQ(1, st.st_nlink);
	EXPECT_EQ(0600, st.st_mode & 07777);
	EXPECT_EQ(1, count_entries(S("d")));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ(1, st.st_nlink);
	/* With the writeback cache the data reaches the host on close. */
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(3, hf_read_file(S("d/linked"), buf, sizeof(buf)));
	EXPECT_EQ(0, memcmp(buf, "tmp", 3));
	ASSERT_EQ(3, hf_read_file(M("d/linked"), buf, sizeof(buf)));
}

TEST_F(ns, statx)
{
	struct statx m, h;

	ASSERT_EQ(0, hf_write_file(S("f"), "statx data", 10, 0640));
	ASSERT_EQ(0, chown(S("f"), 1000, 1001));

	ASSERT_EQ(0, statx(AT_FDCWD, M("f"), AT_STATX_SYNC_AS_STAT,
			   STATX_BASIC_STATS | STATX_BTIME, &m)) TH_LOG("statx: %m");
	ASSERT_EQ(0, statx(AT_FDCWD, S("f"), AT_STATX_SYNC_AS_STAT,
			   STATX_BASIC_STATS | STATX_BTIME, &h));
	EXPECT_EQ(STATX_BASIC_STATS, m.stx_mask & STATX_BASIC_STATS);
	EXPECT_EQ(h.stx_mode, m.stx_mode);
	EXPECT_EQ(h.stx_uid, m.stx_uid);
	EXPECT_EQ(h.stx_gid, m.stx_gid);
	EXPECT_EQ(h.stx_size, m.stx_size);
	EXPECT_EQ(h.stx_nlink, m.stx_nlink);
	EXPECT_EQ(h.stx_blocks, m.stx_blocks);
	EXPECT_EQ(h.stx_mtime.tv_sec, m.stx_mtime.tv_sec);
	EXPECT_EQ(h.stx_mtime.tv_nsec, m.stx_mtime.tv_nsec);
	EXPECT_EQ(h.stx_ctime.tv_sec, m.stx_ctime.tv_sec);
	/* Birth time is optional, but if claimed it must be the host's. */
	if (m.stx_mask & STATX_BTIME) {
		EXPECT_EQ(h.stx_btime.tv_sec, m.stx_btime.tv_sec);
		EXPECT_EQ(h.stx_btime.tv_nsec, m.stx_btime.tv_nsec);
	}

	/* FORCE_SYNC asks the server again; NOFOLLOW stats the link. */
	ASSERT_EQ(0, symlink("f", S("l")));
	ASSERT_EQ(0, statx(AT_FDCWD, M("l"), AT_SYMLINK_NOFOLLOW | AT_STATX_FORCE_SYNC,
			   STATX_BASIC_STATS, &m));
	EXPECT_TRUE(S_ISLNK(m.stx_mode));
	EXPECT_EQ(1, m.stx_size);
	ASSERT_EQ(0, statx(AT_FDCWD, M("l"), AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, &m));
	EXPECT_TRUE(S_ISREG(m.stx_mode));
	EXPECT_EQ(10, m.stx_size);
}

TEST_F(ns, statfs)
{
	struct statfs m, h;

	ASSERT_EQ(0, statfs(self->h.mnt, &m)) TH_LOG("statfs: %m");
	ASSERT_EQ(0, statfs(self->h.src, &h));
	/* A FUSE mount reporting the host filesystem's geometry. */
	EXPECT_EQ(0x65735546, m.f_type);
	EXPECT_EQ((unsigned long long)h.f_blocks * h.f_frsize,
		  (unsigned long long)m.f_blocks * m.f_frsize);
	EXPECT_EQ(h.f_files, m.f_files);
	EXPECT_EQ(h.f_namelen, m.f_namelen);
	/* Free space moves with other activity; only sanity-check it. */
	EXPECT_GE(m.f_blocks, m.f_bfree);
	EXPECT_GE(m.f_bfree, m.f_bavail);
	EXPECT_LT(0, m.f_bfree);
}

static int nobody_access(void *arg)
{
	const char **p = arg;
	int bad = 0;

	/* Bit n set = check n went wrong; 0 means all as expected. */
	if (access(p[0], R_OK) != 0)
		bad |= 1;
	if (access(p[0], W_OK) != -1 || errno != EACCES)
		bad |= 2;
	if (access(p[1], R_OK) != -1 || errno != EACCES)
		bad |= 4;
	if (faccessat(AT_FDCWD, p[2], R_OK | W_OK, AT_EACCESS) != 0)
		bad |= 8;
	return bad;
}

TEST_F(ns, access)
{
	const char *paths[3];

	ASSERT_EQ(0, hf_write_file(S("r644"), "", 0, 0644));
	ASSERT_EQ(0, hf_write_file(S("r600"), "", 0, 0600));
	ASSERT_EQ(0, hf_write_file(S("r000"), "", 0, 0));
	ASSERT_EQ(0, hf_write_file(S("x744"), "", 0, 0744));
	ASSERT_EQ(0, hf_write_file(S("mine"), "", 0, 0600));
	ASSERT_EQ(0, chown(S("mine"), HF_NOBODY, HF_NOBODY));

	/* Root passes read/write checks regardless of mode... */
	EXPECT_EQ(0, access(M("r000"), R_OK | W_OK));
	EXPECT_EQ(0, faccessat(AT_FDCWD, M("r000"), R_OK | W_OK, AT_EACCESS));
	/* ...but X_OK needs at least one execute bit. */
	EXPECT_EQ(-1, access(M("r644"), X_OK));
	EXPECT_EQ(EACCES, errno);
	EXPECT_EQ(0, access(M("x744"), X_OK));
	EXPECT_EQ(-1, access(M("missing"), F_OK));
	EXPECT_EQ(ENOENT, errno);

	/* An unprivileged caller gets the host's permission checks. */
	paths[0] = strdup(M("r644"));
	paths[1] = strdup(M("r600"));
	paths[2] = strdup(M("mine"));
	EXPECT_EQ(0, hf_run_child(HF_NOBODY, HF_NOBODY, nobody_access, paths, 10000));
}

TEST_HARNESS_MAIN
