// SPDX-License-Identifier: GPL-2.0
/*
 * File locks through holdfastd: GETLK/SETLK/SETLKW (POSIX, OFD) and flock.
 *
 * Conflicts are only visible between different lock owners, so the POSIX
 * tests use a second process and the OFD/flock tests a second open file.
 * Children come from hf_fork_child(): they close every inherited fd and
 * talk to the test over pipes.  Blocking waits are bounded by poll()
 * timeouts, and a child that stays blocked is killed (its SETLKW is
 * interruptible), so a server that never answers fails the test instead of
 * hanging it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

FIXTURE(locks) {
	struct hf h;
	char path[PATH_MAX];
};

FIXTURE_SETUP(locks)
{
	struct hf_opts o = { .cache = "auto" };

	HF_SETUP(&o);
	snprintf(self->path, sizeof(self->path), "%s", M("f"));
	ASSERT_EQ(0, hf_write_file(self->path, "0123456789abcdef", 16, 0666));
}

FIXTURE_TEARDOWN(locks)
{
	HF_TEARDOWN();
}

static int setlk(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = {
		.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len,
	};

	return fcntl(fd, cmd, &fl);
}

static int getlk(int fd, int cmd, short type, off_t start, off_t len, struct flock *out)
{
	*out = (struct flock){
		.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len,
	};
	return fcntl(fd, cmd, out);
}

/* One byte from @fd within @ms, or 0 on timeout/EOF. */
static char wait_byte(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&p, 1, ms) != 1 || read(fd, &c, 1) != 1)
		return 0;
	return c;
}

static void put_byte(int fd, char c)
{
	if (write(fd, &c, 1) != 1)
		_exit(200);
}

/*
 * Child side of posix_cross_process.  fd 3 = to parent, fd 4 = from parent.
 * Exit status: bit n set = check n failed.
 */
static int posix_child(const char *path, pid_t parent)
{
	struct flock fl;
	int bad = 0, fd;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 0x80;
	if (getlk(fd, F_GETLK, F_WRLCK, 0, 100, &fl) ||
	    fl.l_type != F_WRLCK || fl.l_pid != parent ||
	    fl.l_start != 0 || fl.l_len != 100)
		bad |= 1;
	if (setlk(fd, F_SETLK, F_RDLCK, 50, 10) != -1 ||
	    (errno != EAGAIN && errno != EACCES))
		bad |= 2;
	/* Beyond the parent's range: no conflict. */
	if (setlk(fd, F_SETLK, F_WRLCK, 100, 100))
		bad |= 4;
	put_byte(3, 'H');		/* holding [100,200) */
	if (wait_byte(4, 10000) != 'C')	/* parent closed its fd */
		bad |= 8;
	if (setlk(fd, F_SETLK, F_WRLCK, 0, 100))
		bad |= 16;
	return bad;
}

TEST_F(locks, posix_cross_process)
{
	int up[2], down[2], fd, status;
	struct flock fl;
	pid_t pid;

	fd = open(self->path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, setlk(fd, F_SETLK, F_WRLCK, 0, 100)) TH_LOG("F_SETLK: %m");
	/* Our own lock never conflicts with us. */
	ASSERT_EQ(0, getlk(fd, F_GETLK, F_WRLCK, 0, 100, &fl));
	EXPECT_EQ(F_UNLCK, fl.l_type);

	ASSERT_EQ(0, pipe2(up, O_CLOEXEC));
	ASSERT_EQ(0, pipe2(down, O_CLOEXEC));
	{
		int keep[2] = { up[1], down[0] };
		pid_t parent = getpid();

		pid = hf_fork_child(keep, 2);
		ASSERT_LE(0, pid);
		if (pid == 0)
			_exit(posix_child(self->path, parent));
	}
	close(up[1]);
	close(down[0]);

	ASSERT_EQ('H', wait_byte(up[0], 10000));
	/* The child's lock is visible to us, with its pid. */
	ASSERT_EQ(0, getlk(fd, F_GETLK, F_RDLCK, 150, 1, &fl));
	EXPECT_EQ(F_WRLCK, fl.l_type);
	EXPECT_EQ(pid, fl.l_pid);
	EXPECT_EQ(100, fl.l_start);
	EXPECT_EQ(100, fl.l_len);
	EXPECT_EQ(-1, setlk(fd, F_SETLK, F_WRLCK, 199, 1));

	/* Closing the fd drops our POSIX locks (FLUSH with the lock owner). */
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(1, write(down[1], "C", 1));
	status = hf_wait(pid, 10000);
	ASSERT_NE(-1, status);
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("child check bits 0x%x", WEXITSTATUS(status));
	close(up[0]);
	close(down[1]);
}

