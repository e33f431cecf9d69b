// SPDX-License-Identifier: GPL-2.0
/*
 * The daemon as a whole: how it mounts (fstype, allow_other), what
 * `holdfastctl status` reports, and how it leaves (SIGTERM/SIGINT unmount
 * cleanly, exit 0, and the FUSE connection is gone, not just detached).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

FIXTURE(ctl) {
	struct hf h;
};

FIXTURE_SETUP(ctl)
{
	struct hf_opts o = { .cache = "auto" };

	HF_SETUP(&o);
}

FIXTURE_TEARDOWN(ctl)
{
	HF_TEARDOWN();
}

/*
 * A strict little JSON reader: enough to validate the whole document and
 * pull out members.  Every parse_* returns the end of what it parsed, or
 * NULL if the text is not JSON.
 */
static const char *ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

static const char *parse_value(const char *p, int depth);

static const char *parse_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	while (*p && *p != '"') {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\') {
			p++;
			if (*p == 'u') {
				int i;

				for (i = 1; i <= 4; i++)
					if (!isxdigit((unsigned char)p[i]))
						return NULL;
				p += 4;
			} else if (!strchr("\"\\/bfnrt", *p) || !*p) {
				return NULL;
			}
		}
		p++;
	}
	return *p == '"' ? p + 1 : NULL;
}

static const char *parse_number(const char *p)
{
	const char *s = p;

	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (isdigit((unsigned char)*p))
		while (isdigit((unsigned char)*p))
			p++;
	else
		return NULL;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return NULL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!isdigit((unsigned char)*p))
			return NULL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	return p > s ? p : NULL;
}

static const char *parse_container(const char *p, int depth, char open, char close)
{
	if (depth > 32 || *p != open)
		return NULL;
	p = ws(p + 1);
	if (*p == close)
		return p + 1;
	for (;;) {
		if (open == '{') {
			p = parse_string(p);
			if (!p)
				return NULL;
			p = ws(p);
			if (*p++ != ':')
				return NULL;
		}
		p = parse_value(ws(p), depth + 1);
		if (!p)
			return NULL;
		p = ws(p);
		if (*p == close)
			return p + 1;
		if (*p++ != ',')
			return NULL;
		p = ws(p);
	}
}

static const char *parse_value(const char *p, int depth)
{
	p = ws(p);
	switch (*p) {
	case '{':
		return parse_container(p, depth, '{', '}');
	case '[':
		return parse_container(p, depth, '[', ']');
	case '"':
		return parse_string(p);
	case 't':
		return strncmp(p, "true", 4) ? NULL : p + 4;
	case 'f':
		return strncmp(p, "false", 5) ? NULL : p + 5;
	case 'n':
		return strncmp(p, "null", 4) ? NULL : p + 4;
	default:
		return parse_number(p);
	}
}

static bool json_valid(const char *doc)
{
	const char *end = parse_value(doc, 0);

	return end && !*ws(end);
}

/*
 * The value of member @key (compared case-insensitively, and with an
 * optional "FUSE_" prefix in the document when @loose) of the object at
 * @obj, or NULL.
 */
static const char *json_get(const char *obj, const char *key, bool loose)
{
	const char *p = ws(obj);

	if (*p != '{')
		return NULL;
	p = ws(p + 1);
	while (*p == '"') {
		const char *kend = parse_string(p);
		const char *k = p + 1;
		size_t klen;

		if (!kend)
			return NULL;
		klen = kend - k - 1;
		if (loose && klen > 5 && !strncasecmp(k, "FUSE_", 5)) {
			k += 5;
			klen -= 5;
		}
		p = ws(kend);
		if (*p++ != ':')
			return NULL;
		p = ws(p);
		if (klen == strlen(key) &&
		    (loose ? !strncasecmp(k, key, klen) : !strncmp(k, key, klen)))
			return p;
		p = parse_value(p, 1);
		if (!p)
			return NULL;
		p = ws(p);
		if (*p == ',')
			p = ws(p + 1);
	}
	return NULL;
}

static bool json_num(const char *v, double *out)
{
	char *end;

	if (!v || !parse_number(v))
		return false;
	*out = strtod(v, &end);
	return end > v;
}

/* Drain @fd into @buf (NUL-terminated) until EOF or 10 s of silence. */
static size_t slurp(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	while (got < cap - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 10000) != 1)
			break;
		n = read(fd, buf + got, cap - 1 - got);
		if (n <= 0)
			break;
		got += n;
	}
	buf[got] = 0;
	return got;
}

/*
 * Run `holdfastctl status MNT`; stdout into @buf.  Its stderr is echoed as
 * TAP comments.  Returns the exit status.
 */
