// SPDX-License-Identifier: GPL-2.0
/*
 * holdfast-fdstore with a daemon that is not holdfastd: any program written
 * for systemd's fd store (sd_notify FDSTORE=1 / FDNAME=, LISTEN_FDS on
 * restart) gets its fds back after a crash, without systemd.
 *
 * The daemon is this very binary run with --daemon: it keeps a counter in a
 * memfd it stores under the name "counter", and on every start bumps it and
 * reports it through a pipe the test passes as fd 100 (inherited only by the
 * first daemon; restarts report through a FIFO path instead).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

#define STORE_BIN HF_REPO_ROOT "/build/userspace/holdfast-fdstore"

static const char *store_bin(void)
{
	const char *d = getenv("HOLDFASTD");

	/* The store lives next to holdfastd, wherever that was built. */
	if (d) {
		static char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s", d);
		char *slash = strrchr(path, '/');

		if (slash) {
			strcpy(slash + 1, "holdfast-fdstore");
			return path;
		}
	}
	return STORE_BIN;
}

static int notify(const char *text, int fd)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { (void *)text, strlen(text) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	size_t len;
	int s, r;

	if (!path)
		return -1;
	len = strlen(path);
	memcpy(a.sun_path, path, len);
	if (path[0] == '@')
		a.sun_path[0] = 0;
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		struct cmsghdr *c;

		m.msg_control = cbuf;
		m.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (connect(s, (struct sockaddr *)&a,
		    offsetof(struct sockaddr_un, sun_path) + len) < 0) {
		close(s);
		return -1;
	}
	r = sendmsg(s, &m, 0) < 0 ? -1 : 0;
	close(s);
	return r;
}

/*
 * The daemon.  argv: --daemon REPORT_PATH MODE
 * MODE "serve": store/reuse the counter, READY=1, wait for signals.
 * MODE "die-young": exit 3 before READY (a broken binary).
 */
static int daemon_main(int argc, char **argv)
{
	const char *report = argv[2], *mode = argv[3];
	const char *nfds = getenv("LISTEN_FDS"), *names = getenv("LISTEN_FDNAMES");
	const char *pid = getenv("LISTEN_PID");
	int counter_fd = -1;
	unsigned *counter;
	char line[256];
	int rfd;

	if (!strcmp(mode, "die-young"))
		return 3;
	if (nfds && pid && atoi(pid) == getpid() && names && !strcmp(names, "counter") &&
	    atoi(nfds) == 1)
		counter_fd = 3;
	if (counter_fd < 0) {
		counter_fd = memfd_create("counter", MFD_CLOEXEC);
		if (ftruncate(counter_fd, 4096) < 0)
			return 10;
	}
	counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, counter_fd, 0);
	if (counter == MAP_FAILED)
		return 11;
	(*counter)++;
	if (!nfds && notify("FDSTORE=1\nFDNAME=counter\n", counter_fd) < 0)
		return 12;
	/* A message from us with a bad name must be refused, not stored. */
	if (!nfds)
		notify("FDSTORE=1\nFDNAME=bad:name\n", counter_fd);
	notify("READY=1\n", -1);
	snprintf(line, sizeof(line), "pid=%d counter=%u listen_fds=%s names=%s\n", getpid(),
		 *counter, nfds ? nfds : "-", names ? names : "-");
	rfd = open(report, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (rfd < 0 || write(rfd, line, strlen(line)) < 0)
		return 13;
	close(rfd);
	for (;;)
		pause();
}

/* SIGTERM is a request to stop: a clean exit, as a real daemon does. */
static void on_term(int sig)
{
	_exit(0);
}

static char self[PATH_MAX];

static pid_t start_store(const char *report, const char *mode, const char *extra)
{
	pid_t p = fork();

	if (p == 0) {
		close_range(3, ~0U, 0);
		if (extra)
			execl(store_bin(), store_bin(), extra, "--", self, "--daemon", report,
			      mode, NULL);
		execl(store_bin(), store_bin(), "--", self, "--daemon", report, mode, NULL);
		_exit(127);
	}
	return p;
}

static int count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, c;

	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static pid_t child_of(pid_t parent)
{
	char path[64];
	FILE *f;
	pid_t c = 0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", parent, parent);
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%d", &c) != 1)
			c = 0;
		fclose(f);
	}
	return c;
}

static bool wait_lines(const char *path, int n, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (count_lines(path) >= n)
			return true;
		usleep(10000);
	}
	return false;
}

FIXTURE(store) {
	char dir[64];
	char report[128];
	pid_t store;
};