TEST_F(locks, posix_close_any_fd_releases)
{
	int fd1, fd2, status;
	struct flock fl;
	pid_t pid;

	/*
	 * POSIX: closing *any* fd of a process on a file releases all its
	 * locks on that file.  The kernel sends FLUSH with the lock owner
	 * for the closed fd; a server keeping locks per open file misses it.
	 */
	fd1 = open(self->path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd1);
	ASSERT_EQ(0, setlk(fd1, F_SETLK, F_WRLCK, 0, 0));
	fd2 = open(self->path, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd2);
	ASSERT_EQ(0, close(fd2));

	pid = hf_fork_child(NULL, 0);
	ASSERT_LE(0, pid);
	if (pid == 0) {
		int fd = open(self->path, O_RDWR | O_CLOEXEC);

		if (fd < 0)
			_exit(2);
		if (getlk(fd, F_GETLK, F_WRLCK, 0, 0, &fl))
			_exit(3);
		_exit(fl.l_type == F_UNLCK ? 0 : 1);
	}
	status = hf_wait(pid, 10000);
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("lock still held after closing another fd");
	close(fd1);
}

TEST_F_TIMEOUT(locks, setlkw_blocks_until_unlock, 40)
{
	int up[2], fd, status;
	pid_t pid;

	fd = open(self->path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, setlk(fd, F_SETLK, F_WRLCK, 0, 0));

	ASSERT_EQ(0, pipe2(up, O_CLOEXEC));
	pid = hf_fork_child(&up[1], 1);
	ASSERT_LE(0, pid);
	if (pid == 0) {
		int cfd = open(self->path, O_RDWR | O_CLOEXEC);

		if (cfd < 0)
			_exit(2);
		put_byte(3, 'R');
		if (setlk(cfd, F_SETLKW, F_WRLCK, 0, 0))
			_exit(3);
		put_byte(3, 'L');
		_exit(0);
	}
	close(up[1]);

	ASSERT_EQ('R', wait_byte(up[0], 10000));
	/* Blocked while we hold the lock... */
	EXPECT_EQ(0, wait_byte(up[0], 700)) TH_LOG("SETLKW did not block");
	/* ...and granted promptly once we release it. */
	ASSERT_EQ(0, setlk(fd, F_SETLK, F_UNLCK, 0, 0));
	EXPECT_EQ('L', wait_byte(up[0], 10000)) TH_LOG("SETLKW not granted after unlock");
	status = hf_wait(pid, 5000);
	ASSERT_NE(-1, status);
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(up[0]);
	close(fd);
}

/*
 * More blocked waiters than the server has readers: each wait must not hold
 * a reader, or the unlock that would free them is never read (all in D).
 */
TEST_F_TIMEOUT(locks, more_waiters_than_readers, 60)
{
	enum { WAITERS = 6 };
	int up[2], fd, status;
	pid_t pid[WAITERS];

	fd = open(self->path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, flock(fd, LOCK_EX));
	ASSERT_EQ(0, pipe2(up, O_CLOEXEC));
	for (int i = 0; i < WAITERS; i++) {
		pid[i] = hf_fork_child(&up[1], 1);
		ASSERT_LE(0, pid[i]);
		if (pid[i] == 0) {
			int cfd = open(self->path, O_RDWR | O_CLOEXEC);

			if (cfd < 0)
				_exit(2);
			put_byte(3, 'R');
			if (flock(cfd, LOCK_EX)) /* blocks: a FUSE_SETLKW */
				_exit(3);
			put_byte(3, 'L');
			flock(cfd, LOCK_UN);
			_exit(0);
		}
	}
	close(up[1]);
	for (int i = 0; i < WAITERS; i++)
		ASSERT_EQ('R', wait_byte(up[0], 10000));
	usleep(300000);
	/* The server still reads: a plain stat goes through. */
	struct stat st;
	EXPECT_EQ(0, stat(M("f"), &st));
	ASSERT_EQ(0, flock(fd, LOCK_UN));
	int granted = 0;

	for (int i = 0; i < WAITERS; i++)
		granted += wait_byte(up[0], 10000) == 'L';
	EXPECT_EQ(WAITERS, granted);
	for (int i = 0; i < WAITERS; i++) {
		status = hf_wait(pid[i], 5000);
		EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	close(up[0]);
	close(fd);
}

static void on_usr1(int sig)
{
	(void)sig;
}

TEST_F_TIMEOUT(locks, setlkw_interrupted, 40)
{
	int up[2], fd, status;
	char c;
	pid_t pid;

	fd = open(self->path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, setlk(fd, F_SETLK, F_WRLCK, 0, 0));

	ASSERT_EQ(0, pipe2(up, O_CLOEXEC));
	pid = hf_fork_child(&up[1], 1);
	ASSERT_LE(0, pid);
	if (pid == 0) {
		/* No SA_RESTART: the blocked SETLKW must return EINTR. */
		struct sigaction sa = { .sa_handler = on_usr1 };
		int cfd = open(self->path, O_RDWR | O_CLOEXEC);

		sigaction(SIGUSR1, &sa, NULL);
		if (cfd < 0)
			_exit(2);
		put_byte(3, 'R');
		if (setlk(cfd, F_SETLKW, F_WRLCK, 0, 0) == 0)
			put_byte(3, 'L');
		else
			put_byte(3, errno == EINTR ? 'I' : 'E');
		_exit(0);
	}
	close(up[1]);

	ASSERT_EQ('R', wait_byte(up[0], 10000));
	EXPECT_EQ(0, wait_byte(up[0], 500));
	/*
	 * The kernel turns the signal into a FUSE INTERRUPT for the pending
	 * SETLKW; the server has to answer the lock request with EINTR.
	 */
	kill(pid, SIGUSR1);
	c = wait_byte(up[0], 5000);
	EXPECT_EQ('I', c) TH_LOG("after SIGUSR1 the child reported '%c'", c ? c : '-');
	/* Unblock it regardless, so the child can exit. */
	setlk(fd, F_SETLK, F_UNLCK, 0, 0);
	status = hf_wait(pid, 5000);
	EXPECT_NE(-1, status);
	close(up[0]);
	close(fd);
}

/*
 * Locks the kernel leaves to the server (OFD and flock) are dropped on the
 * last close through RELEASE, which the kernel sends asynchronously: close()
 * can return before the server has processed it.  So the lock must become
 * free, but only "soon"; retry a non-blocking attempt for up to 2 s.
 */
#define SOON(_expr) ({							\
	long long __end = hf_now_ms() + 2000;				\
	int __r;							\
	while ((__r = (_expr)) != 0 && hf_now_ms() < __end)		\
		usleep(10000);						\
	__r;								\
})

