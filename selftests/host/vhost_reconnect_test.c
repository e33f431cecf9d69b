// SPDX-License-Identifier: GPL-2.0
/*
 * holdfastd as a vhost-user back-end outlives its front-end and itself:
 * after a front-end disconnects it serves the next one (--reconnect), and
 * after a kill -9 the fd store restarts it on the same listening socket.
 *
 * The front-end here is the smallest one that proves a server answers:
 * VHOST_USER_GET_FEATURES and its reply.  Guest I/O across a re-plug is the
 * VM suite's (selftests/guest/reconnect_test.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

#define VHOST_USER_GET_FEATURES 1
#define VHOST_USER_VERSION 0x1
#define VHOST_F_VERSION_1 (1ull << 32)

static const char *holdfastd_bin(void)
{
	const char *b = getenv("HOLDFASTD");

	return b ? b : HF_REPO_ROOT "/build/userspace/holdfastd";
}

/* Connects to @path; -1 if nobody listens. */
static int fe_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 5 };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (s >= 0)
			close(s);
		return -1;
	}
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return s;
}

/* GET_FEATURES on @s; the features, or 0 if there was no proper reply. */
static uint64_t fe_features(int s)
{
	uint32_t req[3] = { VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, 0 };
	uint32_t hdr[3];
	uint64_t f = 0;

	if (write(s, req, sizeof(req)) != sizeof(req))
		return 0;
	if (recv(s, hdr, sizeof(hdr), MSG_WAITALL) != sizeof(hdr) ||
	    hdr[0] != VHOST_USER_GET_FEATURES || hdr[2] != sizeof(f))
		return 0;
	if (recv(s, &f, sizeof(f), MSG_WAITALL) != sizeof(f))
		return 0;
	return f;
}

/* One front-end's whole life: connect, GET_FEATURES, disconnect. */
static uint64_t fe_once(const char *path)
{
	int s = fe_connect(path);
	uint64_t f;

	if (s < 0)
		return 0;
	f = fe_features(s);
	close(s);
	return f;
}

/* The server under the fd store @pid; 0 or -1 while there is none or two. */
static pid_t child_of(pid_t pid)
{
	struct hf h = { .pid = pid };

	return hf_server_child(&h);
}

static int count_in_file(const char *path, const char *needle)
{
	char buf[65536];
	ssize_t n = hf_read_file(path, buf, sizeof(buf) - 1);
	int c = 0;
	char *p;

	if (n <= 0)
		return 0;
	buf[n] = 0;
	for (p = buf; (p = strstr(p, needle)); p += strlen(needle))
		c++;
	return c;
}

FIXTURE(vhost)
{
	char dir[64];
	char share[128];
	char sock[128];
	char log[128];
	pid_t pid;
};

