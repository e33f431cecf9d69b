// SPDX-License-Identifier: GPL-2.0
/*
 * The shared directory is a jail: nothing done through the mount may touch
 * the host outside --shared-dir.
 *
 * Two things are easy to confuse here.  Symlinks are resolved by the
 * CLIENT's kernel, relative to the client's view: MNT/link -> "../x" is
 * MNT/../x, never SRC/../x, and "/etc" is the client's /etc.  The server's
 * job is to never resolve a name itself in a way that leaves SRC: it has to
 * work on inode handles (O_PATH fds), so a directory swapped for a symlink
 * on the host between LOOKUP and CREATE does not redirect the CREATE.
 *
 * The scratch layout (holdfast_fixture.h) makes the two parents different:
 * SRC = base/srv/src, MNT = base/mnt.  "base/srv/..." is server-side
 * outside (must never change); "base/..." is client-side outside.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

FIXTURE(jail) {
	struct hf h;
	int outside_before;
};

FIXTURE_VARIANT(jail) {
	struct hf_opts o;
};

FIXTURE_VARIANT_ADD(jail, cache_auto) {
	.o = { .cache = "auto" },
};

FIXTURE_VARIANT_ADD(jail, cache_never) {
	.o = { .cache = "never" },
};

#define B(...) hf_b(&self->h, __VA_ARGS__)

static const char *g_src;
static int g_count;

static int count_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	if (!strcmp(path, g_src))
		return FTW_SKIP_SUBTREE;
	g_count++;
	return FTW_CONTINUE;
}

/* Objects under base/srv that are not inside SRC. */
static int count_outside(const struct hf *h)
{
	g_src = h->src;
	g_count = 0;
	nftw(h->srv, count_cb, 16, FTW_PHYS | FTW_ACTIONRETVAL);
	return g_count;
}

FIXTURE_SETUP(jail)
{
	HF_SETUP(&variant->o);
	/* Server-side outside: must stay exactly as it is. */
	ASSERT_EQ(0, hf_write_file(hf_b(&self->h, "srv/SERVER_SIDE_SECRET"), "s", 1, 0600));
	ASSERT_EQ(0, mkdir(hf_b(&self->h, "srv/outside"), 0755));
	ASSERT_EQ(0, hf_write_file(hf_b(&self->h, "srv/outside/server_only"), "s", 1, 0644));
	ASSERT_EQ(0, mkdir(hf_b(&self->h, "srv/escape"), 0777));
	/* Client-side outside: where client-side resolution legitimately goes. */
	ASSERT_EQ(0, mkdir(hf_b(&self->h, "outside"), 0755));
	ASSERT_EQ(0, hf_write_file(hf_b(&self->h, "outside/client_only"), "c", 1, 0644));
	ASSERT_EQ(0, mkdir(hf_b(&self->h, "escape"), 0777));
	self->outside_before = count_outside(&self->h);
}