TEST_F(locks, ofd)
{
	struct flock fl;
	int fd1, fd2;

	fd1 = open(self->path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd1);
	fd2 = open(self->path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd2);

	/* OFD locks belong to the open file, so two opens conflict. */
	ASSERT_EQ(0, setlk(fd1, F_OFD_SETLK, F_WRLCK, 0, 10)) TH_LOG("F_OFD_SETLK: %m");
	EXPECT_EQ(-1, setlk(fd2, F_OFD_SETLK, F_WRLCK, 5, 10));
	EXPECT_EQ(EAGAIN, errno);
	ASSERT_EQ(0, getlk(fd2, F_OFD_GETLK, F_RDLCK, 0, 1, &fl));
	EXPECT_EQ(F_WRLCK, fl.l_type);
	EXPECT_EQ(-1, fl.l_pid);
	EXPECT_EQ(0, fl.l_start);
	EXPECT_EQ(10, fl.l_len);
	/* Also against a classic POSIX lock of this very process. */
	EXPECT_EQ(-1, setlk(fd2, F_SETLK, F_RDLCK, 0, 1));
	/* Disjoint ranges are fine. */
	EXPECT_EQ(0, setlk(fd2, F_OFD_SETLK, F_WRLCK, 10, 10));

	/* Closing fd1 releases its lock: fd2 gets the range (soon). */
	ASSERT_EQ(0, close(fd1));
	EXPECT_EQ(0, SOON(setlk(fd2, F_OFD_SETLK, F_WRLCK, 0, 10)))
		TH_LOG("OFD lock still held 2 s after its file was closed");
	close(fd2);
}

TEST_F(locks, flock)
{
	int fd1, fd2;

	fd1 = open(self->path, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd1);
	fd2 = open(self->path, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd2);

	ASSERT_EQ(0, flock(fd1, LOCK_EX)) TH_LOG("flock: %m");
	EXPECT_EQ(-1, flock(fd2, LOCK_EX | LOCK_NB));
	EXPECT_EQ(EWOULDBLOCK, errno);
	EXPECT_EQ(-1, flock(fd2, LOCK_SH | LOCK_NB));
	EXPECT_EQ(EWOULDBLOCK, errno);

	ASSERT_EQ(0, flock(fd1, LOCK_UN));
	ASSERT_EQ(0, flock(fd2, LOCK_EX | LOCK_NB));
	EXPECT_EQ(-1, flock(fd1, LOCK_SH | LOCK_NB));
	EXPECT_EQ(EWOULDBLOCK, errno);

	/* Closing the holder releases (soon); shared locks coexist. */
	ASSERT_EQ(0, close(fd2));
	ASSERT_EQ(0, SOON(flock(fd1, LOCK_SH | LOCK_NB)))
		TH_LOG("flock still held 2 s after its file was closed");
	fd2 = open(self->path, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd2);
	EXPECT_EQ(0, flock(fd2, LOCK_SH | LOCK_NB));
	EXPECT_EQ(-1, flock(fd2, LOCK_EX | LOCK_NB));
	EXPECT_EQ(EWOULDBLOCK, errno);
	close(fd1);
	close(fd2);
}

TEST_HARNESS_MAIN