FIXTURE_SETUP(vhost)
{
	snprintf(self->dir, sizeof(self->dir), "/tmp/hf-vhost.XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	snprintf(self->share, sizeof(self->share), "%s/share", self->dir);
	snprintf(self->sock, sizeof(self->sock), "%s/fs.sock", self->dir);
	snprintf(self->log, sizeof(self->log), "%s/holdfastd.log", self->dir);
	ASSERT_EQ(0, mkdir(self->share, 0755));
	self->pid = 0;
}

FIXTURE_TEARDOWN(vhost)
{
	if (self->pid > 0 && hf_pid_alive(self->pid)) {
		kill(self->pid, SIGTERM);
		hf_wait(self->pid, 5000);
	}
	if (!_metadata->passed || getenv("HOLDFAST_SHOW_LOG")) {
		char buf[16384];
		ssize_t n = hf_read_file(self->log, buf, sizeof(buf) - 1);

		if (n > 0) {
			buf[n] = 0;
			fprintf(stderr, "# holdfastd log:\n%s", buf);
		}
	}
	hf_rm_rf(self->dir);
}

/* Starts holdfastd on the fixture's socket with @extra options (NULL-ended). */
static pid_t start(FIXTURE_DATA(vhost) * self, const char *const *extra)
{
	const char *argv[32];
	int n = 0, i;
	pid_t pid;

	argv[n++] = holdfastd_bin();
	argv[n++] = "--shared-dir";
	argv[n++] = self->share;
	argv[n++] = "--socket-path";
	argv[n++] = self->sock;
	/* The namespace sandbox needs root; the logic under test does not. */
	if (geteuid() != 0) {
		argv[n++] = "--sandbox";
		argv[n++] = "none";
	}
	for (i = 0; extra[i] && n < 30; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	pid = fork();
	if (pid == 0) {
		int fd = open(self->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], (char **)argv);
		_exit(127);
	}
	for (i = 0; i < 200; i++) {
		struct stat st;

		if (stat(self->sock, &st) == 0 && S_ISSOCK(st.st_mode))
			break;
		usleep(25000);
	}
	self->pid = pid;
	return pid;
}

TEST_F_TIMEOUT(vhost, disconnect_then_next_front_end, 60)
{
	const char *opts[] = { "--recovery", "off", "--reconnect", NULL };
	struct stat st;
	int i, status;

	start(self, opts);
	for (i = 0; i < 5; i++) {
		uint64_t f = fe_once(self->sock);

		ASSERT_NE(0, f & VHOST_F_VERSION_1)
			TH_LOG("front-end %d got no GET_FEATURES reply", i + 1);
		ASSERT_TRUE(hf_pid_alive(self->pid));
	}
	/* The server logs the last disconnect after we closed. */
	for (i = 0; i < 200 && count_in_file(self->log, "front-end disconnected") < 5; i++)
		usleep(10000);
	ASSERT_EQ(5, count_in_file(self->log, "front-end disconnected"));
	kill(self->pid, SIGTERM);
	status = hf_wait(self->pid, 5000);
	self->pid = 0;
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	/* A clean stop removes the socket. */
	ASSERT_NE(0, stat(self->sock, &st));
}

TEST_F_TIMEOUT(vhost, silent_front_end_does_not_block_the_next, 60)
{
	const char *opts[] = { "--recovery", "off", "--reconnect", NULL };
	int silent;

	start(self, opts);
	/*
	 * A chardev left by a re-plug cut short connects and never speaks;
	 * the device added next must still be served.
	 */
	silent = fe_connect(self->sock);
	ASSERT_LE(0, silent);
	usleep(100000);
	ASSERT_NE(0, fe_once(self->sock) & VHOST_F_VERSION_1);
	close(silent);
	ASSERT_NE(0, fe_once(self->sock) & VHOST_F_VERSION_1);
	ASSERT_TRUE(hf_pid_alive(self->pid));
}

TEST_F_TIMEOUT(vhost, without_reconnect_one_front_end, 60)
{
	const char *opts[] = { "--recovery", "off", NULL };
	int status;

	start(self, opts);
	ASSERT_NE(0, fe_once(self->sock) & VHOST_F_VERSION_1);
	/* Like virtiofsd: the front-end went away, and so does the server. */
	status = hf_wait(self->pid, 5000);
	self->pid = 0;
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
}

TEST_F_TIMEOUT(vhost, kill9_restarts_on_the_same_socket, 90)
{
	const char *opts[] = { "--reconnect", NULL };
	pid_t server, next = 0;
	int k, i, s, status;

	start(self, opts);
	for (k = 0; k < 3; k++) {
		s = fe_connect(self->sock);
		ASSERT_LE(0, s);
		ASSERT_NE(0, fe_features(s) & VHOST_F_VERSION_1);
		server = child_of(self->pid);
		ASSERT_LT(0, server);
		ASSERT_EQ(0, kill(server, SIGKILL));
		/* The front-end sees its back-end go... */
		{
			char c;

			ASSERT_EQ(0, recv(s, &c, 1, 0));
		}
		close(s);
		/* ...and the store start another on the same listening socket. */
		for (i = 0; i < 400; i++) {
			next = child_of(self->pid);
			if (next > 0 && next != server)
				break;
			usleep(25000);
		}
		ASSERT_NE(server, next);
		ASSERT_NE(0, fe_once(self->sock) & VHOST_F_VERSION_1);
	}
	ASSERT_EQ(3, count_in_file(self->log, "recovered "));
	kill(self->pid, SIGTERM);
	status = hf_wait(self->pid, 5000);
	self->pid = 0;
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
}

TEST_F_TIMEOUT(vhost, qmp_says_qemu_is_gone, 60)
{
	char qmp[160];
	const char *opts[] = { "--recovery", "off", "--qmp-socket", qmp, "--qmp-device", "fs0",
			       NULL };
	int status;

	snprintf(qmp, sizeof(qmp), "%s/no-such-qmp.sock", self->dir);
	start(self, opts);
	ASSERT_NE(0, fe_once(self->sock) & VHOST_F_VERSION_1);
	/* Nobody at the QMP socket: the VM is gone, so is the server. */
	status = hf_wait(self->pid, 10000);
	self->pid = 0;
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(1, count_in_file(self->log, "QEMU is gone"));
}

TEST_HARNESS_MAIN