static int run_status(const struct hf *h, char *buf, size_t cap)
{
	const char *ctl = getenv("HOLDFASTCTL");
	int out[2], err[2], status;
	char ebuf[2048], *line, *save;
	pid_t pid;

	if (!ctl || !*ctl)
		ctl = HF_DEFAULT_HOLDFASTCTL;
	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
		return -1;
	{
		int keep[2] = { out[1], err[1] };

		pid = hf_fork_child(keep, 2);
	}
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(3, 1);
		dup2(4, 2);
		close(3);
		close(4);
		execl(ctl, ctl, "status", h->mnt, (char *)NULL);
		fprintf(stderr, "exec %s: %m\n", ctl);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	slurp(out[0], buf, cap);
	close(out[0]);
	slurp(err[0], ebuf, sizeof(ebuf));
	close(err[0]);
	for (line = strtok_r(ebuf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		fprintf(stderr, "# holdfastctl: %s\n", line);
	status = hf_wait(pid, 10000);
	return status == -1 ? -1 : (WIFEXITED(status) ? WEXITSTATUS(status) : 128);
}

/*
 * The pid we spawned may be a supervisor (fd store) with the serving
 * daemon as its child; either is "the server".
 */
static bool is_self_or_descendant(pid_t pid, pid_t ancestor)
{
	int depth;

	for (depth = 0; depth < 8 && pid > 1; depth++) {
		char path[64], buf[512], *p;
		int fd, ppid;
		ssize_t n;

		if (pid == ancestor)
			return true;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return false;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			return false;
		buf[n] = 0;
		p = strrchr(buf, ')');
		if (!p || sscanf(p + 2, "%*c %d", &ppid) != 1)
			return false;
		pid = ppid;
	}
	return false;
}

static bool lookup_count(const char *doc, double *n)
{
	return json_num(json_get(json_get(doc, "requests", false), "lookup", true), n);
}

TEST_F(ctl, mount_fstype_allow_other)
{
	char line[4096], fstype[64];
	bool found = false;
	FILE *f;

	ASSERT_TRUE(hf_is_mounted(self->h.mnt, fstype, sizeof(fstype)));
	EXPECT_STREQ("fuse.holdfast", fstype);

	/* Super options (the last field of mountinfo) carry allow_other. */
	f = fopen("/proc/self/mountinfo", "re");
	ASSERT_NE(NULL, f);
	while (fgets(line, sizeof(line), f)) {
		char needle[PATH_MAX + 4];

		snprintf(needle, sizeof(needle), " %s ", self->h.mnt);
		if (!strstr(line, needle))
			continue;
		found = true;
		line[strcspn(line, "\n")] = 0;
		EXPECT_NE(NULL, strstr(strstr(line, " - "), "allow_other"))
			TH_LOG("mountinfo: %s", line);
	}
	fclose(f);
	EXPECT_TRUE(found);
}

TEST_F(ctl, status_json)
{
	static char doc[65536];
	double pid, threads, before, after;
	const char *v;
	struct stat st;
	int i, rc;

	/* Some traffic first, so there is something to count. */
	ASSERT_EQ(0, hf_write_file(M("f"), "x", 1, 0644));
	ASSERT_EQ(0, stat(M("f"), &st));

	rc = run_status(&self->h, doc, sizeof(doc));
	ASSERT_EQ(0, rc) TH_LOG("holdfastctl status exited %d", rc);
	ASSERT_TRUE(json_valid(doc)) TH_LOG("not JSON: %.300s", doc);

	ASSERT_TRUE(json_num(json_get(doc, "pid", false), &pid));
	EXPECT_TRUE(is_self_or_descendant((pid_t)pid, self->h.pid))
		TH_LOG("status pid %d is not holdfastd (%d) or its child", (int)pid, self->h.pid);
	v = json_get(doc, "transport", false);
	ASSERT_NE(NULL, v);
	EXPECT_EQ('"', *v);
	EXPECT_NE('"', v[1]) TH_LOG("empty transport name");
	ASSERT_TRUE(json_num(json_get(doc, "threads", false), &threads));
	EXPECT_LE(1, threads);
	EXPECT_NE(NULL, json_get(doc, "errors", false));
	v = json_get(doc, "requests", false);
	ASSERT_NE(NULL, v);
	EXPECT_EQ('{', *v);
	ASSERT_TRUE(lookup_count(doc, &before)) TH_LOG("no LOOKUP in requests: %.300s", v);
	EXPECT_LT(0, before);

	/* Distinct names the kernel has never seen: one LOOKUP each. */
	for (i = 0; i < 25; i++)
		EXPECT_EQ(-1, stat(M("nonexistent-%d", i), &st));
	rc = run_status(&self->h, doc, sizeof(doc));
	ASSERT_EQ(0, rc);
	ASSERT_TRUE(json_valid(doc));
	ASSERT_TRUE(lookup_count(doc, &after));
	EXPECT_LE(before + 25, after) TH_LOG("LOOKUP %g -> %g", before, after);
}

/* Is the connection still known to fusectl? */
static bool conn_exists(dev_t dev)
{
	char dir[] = "/tmp/holdfast-fusectl.XXXXXX", path[PATH_MAX];
	struct stat st;
	bool ret;

	if (!mkdtemp(dir))
		return false;
	if (mount("none", dir, "fusectl", 0, NULL)) {
		rmdir(dir);
		return false;
	}
	snprintf(path, sizeof(path), "%s/%u", dir, (unsigned int)dev);
	ret = stat(path, &st) == 0;
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	return ret;
}

static void check_clean_exit(struct __test_metadata *_metadata, struct hf *h, int sig)
{
	struct stat st_mnt, st_base;
	pid_t kids[64];
	int status, nkids, i;
	char buf[8];

	/* Exercise the mount, and leave nothing open on it. */
	ASSERT_EQ(0, hf_write_file(hf_m(h, "f"), "data", 4, 0644));
	ASSERT_EQ(4, hf_read_file(hf_m(h, "f"), buf, sizeof(buf)));
	ASSERT_NE(0, h->dev);
	ASSERT_TRUE(conn_exists(h->dev));

	nkids = hf_descendants(h->pid, kids, 64);
	kill(h->pid, sig);
	status = hf_wait(h->pid, HF_STOP_TIMEOUT_MS);
	h->reaped = true;
	h->wstatus = status;
	ASSERT_NE(-1, status) TH_LOG("holdfastd did not exit on signal %d", sig);
	EXPECT_TRUE(WIFEXITED(status)) TH_LOG("killed by signal %d", WTERMSIG(status));
	EXPECT_EQ(0, WEXITSTATUS(status));

	EXPECT_FALSE(hf_is_mounted(h->mnt, NULL, 0));
	ASSERT_EQ(0, stat(h->mnt, &st_mnt));
	ASSERT_EQ(0, stat(h->base, &st_base));
	EXPECT_EQ(st_base.st_dev, st_mnt.st_dev);
	/*
	 * Unmounted *and* the connection released, not merely detached.  The
	 * kernel drops its last reference a moment after the umount (seen
	 * under ASan: still listed right after the exit), so allow 2 s.
	 */
	for (i = 0; i < 40 && conn_exists(h->dev); i++)
		usleep(50000);
	EXPECT_FALSE(conn_exists(h->dev));
	/* No helper process (fd store, workers) is left behind. */
	usleep(200000);
	for (i = 0; i < nkids; i++)
		EXPECT_FALSE(hf_pid_alive(kids[i])) TH_LOG("child %d still running", kids[i]);
	/* The data is on the host. */
	EXPECT_EQ(4, hf_read_file(hf_s(h, "f"), buf, sizeof(buf)));
}

TEST_F(ctl, sigterm_unmounts_cleanly)
{
	check_clean_exit(_metadata, &self->h, SIGTERM);
}

TEST_F(ctl, sigint_unmounts_cleanly)
{
	check_clean_exit(_metadata, &self->h, SIGINT);
}

/* A client killed while using the mount does not take the server down. */
TEST_F(ctl, survives_killed_client)
{
	char buf[8];
	int status;
	pid_t pid;

	ASSERT_EQ(0, hf_write_file(M("f"), "data", 4, 0644));
	pid = hf_fork_child(NULL, 0);
	ASSERT_LE(0, pid);
	if (pid == 0) {
		char b[4096];

		for (;;) {
			int fd = open(M("f"), O_RDWR | O_CLOEXEC);

			if (fd < 0)
				_exit(1);
			if (pwrite(fd, b, sizeof(b), 0) < 0 || pread(fd, b, sizeof(b), 0) < 0)
				_exit(2);
			close(fd);
		}
	}
	usleep(300000);
	kill(pid, SIGKILL);
	status = hf_wait(pid, 5000);
	ASSERT_NE(-1, status);
	EXPECT_TRUE(WIFSIGNALED(status));

	EXPECT_EQ(0, kill(self->h.pid, 0));
	EXPECT_EQ(4, hf_read_file(M("f"), buf, 4));
	EXPECT_TRUE(hf_is_mounted(self->h.mnt, NULL, 0));
}

TEST_HARNESS_MAIN
