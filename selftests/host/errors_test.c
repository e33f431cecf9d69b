// SPDX-License-Identifier: GPL-2.0
/*
 * Error paths through holdfastd, and the caller's credentials.
 *
 * The errno values are the host's: a passthrough server must forward them,
 * not invent its own.  Each failing call is also checked for having no side
 * effect on the host.  The credential tests fork a child that becomes uid
 * 65534 (after dropping groups) and check both that host permission checks
 * apply to it and that what it creates is owned by it on the host; that is
 * what "the server performs every operation with the caller's uid/gid/
 * groups" means in practice.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

FIXTURE(errs) {
	struct hf h;
};

/*
 * With cached entries the kernel answers some errors itself (a negative
 * dentry is ENOENT without asking); without, every lookup reaches the
 * server.  Both paths have to give the host's answer.
 */
FIXTURE_VARIANT(errs) {
	struct hf_opts o;
};

FIXTURE_VARIANT_ADD(errs, cache_auto) {
	.o = { .cache = "auto" },
};

FIXTURE_VARIANT_ADD(errs, cache_never) {
	.o = { .cache = "never" },
};

FIXTURE_SETUP(errs)
{
	HF_SETUP(&variant->o);
}

FIXTURE_TEARDOWN(errs)
{
	HF_TEARDOWN();
}