FIXTURE_TEARDOWN(jail)
{
	/* Whatever the test did, the server side outside SRC is untouched. */
	int after = count_outside(&self->h);

	/* No EXPECT here: after a failed ASSERT its log hook misfires. */
	if (after != self->outside_before) {
		TH_LOG("%d object(s) appeared outside the shared dir on the host",
		       after - self->outside_before);
		_metadata->passed = 0;
	}
	HF_TEARDOWN();
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

TEST_F(jail, dotdot_at_root)
{
	struct stat base, st;
	struct dirent *de;
	bool saw_mnt = false, saw_secret = false, saw_src = false;
	int mfd, pfd;
	DIR *d;

	ASSERT_EQ(0, stat(self->h.base, &base));
	mfd = open(self->h.mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, mfd);

	/* ".." of the mount root is the mount point's parent, client side. */
	pfd = openat(mfd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, pfd);
	ASSERT_EQ(0, fstat(pfd, &st));
	EXPECT_EQ(base.st_ino, st.st_ino);
	EXPECT_EQ(base.st_dev, st.st_dev);

	d = fdopendir(pfd);
	ASSERT_NE(NULL, d);
	while ((de = readdir(d))) {
		saw_mnt |= !strcmp(de->d_name, "mnt");
		saw_src |= !strcmp(de->d_name, "src");
		saw_secret |= !strcmp(de->d_name, "SERVER_SIDE_SECRET");
	}
	closedir(d);
	EXPECT_TRUE(saw_mnt);
	EXPECT_FALSE(saw_src) TH_LOG("'..' of the mount listed the source's parent");
	EXPECT_FALSE(saw_secret);

	/* Through a subdirectory too. */
	ASSERT_EQ(0, mkdir(M("sub"), 0755));
	ASSERT_EQ(0, stat(M("sub/../.."), &st));
	EXPECT_EQ(base.st_ino, st.st_ino);
	ASSERT_EQ(0, fstatat(mfd, "sub/..", &st, 0));
	ASSERT_EQ(0, stat(self->h.src, &base));
	EXPECT_EQ(base.st_mode, st.st_mode);
	/* The secret next to SRC is not reachable as MNT/../ either. */
	EXPECT_EQ(-1, openat(mfd, "../SERVER_SIDE_SECRET", O_RDONLY | O_CLOEXEC));
	EXPECT_EQ(ENOENT, errno);
	close(mfd);
}

TEST_F(jail, symlinks_resolve_on_client)
{
	struct stat a, b;
	char buf[64];
	ssize_t n;

	ASSERT_EQ(0, symlink("../outside", S("up")));
	ASSERT_EQ(0, symlink("/etc", S("abs")));

	/* The target text is passed through untouched... */
	n = readlink(M("up"), buf, sizeof(buf));
	ASSERT_EQ(10, n);
	EXPECT_EQ(0, memcmp(buf, "../outside", 10));
	n = readlink(M("abs"), buf, sizeof(buf));
	ASSERT_EQ(4, n);
	EXPECT_EQ(0, memcmp(buf, "/etc", 4));

	/* ...and resolved relative to MNT, i.e. base/outside. */
	EXPECT_EQ(0, access(M("up/client_only"), F_OK));
	EXPECT_EQ(-1, access(M("up/server_only"), F_OK));
	EXPECT_EQ(ENOENT, errno);

	/* An absolute target is the client's own /etc. */
	ASSERT_EQ(0, stat(M("abs/passwd"), &a));
	ASSERT_EQ(0, stat("/etc/passwd", &b));
	EXPECT_EQ(b.st_ino, a.st_ino);
	EXPECT_EQ(b.st_dev, a.st_dev);

	/* Nothing followed on the server: no LOOKUP "up/..." escaped. */
	EXPECT_FALSE(exists(B("srv/outside/client_only")));
}

TEST_F(jail, create_through_dangling_symlink)
{
	int fd;

	/*
	 * O_CREAT through a dangling symlink creates the target; the client
	 * resolves it, so the file appears client-side (base/made_here),
	 * never server-side (base/srv/made_here).
	 */
	ASSERT_EQ(0, symlink("../made_here", S("dl")));
	fd = open(M("dl"), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	ASSERT_LE(0, fd) TH_LOG("open O_CREAT via dangling link: %m");
	close(fd);
	EXPECT_TRUE(exists(B("made_here")));
	EXPECT_FALSE(exists(B("srv/made_here")));
	unlink(B("made_here"));

	/* O_NOFOLLOW refuses to follow it at all. */
	EXPECT_EQ(-1, open(M("dl"), O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644));
	EXPECT_EQ(ELOOP, errno);
}

/*
 * The kernel holds "d" (a directory fd on the mount); on the host "d" is
 * then renamed away and replaced by a symlink to server-side outside.
 * Operations relative to the held fd carry d's node id: a server that
 * re-resolves "SRC/d" by path follows the symlink and writes outside SRC.
 */
TEST_F(jail, swapped_dir_handle_not_path)
{
	struct stat st;
	int dfd, rfd, fd;

	ASSERT_EQ(0, mkdir(S("d"), 0755));
	ASSERT_EQ(0, hf_write_file(S("victim"), "v", 1, 0644));
	dfd = open(M("d"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, dfd);
	rfd = open(self->h.mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, rfd);
	ASSERT_EQ(0, stat(M("victim"), &st));

	ASSERT_EQ(0, rename(S("d"), S("d_moved")));
	ASSERT_EQ(0, symlink("../escape", S("d")));

	fd = openat(dfd, "newfile", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
	mkdirat(dfd, "newdir", 0755);
	symlinkat("t", dfd, "newlink");
	mknodat(dfd, "newfifo", S_IFIFO | 0644, 0);
	renameat(rfd, "victim", dfd, "renamed");
	linkat(dfd, "newfile", dfd, "hardlink", 0);

	/* Nothing may have reached base/srv/escape. */
	EXPECT_FALSE(exists(B("srv/escape/newfile")));
	EXPECT_FALSE(exists(B("srv/escape/newdir")));
	EXPECT_FALSE(exists(B("srv/escape/newlink")));
	EXPECT_FALSE(exists(B("srv/escape/newfifo")));
	EXPECT_FALSE(exists(B("srv/escape/renamed")));
	EXPECT_FALSE(exists(B("srv/escape/hardlink")));

	/* A handle-based server puts them where the directory went. */
	EXPECT_TRUE(exists(S("d_moved/newfile")));
	EXPECT_TRUE(exists(S("d_moved/newdir")));
	EXPECT_TRUE(exists(S("d_moved/newlink")));
	EXPECT_TRUE(exists(S("d_moved/newfifo")));
	EXPECT_TRUE(exists(S("d_moved/renamed")));
	EXPECT_TRUE(exists(S("d_moved/hardlink")));
	close(dfd);
	close(rfd);
}

TEST_F(jail, swapped_dir_reads)
{
	char buf[8];
	int dfd, fd;

	/* The same swap for reads: no server-side file may be revealed. */
	ASSERT_EQ(0, mkdir(S("d"), 0755));
	ASSERT_EQ(0, hf_write_file(S("d/inside"), "in", 2, 0644));
	dfd = open(M("d"), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, dfd);

	ASSERT_EQ(0, rename(S("d"), S("d_moved")));
	ASSERT_EQ(0, symlink("../outside", S("d")));

	fd = openat(dfd, "server_only", O_RDONLY | O_CLOEXEC);
	EXPECT_EQ(-1, fd) TH_LOG("read a file outside the shared dir");
	EXPECT_EQ(ENOENT, errno);
	if (fd >= 0)
		close(fd);
	fd = openat(dfd, "inside", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_EQ(2, read(fd, buf, sizeof(buf)));
	close(fd);
	close(dfd);
}

TEST_F(jail, long_and_odd_names)
{
	char name[5000];
	int mfd;

	mfd = open(self->h.mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ASSERT_LE(0, mfd);

	/* Over-long names and paths fail cleanly and create nothing. */
	memset(name, 'a', sizeof(name));
	name[300] = 0;
	EXPECT_EQ(-1, openat(mfd, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	EXPECT_EQ(ENAMETOOLONG, errno);
	/* Longer than PATH_MAX: refused before any request is sent. */
	name[300] = 'a';
	name[4999] = 0;
	EXPECT_EQ(-1, openat(mfd, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	EXPECT_EQ(ENAMETOOLONG, errno);

	/*
	 * "a/b" is walked component by component by the client kernel; the
	 * server never sees a '/' in a name.  A missing "a" stops the walk.
	 */
	EXPECT_EQ(-1, openat(mfd, "nodir/b", O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_FALSE(exists(S("nodir")));
	EXPECT_FALSE(exists(S("b")));

	/* Odd but legal bytes in names stay inside SRC, unmangled. */
	ASSERT_EQ(0, mkdirat(mfd, "..x", 0755));
	ASSERT_EQ(0, mkdirat(mfd, "...", 0755));
	ASSERT_EQ(0, mkdirat(mfd, " \t\n\\", 0755));
	ASSERT_EQ(0, mkdirat(mfd, "\xff\xfe", 0755));
	EXPECT_TRUE(exists(S("..x")));
	EXPECT_TRUE(exists(S("...")));
	EXPECT_TRUE(exists(S(" \t\n\\")));
	EXPECT_TRUE(exists(S("\xff\xfe")));
	close(mfd);
}

TEST_HARNESS_MAIN