FIXTURE_SETUP(store)
{
	strcpy(self->dir, "/tmp/holdfast-fdst.XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	snprintf(self->report, sizeof(self->report), "%s/report", self->dir);
	self->store = 0;
}

FIXTURE_TEARDOWN(store)
{
	if (self->store > 0) {
		pid_t c = child_of(self->store);

		kill(self->store, SIGKILL);
		if (c > 0)
			kill(c, SIGKILL);
		waitpid(self->store, NULL, 0);
	}
	unlink(self->report);
	rmdir(self->dir);
}

/* The stored memfd survives kill -9 of the daemon: the counter keeps counting. */
TEST_F_TIMEOUT(store, fds_survive_crashes, 60)
{
	char buf[4096];
	FILE *f;
	int status;

	self->store = start_store(self->report, "serve", NULL);
	ASSERT_TRUE(wait_lines(self->report, 1, 5000));
	for (int k = 2; k <= 6; k++) {
		pid_t c = child_of(self->store);

		ASSERT_GT(c, 0);
		ASSERT_EQ(0, kill(c, SIGKILL));
		ASSERT_TRUE(wait_lines(self->report, k, 5000)) TH_LOG("no restart %d", k);
	}
	f = fopen(self->report, "r");
	ASSERT_NE(NULL, f);
	for (int k = 1; k <= 6; k++) {
		unsigned counter;
		char fds[16], names[64];

		ASSERT_NE(NULL, fgets(buf, sizeof(buf), f));
		ASSERT_EQ(3, sscanf(buf, "pid=%*d counter=%u listen_fds=%15s names=%63s",
				    &counter, fds, names));
		/* One memfd, the same one every time, under its own name only. */
		EXPECT_EQ(k, counter);
		EXPECT_STREQ(k == 1 ? "-" : "1", fds);
		EXPECT_STREQ(k == 1 ? "-" : "counter", names);
	}
	fclose(f);
	/* SIGTERM goes to the daemon; a clean exit ends the store, exit 0. */
	ASSERT_EQ(0, kill(self->store, SIGTERM));
	ASSERT_EQ(self->store, waitpid(self->store, &status, 0));
	self->store = 0;
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* A daemon that never gets to serve is not restarted forever. */
TEST_F_TIMEOUT(store, startup_failure_is_passed_on, 30)
{
	int status;

	self->store = start_store(self->report, "die-young", NULL);
	ASSERT_EQ(self->store, waitpid(self->store, &status, 0));
	self->store = 0;
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(3, WEXITSTATUS(status));
}

/* Bad options are named, with exit status 2. */
TEST(store_bad_options)
{
	int p[2], status;
	char out[512] = "";
	pid_t pid;

	ASSERT_EQ(0, pipe(p));
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 2);
		close_range(3, ~0U, 0);
		execl(store_bin(), store_bin(), "--max-fds", "zero", "--", "/bin/true", NULL);
		_exit(127);
	}
	close(p[1]);
	ASSERT_GT(read(p[0], out, sizeof(out) - 1), 0);
	close(p[0]);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(2, WEXITSTATUS(status));
	EXPECT_NE(NULL, strstr(out, "--max-fds")) TH_LOG("stderr: %s", out);
	EXPECT_NE(NULL, strstr(out, "zero"));
}

/* Another process (not the store's daemon) cannot plant fds in the store. */
TEST_F_TIMEOUT(store, foreign_sender_refused, 30)
{
	char env[8192], sock[128] = "";
	char path[64];
	ssize_t n;
	pid_t c;
	int fd;

	self->store = start_store(self->report, "serve", NULL);
	ASSERT_TRUE(wait_lines(self->report, 1, 5000));
	c = child_of(self->store);
	snprintf(path, sizeof(path), "/proc/%d/environ", c);
	fd = open(path, O_RDONLY);
	ASSERT_GE(fd, 0);
	n = read(fd, env, sizeof(env) - 1);
	close(fd);
	ASSERT_GT(n, 0);
	env[n] = 0;
	for (char *p = env; p < env + n; p += strlen(p) + 1)
		if (!strncmp(p, "NOTIFY_SOCKET=", 14))
			snprintf(sock, sizeof(sock), "%s", p + 14);
	ASSERT_NE(0, sock[0]);
	setenv("NOTIFY_SOCKET", sock, 1);
	/* Our own fd, offered under the daemon's name: must not reach it. */
	fd = memfd_create("intruder", MFD_CLOEXEC);
	ASSERT_EQ(0, notify("FDSTORE=1\nFDNAME=counter\n", fd));
	close(fd);
	unsetenv("NOTIFY_SOCKET");
	usleep(100000);
	ASSERT_EQ(0, kill(child_of(self->store), SIGKILL));
	ASSERT_TRUE(wait_lines(self->report, 2, 5000));
	/* Still exactly one fd named "counter", and it is the daemon's memfd. */
	{
		FILE *f = fopen(self->report, "r");
		char line[512];
		unsigned counter = 0;
		char fds[16] = "", names[64] = "";

		ASSERT_NE(NULL, f);
		ASSERT_NE(NULL, fgets(line, sizeof(line), f));
		ASSERT_NE(NULL, fgets(line, sizeof(line), f));
		fclose(f);
		ASSERT_EQ(3, sscanf(line, "pid=%*d counter=%u listen_fds=%15s names=%63s",
				    &counter, fds, names));
		EXPECT_STREQ("1", fds);
		EXPECT_STREQ("counter", names);
		EXPECT_EQ(2, counter);
	}
}

int main(int argc, char **argv)
{
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n > 0)
		self[n] = 0;
	if (argc == 4 && !strcmp(argv[1], "--daemon")) {
		signal(SIGTERM, on_term);
		return daemon_main(argc, argv);
	}
	return test_harness_run(argc, argv);
}