#define EXPECT_ERRNO(_err, _call) do {					\
	errno = 0;							\
	EXPECT_EQ(-1, (long)(_call)) TH_LOG("%s succeeded", #_call);	\
	EXPECT_EQ(_err, errno) TH_LOG("%s: %m", #_call);		\
} while (0)

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

TEST_F(errs, enoent)
{
	char buf[16];
	struct stat st;

	EXPECT_ERRNO(ENOENT, stat(M("nope"), &st));
	EXPECT_ERRNO(ENOENT, open(M("nope"), O_RDONLY | O_CLOEXEC));
	EXPECT_ERRNO(ENOENT, unlink(M("nope")));
	EXPECT_ERRNO(ENOENT, rmdir(M("nope")));
	EXPECT_ERRNO(ENOENT, rename(M("nope"), M("other")));
	EXPECT_ERRNO(ENOENT, readlink(M("nope"), buf, sizeof(buf)));
	EXPECT_ERRNO(ENOENT, chmod(M("nope"), 0600));
	EXPECT_ERRNO(ENOENT, truncate(M("nope"), 0));
	EXPECT_ERRNO(ENOENT, link(M("nope"), M("other")));
	EXPECT_ERRNO(ENOENT, open(M("nodir/f"), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	EXPECT_ERRNO(ENOENT, mkdir(M("nodir/d"), 0755));
	EXPECT_FALSE(exists(S("other")));
	EXPECT_FALSE(exists(S("nodir")));

	/*
	 * Removed on the host behind the kernel's back.  Only without entry
	 * caching must the next lookup notice at once; with caching the
	 * kernel may keep using the (still open-able) inode until the entry
	 * times out.
	 */
	if (!strcmp(variant->o.cache, "never")) {
		ASSERT_EQ(0, hf_write_file(S("gone"), "x", 1, 0644));
		ASSERT_EQ(0, stat(M("gone"), &st));
		ASSERT_EQ(0, unlink(S("gone")));
		EXPECT_ERRNO(ENOENT, open(M("gone"), O_RDONLY | O_CLOEXEC));
		EXPECT_ERRNO(ENOENT, stat(M("gone"), &st));
	}
}

TEST_F(errs, eexist)
{
	struct stat st;

	ASSERT_EQ(0, hf_write_file(S("f"), "x", 1, 0644));
	ASSERT_EQ(0, mkdir(S("d"), 0755));

	EXPECT_ERRNO(EEXIST, mkdir(M("d"), 0755));
	EXPECT_ERRNO(EEXIST, mkdir(M("f"), 0755));
	EXPECT_ERRNO(EEXIST, open(M("f"), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
	EXPECT_ERRNO(EEXIST, symlink("t", M("f")));
	EXPECT_ERRNO(EEXIST, link(M("f"), M("d")));
	EXPECT_ERRNO(EEXIST, mkfifo(M("f"), 0644));
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_TRUE(S_ISREG(st.st_mode));
	EXPECT_EQ(1, st.st_size);

	/*
	 * The kernel has a negative dentry for "late"; the host then makes
	 * it.  The kernel sends MKDIR/CREATE, and only the server (the host)
	 * can say EEXIST.
	 */
	EXPECT_ERRNO(ENOENT, stat(M("late"), &st));
	ASSERT_EQ(0, hf_write_file(S("late"), "host", 4, 0644));
	EXPECT_ERRNO(EEXIST, mkdir(M("late"), 0755));
	ASSERT_EQ(0, lstat(S("late"), &st));
	EXPECT_TRUE(S_ISREG(st.st_mode));
	EXPECT_ERRNO(ENOENT, stat(M("late2"), &st));
	ASSERT_EQ(0, mkdir(S("late2"), 0755));
	EXPECT_ERRNO(EEXIST, open(M("late2"), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
}

TEST_F(errs, enotempty)
{
	struct stat st;

	ASSERT_EQ(0, mkdir(S("full"), 0755));
	ASSERT_EQ(0, hf_write_file(S("full/f"), "x", 1, 0644));
	ASSERT_EQ(0, mkdir(S("empty"), 0755));
	ASSERT_EQ(0, mkdir(S("full2"), 0755));
	ASSERT_EQ(0, hf_write_file(S("full2/g"), "y", 1, 0644));

	EXPECT_ERRNO(ENOTEMPTY, rmdir(M("full")));
	EXPECT_TRUE(exists(S("full/f")));
	/* A directory renamed over a non-empty one. */
	EXPECT_ERRNO(ENOTEMPTY, rename(M("empty"), M("full")));
	EXPECT_ERRNO(ENOTEMPTY, rename(M("full2"), M("full")));
	EXPECT_TRUE(exists(S("full/f")));
	EXPECT_TRUE(exists(S("full2/g")));
	EXPECT_TRUE(exists(S("empty")));
	/* Over an empty one it works. */
	ASSERT_EQ(0, rename(M("full2"), M("empty")));
	ASSERT_EQ(0, stat(S("empty/g"), &st));
}

TEST_F(errs, enotdir_eisdir)
{
	ASSERT_EQ(0, hf_write_file(S("f"), "x", 1, 0644));
	ASSERT_EQ(0, mkdir(S("d"), 0755));

	EXPECT_ERRNO(ENOTDIR, mkdir(M("f/x"), 0755));
	EXPECT_ERRNO(ENOTDIR, open(M("f/"), O_RDONLY | O_CLOEXEC));
	EXPECT_ERRNO(ENOTDIR, rmdir(M("f")));
	EXPECT_ERRNO(ENOTDIR, open(M("f"), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	EXPECT_ERRNO(ENOTDIR, rename(M("d"), M("f")));
	EXPECT_ERRNO(EISDIR, unlink(M("d")));
	EXPECT_ERRNO(EISDIR, open(M("d"), O_WRONLY | O_CLOEXEC));
	EXPECT_ERRNO(EISDIR, rename(M("f"), M("d")));
	EXPECT_TRUE(exists(S("f")));
	EXPECT_TRUE(exists(S("d")));
}

TEST_F(errs, exdev)
{
	const char *outside = hf_b(&self->h, "outside");

	/* A rename/link from the mount to the mount's parent crosses mounts. */
	ASSERT_EQ(0, hf_write_file(S("f"), "x", 1, 0644));
	EXPECT_ERRNO(EXDEV, rename(M("f"), outside));
	EXPECT_ERRNO(EXDEV, link(M("f"), outside));
	EXPECT_FALSE(exists(outside));
	EXPECT_TRUE(exists(S("f")));

	ASSERT_EQ(0, hf_write_file(outside, "o", 1, 0644));
	EXPECT_ERRNO(EXDEV, rename(outside, M("in")));
	EXPECT_FALSE(exists(S("in")));
	EXPECT_ERRNO(EXDEV, renameat2(AT_FDCWD, M("f"), AT_FDCWD, outside, RENAME_EXCHANGE));
}

TEST_F(errs, enametoolong)
{
	char name[300];

	memset(name, 'n', sizeof(name));
	name[255] = 0;
	/* NAME_MAX is fine... */
	ASSERT_EQ(0, hf_write_file(M("%s", name), "x", 1, 0644)) TH_LOG("255-byte name: %m");
	EXPECT_TRUE(exists(S("%s", name)));
	/* ...one more is the host's ENAMETOOLONG, for every operation. */
	name[255] = 'n';
	name[256] = 0;
	EXPECT_ERRNO(ENAMETOOLONG, open(M("%s", name), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	EXPECT_ERRNO(ENAMETOOLONG, mkdir(M("%s", name), 0755));
	EXPECT_ERRNO(ENAMETOOLONG, symlink("x", M("%s", name)));
	name[255] = 0;
	EXPECT_ERRNO(ENAMETOOLONG, rename(M("%s", name), M("%sX", name)));
	EXPECT_TRUE(exists(S("%s", name)));
}

struct paths {
	char p[8][PATH_MAX];
};

static int nobody_denied(void *arg)
{
	struct paths *pp = arg;
	char buf[16];
	int bad = 0;

	/* bit n = check n went wrong */
	if (open(pp->p[0], O_RDONLY | O_CLOEXEC) != -1 || errno != EACCES)
		bad |= 1;
	if (open(pp->p[0], O_WRONLY | O_CLOEXEC) != -1 || errno != EACCES)
		bad |= 2;
	if (open(pp->p[1], O_CREAT | O_WRONLY | O_CLOEXEC, 0644) != -1 || errno != EACCES)
		bad |= 4;
	if (unlink(pp->p[0]) != -1 || errno != EACCES)
		bad |= 8;
	if (mkdir(pp->p[2], 0755) != -1 || errno != EACCES)
		bad |= 16;
	/* The public file is readable. */
	if (hf_read_file(pp->p[3], buf, sizeof(buf)) != 6)
		bad |= 32;
	/* chmod of someone else's file: EPERM. */
	if (chmod(pp->p[3], 0777) != -1 || errno != EPERM)
		bad |= 64;
	return bad;
}

TEST_F(errs, eacces_nonroot)
{
	struct paths pp;
	struct stat st;
	int r;

	ASSERT_EQ(0, hf_write_file(S("secret"), "secret", 6, 0600));
	ASSERT_EQ(0, hf_write_file(S("public"), "public", 6, 0644));
	snprintf(pp.p[0], PATH_MAX, "%s", M("secret"));
	snprintf(pp.p[1], PATH_MAX, "%s", M("newfile"));
	snprintf(pp.p[2], PATH_MAX, "%s", M("newdir"));
	snprintf(pp.p[3], PATH_MAX, "%s", M("public"));

	r = hf_run_child(HF_NOBODY, HF_NOBODY, nobody_denied, &pp, 10000);
	EXPECT_EQ(0, r) TH_LOG("failed checks (bits): 0x%x", r);
	EXPECT_FALSE(exists(S("newfile")));
	EXPECT_FALSE(exists(S("newdir")));
	ASSERT_EQ(0, stat(S("public"), &st));
	EXPECT_EQ(0644, st.st_mode & 07777);
	EXPECT_TRUE(exists(S("secret")));
}

static int nobody_creates(void *arg)
{
	struct paths *pp = arg;
	int fd;

	fd = open(pp->p[0], O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0640);
	if (fd < 0)
		return 1;
	if (write(fd, "mine", 4) != 4)
		return 2;
	close(fd);
	if (mkdir(pp->p[1], 0750))
		return 3;
	if (symlink("file", pp->p[2]))
		return 4;
	if (mkfifo(pp->p[3], 0600))
		return 5;
	/* Our own file: chmod and truncate are allowed. */
	if (chmod(pp->p[0], 0604) || truncate(pp->p[0], 2))
		return 6;
	return 0;
}

TEST_F(errs, nonroot_creates_own_files)
{
	const char *names[] = { "file", "dir", "link", "fifo" };
	struct paths pp;
	struct stat st;
	int i, r;

	ASSERT_EQ(0, mkdir(S("nb"), 0755));
	ASSERT_EQ(0, chown(S("nb"), HF_NOBODY, HF_NOBODY));
	for (i = 0; i < 4; i++)
		snprintf(pp.p[i], PATH_MAX, "%s", M("nb/%s", names[i]));

	r = hf_run_child(HF_NOBODY, HF_NOBODY, nobody_creates, &pp, 10000);
	ASSERT_EQ(0, r) TH_LOG("step %d failed in the uid %d child", r, HF_NOBODY);
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(0, lstat(S("nb/%s", names[i]), &st)) TH_LOG("%s", names[i]);
		EXPECT_EQ(HF_NOBODY, st.st_uid) TH_LOG("owner of %s", names[i]);
		EXPECT_EQ(HF_NOBODY, st.st_gid) TH_LOG("group of %s", names[i]);
	}
	ASSERT_EQ(0, stat(S("nb/file"), &st));
	EXPECT_EQ(0604, st.st_mode & 07777);
	EXPECT_EQ(2, st.st_size);
	ASSERT_EQ(0, stat(S("nb/dir"), &st));
	EXPECT_EQ(0750, st.st_mode & 07777);
}

TEST_F(errs, supplementary_groups)
{
	int status, pass;
	struct stat st;
	pid_t pid;

	/* Writable only through group 4242, which nobody is not in... */
	ASSERT_EQ(0, mkdir(S("g"), 0770));
	ASSERT_EQ(0, chown(S("g"), 0, 4242));
	ASSERT_EQ(0, chmod(S("g"), 0770));

	/* ...unless 4242 is one of its supplementary groups. */
	for (pass = 0; pass < 2; pass++) {
		gid_t groups[1] = { 4242 };

		pid = hf_fork_child(NULL, 0);
		ASSERT_LE(0, pid);
		if (pid == 0) {
			int fd;

			if (setgroups(pass, groups) || setgid(HF_NOBODY) || setuid(HF_NOBODY))
				_exit(10);
			fd = open(M("g/f%d", pass), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
			if (fd >= 0)
				_exit(0);
			_exit(errno == EACCES ? 1 : 2);
		}
		status = hf_wait(pid, 10000);
		ASSERT_TRUE(WIFEXITED(status));
		EXPECT_EQ(pass ? 0 : 1, WEXITSTATUS(status))
			TH_LOG("groups %s: exit %d", pass ? "{4242}" : "{}", WEXITSTATUS(status));
	}
	EXPECT_FALSE(exists(S("g/f0")));
	ASSERT_EQ(0, stat(S("g/f1"), &st));
	EXPECT_EQ(HF_NOBODY, st.st_uid);
}

/*
 * Root and nobody create files at the same time.  The server switches
 * credentials per request; done with glibc's setresuid() (which changes
 * every thread) instead of per-thread syscalls, one worker's identity
 * leaks into another's request and files get the wrong owner.
 */
TEST_F_TIMEOUT(errs, concurrent_credentials, 90)
{
	const int per_child = 300;
	int status[2], c, i;
	pid_t pid[2];
	struct stat st;

	ASSERT_EQ(0, mkdir(S("root"), 0755));
	ASSERT_EQ(0, mkdir(S("nb"), 0755));
	ASSERT_EQ(0, chown(S("nb"), HF_NOBODY, HF_NOBODY));

	for (c = 0; c < 2; c++) {
		pid[c] = hf_fork_child(NULL, 0);
		ASSERT_LE(0, pid[c]);
		if (pid[c] == 0) {
			const char *dir = c ? "nb" : "root";

			if (c && (setgroups(0, NULL) || setgid(HF_NOBODY) || setuid(HF_NOBODY)))
				_exit(10);
			for (i = 0; i < per_child; i++) {
				int fd = open(M("%s/f%04d", dir, i),
					      O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);

				if (fd < 0)
					_exit(11);
				close(fd);
				if (mkdir(M("%s/d%04d", dir, i), 0755))
					_exit(12);
			}
			_exit(0);
		}
	}
	for (c = 0; c < 2; c++) {
		status[c] = hf_wait(pid[c], 60000);
		ASSERT_TRUE(WIFEXITED(status[c]));
		EXPECT_EQ(0, WEXITSTATUS(status[c])) TH_LOG("child %d exit %d", c,
							    WEXITSTATUS(status[c]));
	}

	for (c = 0; c < 2; c++) {
		int wrong = 0;
		uid_t want = c ? HF_NOBODY : 0;

		for (i = 0; i < per_child; i++) {
			if (lstat(S("%s/f%04d", c ? "nb" : "root", i), &st) ||
			    st.st_uid != want || st.st_gid != want)
				wrong++;
			if (lstat(S("%s/d%04d", c ? "nb" : "root", i), &st) ||
			    st.st_uid != want || st.st_gid != want)
				wrong++;
		}
		EXPECT_EQ(0, wrong) TH_LOG("%d objects with the wrong owner in %s", wrong,
					   c ? "nb" : "root");
	}
}

/* --readonly: every modification is EROFS, reads still work. */
FIXTURE(ro) {
	struct hf h;
};

FIXTURE_SETUP(ro)
{
	struct hf_opts o = { .readonly = true };

	HF_SETUP(&o);
	ASSERT_EQ(0, hf_write_file(S("f"), "data", 4, 0644));
	ASSERT_EQ(0, mkdir(S("d"), 0755));
}

FIXTURE_TEARDOWN(ro)
{
	HF_TEARDOWN();
}

TEST_F(ro, erofs)
{
	struct timespec ts[2] = { { 1, 0 }, { 1, 0 } };
	char buf[8];
	struct stat st;

	ASSERT_EQ(4, hf_read_file(M("f"), buf, sizeof(buf)));
	EXPECT_EQ(0, memcmp(buf, "data", 4));

	EXPECT_ERRNO(EROFS, open(M("f"), O_WRONLY | O_CLOEXEC));
	EXPECT_ERRNO(EROFS, open(M("f"), O_RDWR | O_CLOEXEC));
	EXPECT_ERRNO(EROFS, open(M("new"), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
	EXPECT_ERRNO(EROFS, mkdir(M("nd"), 0755));
	EXPECT_ERRNO(EROFS, unlink(M("f")));
	EXPECT_ERRNO(EROFS, rmdir(M("d")));
	EXPECT_ERRNO(EROFS, rename(M("f"), M("g")));
	EXPECT_ERRNO(EROFS, chmod(M("f"), 0600));
	EXPECT_ERRNO(EROFS, chown(M("f"), 1, 1));
	EXPECT_ERRNO(EROFS, truncate(M("f"), 0));
	EXPECT_ERRNO(EROFS, symlink("x", M("l")));
	EXPECT_ERRNO(EROFS, link(M("f"), M("h")));
	EXPECT_ERRNO(EROFS, mkfifo(M("p"), 0644));
	EXPECT_ERRNO(EROFS, utimensat(AT_FDCWD, M("f"), ts, 0));

	/* The host is untouched. */
	ASSERT_EQ(0, stat(S("f"), &st));
	EXPECT_EQ(4, st.st_size);
	EXPECT_EQ(0644, st.st_mode & 07777);
	EXPECT_NE(1, st.st_mtim.tv_sec);
	EXPECT_FALSE(exists(S("new")));
	EXPECT_FALSE(exists(S("nd")));
	EXPECT_FALSE(exists(S("l")));
	EXPECT_TRUE(exists(S("d")));
}

TEST_HARNESS_MAIN
