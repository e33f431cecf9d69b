// SPDX-License-Identifier: GPL-2.0
/*
 * Spawning, watching and tearing down holdfastd for the host selftests.
 * See holdfast_fixture.h for the layout and the rules.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/close_range.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include "holdfast_fixture.h"

/* Comment lines keep the harness's TAP stream valid. */
#define hf_log(fmt, ...) fprintf(stderr, "# holdfast: " fmt "\n", ##__VA_ARGS__)

#define HF_ENABLE_URING "/sys/module/fuse/parameters/enable_uring"

char hf_uring_param(void)
{
	char c = 0;
	int fd = open(HF_ENABLE_URING, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	return c;
}

int hf_uring_set(char v)
{
	int fd = open(HF_ENABLE_URING, O_WRONLY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return -1;
	r = write(fd, &v, 1) == 1 ? 0 : -1;
	close(fd);
	return r;
}

const char *hf_transport_unavailable(const struct hf_opts *o)
{
	if (!o || !o->transport || strcmp(o->transport, "uring"))
		return NULL;
	if (!hf_uring_param())
		return "no " HF_ENABLE_URING ": this kernel has no FUSE-over-io_uring (6.14+, "
		       "CONFIG_FUSE_IO_URING)";
	if (access(HF_ENABLE_URING, W_OK))
		return "cannot write " HF_ENABLE_URING " to enable FUSE-over-io_uring";
	return NULL;
}

static void uring_restore(struct hf *h)
{
	if (h->uring_old && hf_uring_param() != h->uring_old && hf_uring_set(h->uring_old))
		hf_log("could not restore %s to %c", HF_ENABLE_URING, h->uring_old);
	h->uring_old = 0;
}


long long hf_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* glibc 2.36 has no close_range() wrapper in every configuration. */
static int hf_close_range(unsigned int first, unsigned int last)
{
	return syscall(SYS_close_range, first, last, 0);
}

static const char *vpath(const char *root, const char *fmt, va_list ap)
{
	static char ring[16][PATH_MAX];
	static unsigned int next;
	char *buf = ring[next++ % 16];
	int n;

	n = snprintf(buf, PATH_MAX, "%s/", root);
	vsnprintf(buf + n, PATH_MAX - n, fmt, ap);
	return buf;
}

#define DEFINE_PATH_FN(name, field)					\
const char *name(const struct hf *h, const char *fmt, ...)		\
{									\
	const char *p;							\
	va_list ap;							\
									\
	va_start(ap, fmt);						\
	p = vpath(h->field, fmt, ap);					\
	va_end(ap);							\
	return p;							\
}
DEFINE_PATH_FN(hf_m, mnt)
DEFINE_PATH_FN(hf_s, src)
DEFINE_PATH_FN(hf_b, base)

int hf_write_file(const char *path, const void *buf, size_t len, mode_t mode)
{
	const char *p = buf;
	int fd, saved;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
		p += n;
		len -= n;
	}
	return close(fd);
}

ssize_t hf_read_file(const char *path, void *buf, size_t cap)
{
	size_t got = 0;
	int fd, saved;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while (got < cap) {
		ssize_t n = read(fd, (char *)buf + got, cap - got);

		if (n < 0) {
			saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
		if (n == 0)
			break;
		got += n;
	}
	close(fd);
	return got;
}

static unsigned char pattern_byte(unsigned int seed, unsigned long long pos)
{
	unsigned long long x = (pos >> 3) * 0x9e3779b97f4a7c15ULL + seed;

	x ^= x >> 29;
	return (unsigned char)((x >> (8 * (pos & 7))) ^ (pos * 131) ^ seed);
}

void hf_fill(void *buf, size_t len, unsigned int seed, off_t off)
{
	unsigned char *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = pattern_byte(seed, off + i);
}

ssize_t hf_check(const void *buf, size_t len, unsigned int seed, off_t off)
{
	const unsigned char *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != pattern_byte(seed, off + i))
			return i;
	return -1;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

void hf_rm_rf(const char *path)
{
	/* FTW_MOUNT: a mount we failed to remove is left alone, not emptied. */
	nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* mountinfo escapes ' ', '\t', '\n' and '\\' as \ooo. */
static void unescape(char *s)
{
	char *d = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] && s[3]) {
			*d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*d++ = *s++;
		}
	}
	*d = 0;
}

bool hf_is_mounted(const char *path, char *fstype, size_t len)
{
	char line[4096];
	bool found = false;
	FILE *f;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		char *save, *tok, *mp = NULL, *fs = NULL;
		int i = 0;
		bool dash = false;

		for (tok = strtok_r(line, " \n", &save); tok;
		     tok = strtok_r(NULL, " \n", &save), i++) {
			if (i == 4)
				mp = tok;
			else if (dash && !fs)
				fs = tok;
			else if (i > 5 && !strcmp(tok, "-"))
				dash = true;
		}
		if (!mp || !fs)
			continue;
		unescape(mp);
		if (strcmp(mp, path))
			continue;
		/* The last match is the top of the stack: keep looking. */
		found = true;
		if (fstype && len)
			snprintf(fstype, len, "%s", fs);
	}
	fclose(f);
	return found;
}

int hf_abort_conn(dev_t dev)
{
	char dir[] = "/tmp/holdfast-fusectl.XXXXXX";
	char path[PATH_MAX];
	struct stat st;
	int fd, ret = -1;

	/*
	 * /sys/fs/fuse/connections is not mounted in every sandbox, so use a
	 * private fusectl instance.  The connection's directory is named after
	 * the superblock's device number, which for FUSE is (0, minor).
	 */
	if (!mkdtemp(dir))
		return -1;
	if (mount("none", dir, "fusectl", 0, NULL)) {
		hf_log("mount fusectl: %s", strerror(errno));
		rmdir(dir);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%u", dir, (unsigned int)dev);
	if (stat(path, &st)) {
		ret = 1;	/* the connection is already gone */
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%u/abort", dir, (unsigned int)dev);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "1", 1) == 1)
			ret = 0;
		close(fd);
	}
	if (ret)
		hf_log("abort %s: %s", path, strerror(errno));
	else
		hf_log("aborted FUSE connection %u", (unsigned int)dev);
out:
	umount2(dir, MNT_DETACH);
	rmdir(dir);
	return ret;
}

/* Says where a child that did not finish is stuck: the syscall and the kernel stack. */
static void hf_show_stuck(pid_t pid)
{
	static const char *const what[] = { "syscall", "wchan", "stack" };
	char path[64], buf[2048];

	for (size_t i = 0; i < sizeof(what) / sizeof(what[0]); i++) {
		ssize_t n;
		int fd;

		snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
			fprintf(stderr, "# holdfast: child %d stuck, %s: %s\n", (int)pid, what[i], line);
	}
}

int hf_wait(pid_t pid, int timeout_ms)
{
	long long end = hf_now_ms() + timeout_ms;
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -1;
		if (hf_now_ms() >= end)
			break;
		sleep_ms(5);
	}
	hf_show_stuck(pid);
	kill(pid, SIGKILL);
	/* Bounded again: a child stuck in D state will not die on SIGKILL. */
	end = hf_now_ms() + 2000;
	while (hf_now_ms() < end) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		sleep_ms(5);
	}
	return -1;
}

pid_t hf_fork_child(const int *keep, int nkeep)
{
	pid_t parent = getpid();
	pid_t pid;
	int i, tmp[16];

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid)
		return pid;

	/* Die with the test; a stray client must not pin the mount. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(99);
	/* Move the fds to keep out of the way first, then down to 3, 4, ... */
	for (i = 0; i < nkeep && i < 16; i++)
		tmp[i] = fcntl(keep[i], F_DUPFD_CLOEXEC, 64 + 16);
	hf_close_range(3, 64 + 15);
	for (i = 0; i < nkeep && i < 16; i++)
		dup2(tmp[i], 3 + i);
	hf_close_range(3 + nkeep, ~0U);
	return 0;
}

int hf_run_child(uid_t uid, gid_t gid, int (*fn)(void *), void *arg, int timeout_ms)
{
	pid_t pid;
	int status;

	pid = hf_fork_child(NULL, 0);
	if (pid < 0)
		return -1;
	if (pid == 0) {
		/*
		 * setgroups/setgid/setuid in that order: the groups and gid
		 * can only be dropped while we are still root.
		 */
		if (uid != (uid_t)-1) {
			if (setgroups(0, NULL) || setgid(gid) || setuid(uid))
				_exit(250);
		}
		_exit(fn(arg) & 0xff);
	}
	status = hf_wait(pid, timeout_ms);
	if (status == -1) {
		hf_log("child %d timed out", pid);
		return -1;
	}
	if (!WIFEXITED(status)) {
		hf_log("child %d died with signal %d", pid, WTERMSIG(status));
		return -1;
	}
	if (WEXITSTATUS(status) == 250) {
		hf_log("child %d could not switch to uid %d", pid, (int)uid);
		return -1;
	}
	return WEXITSTATUS(status);
}

bool hf_pid_alive(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

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
	return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static void dump_log(const struct hf *h)
{
	char buf[8192], *line, *save;
	ssize_t n;
	off_t size;
	int fd;

	fd = open(h->log, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	size = lseek(fd, 0, SEEK_END);
	lseek(fd, size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0,
	      SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	hf_log("---- tail of %s ----", h->log);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		fprintf(stderr, "# server: %s\n", line);
}

/*
 * Shared by teardown and the watchdog, once the server is gone or hopeless:
 * detach MNT, then abort the connection if it still exists.  A detached
 * mount stays alive while anything holds it (a client stuck on a request
 * the server read but never answered waits uninterruptibly, or another
 * process such as an fd store keeps /dev/fuse open); only the abort frees
 * those.
 */
static void force_unmount(const struct hf *h)
{
	if (hf_is_mounted(h->mnt, NULL, 0) && umount2(h->mnt, MNT_DETACH))
		hf_log("umount2(%s, MNT_DETACH): %s", h->mnt, strerror(errno));
	if (h->dev)
		hf_abort_conn(h->dev);
}

static void __attribute__((noreturn))
watchdog(const struct hf *h, int rfd, unsigned int timeout_s, pid_t test_pgrp)
{
	long long deadline = hf_now_ms() + (timeout_s + 5) * 1000LL;
	struct pollfd pfd = { .fd = rfd, .events = POLLIN };
	bool timed_out = false;
	long long end;
	char c;

	/* Own process group: the harness kills the test's group on timeout. */
	setpgid(0, 0);
	prctl(PR_SET_NAME, "hf-watchdog");
	for (;;) {
		long long left = deadline - hf_now_ms();
		int r;

		if (left <= 0) {
			timed_out = true;
			break;
		}
		r = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		r = read(rfd, &c, 1);
		if (r == 1 && c == 'D')
			_exit(0);	/* teardown ran: nothing to do */
		if (r == 0)
			break;		/* test process gone without teardown */
	}

	hf_log("watchdog: %s without teardown, cleaning up %s",
	       timed_out ? "test overran" : "test died", h->mnt);
	if (timed_out)
		kill(-test_pgrp, SIGKILL);
	if (hf_pid_alive(h->pid)) {
		kill(h->pid, SIGTERM);
		end = hf_now_ms() + 5000;
		while (hf_pid_alive(h->pid) && hf_now_ms() < end)
			sleep_ms(20);
	}
	force_unmount(h);
	if (hf_pid_alive(h->pid))
		kill(h->pid, SIGKILL);
	hf_rm_rf(h->base);
	_exit(0);
}

static void build_argv(const char **argv, int max, const char *bin, const struct hf *h,
		       const struct hf_opts *o, char *threads, char *extra)
{
	const char *lvl = getenv("HOLDFAST_LOG_LEVEL");
	const char *transport = o && o->transport ? o->transport : getenv("HOLDFAST_TRANSPORT");
	int n = 0;

	argv[n++] = bin;
	argv[n++] = "--shared-dir";
	argv[n++] = o && o->shared_dir ? o->shared_dir : h->src;
	argv[n++] = "--mountpoint";
	argv[n++] = h->mnt;
	argv[n++] = "--ready-fd";
	argv[n++] = "3";
	if (o && o->cache) {
		argv[n++] = "--cache";
		argv[n++] = o->cache;
	}
	if (o && o->writeback)
		argv[n++] = "--writeback";
	if (o && o->xattr)
		argv[n++] = "--xattr";
	if (o && o->readonly)
		argv[n++] = "--readonly";
	if (o && o->fault_injection)
		argv[n++] = "--fault-injection";
	if (o && o->threads > 0) {
		argv[n++] = "--thread-pool-size";
		argv[n++] = threads;
	}
	if (lvl && *lvl) {
		argv[n++] = "--log-level";
		argv[n++] = lvl;
	}
	/* HOLDFAST_TRANSPORT=uring selftests/run-host.sh: every test over io_uring. */
	if (transport && *transport) {
		argv[n++] = "--transport";
		argv[n++] = transport;
	}
	if (extra) {
		char *save, *tok;

		for (tok = strtok_r(extra, " ", &save); tok && n < max - 1;
		     tok = strtok_r(NULL, " ", &save))
			argv[n++] = tok;
	}
	argv[n] = NULL;
}

static pid_t spawn_server(const struct hf *h, const struct hf_opts *o, int ready_w)
{
	const char *bin = getenv("HOLDFASTD");
	const char *argv[64], *exe;
	char threads[16], extra[1024], store[PATH_MAX], max_fds[16];
	pid_t parent = getpid();
	pid_t pid;
	int n = 0;

	if (!bin || !*bin)
		bin = HF_DEFAULT_HOLDFASTD;
	exe = bin;
	if (o && o->store_max_fds > 0) {
		/* holdfastd uses the store it finds in $NOTIFY_SOCKET. */
		const char *slash = strrchr(bin, '/');

		snprintf(store, sizeof(store), "%.*s%sholdfast-fdstore",
			 slash ? (int)(slash - bin) : 0, bin, slash ? "/" : "");
		snprintf(max_fds, sizeof(max_fds), "%d", o->store_max_fds);
		exe = argv[n++] = store;
		argv[n++] = "--max-fds";
		argv[n++] = max_fds;
		argv[n++] = "--";
	}
	snprintf(threads, sizeof(threads), "%d", o ? o->threads : 0);
	snprintf(extra, sizeof(extra), "%s", o && o->extra_args ? o->extra_args : "");
	build_argv(argv + n, 64 - n, bin, h, o, threads, extra);

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid)
		return pid;

	/*
	 * If the test process dies, the server is told to unmount; the
	 * watchdog covers the case where that is not enough.
	 */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(126);
	/*
	 * A daemon typically inherits umask 022.  A passthrough server must
	 * apply the mode the kernel sends, not its own umask; the tests run
	 * with umask 0 and check modes, so this catches that bug.
	 */
	umask(022);
	{
		int log = open(h->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		int rw = fcntl(ready_w, F_DUPFD_CLOEXEC, 10);

		if (log < 0 || null < 0 || rw < 0)
			_exit(126);
		dup2(null, 0);
		dup2(log, 1);
		dup2(log, 2);
		dup2(rw, 3);	/* dup2 clears O_CLOEXEC on fd 3 */
		hf_close_range(4, ~0U);
	}
	execv(exe, (char **)argv);
	fprintf(stderr, "exec %s: %s\n", exe, strerror(errno));
	_exit(127);
}

static int wait_ready(struct hf *h, int ready_r)
{
	long long end = hf_now_ms() + HF_READY_TIMEOUT_MS;
	char buf[64], fstype[64];
	long long mounted_at = 0;
	size_t got = 0;
	bool eof = false;

	for (;;) {
		struct pollfd pfd = { .fd = ready_r, .events = POLLIN };
		int status;

		if (!eof && poll(&pfd, 1, 50) > 0) {
			ssize_t n = read(ready_r, buf + got, sizeof(buf) - 1 - got);

			if (n <= 0) {
				eof = true;
			} else {
				got += n;
				buf[got] = 0;
				if (strstr(buf, "ready\n"))
					return 0;
				if (got >= sizeof(buf) - 1)
					got = 0;
			}
		} else if (eof) {
			sleep_ms(50);
		}
		/*
		 * Fallback the contract allows: the mount simply appears.  The
		 * mount exists before the server serves (INIT, the io_uring
		 * queues, the control socket come after it), so a server that
		 * does write "ready" gets a moment to do so.
		 */
		if (hf_is_mounted(h->mnt, fstype, sizeof(fstype)) &&
		    !strcmp(fstype, "fuse.holdfast")) {
			if (!mounted_at)
				mounted_at = hf_now_ms();
			if (eof || hf_now_ms() - mounted_at >= HF_READY_GRACE_MS)
				return 0;
		}
		if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
			h->reaped = true;
			h->wstatus = status;
			if (WIFEXITED(status))
				hf_log("holdfastd exited with %d before ready",
				       WEXITSTATUS(status));
			else
				hf_log("holdfastd killed by signal %d before ready",
				       WTERMSIG(status));
			return -1;
		}
		if (hf_now_ms() >= end) {
			hf_log("holdfastd not ready after %d ms", HF_READY_TIMEOUT_MS);
			return -1;
		}
	}
}

int hf_start(struct hf *h, const struct hf_opts *o, unsigned int timeout_s)
{
	struct stat st_base, st_mnt;
	int ready[2], wd[2];
	pid_t pgrp = getpgrp();

	memset(h, 0, sizeof(*h));
	h->wd_fd = -1;
	h->fault_injection = o && o->fault_injection;
	if (o && o->transport && !strcmp(o->transport, "uring")) {
		char old = hf_uring_param();

		if (old != 'Y' && hf_uring_set('Y')) {
			hf_log("cannot set %s: %s", HF_ENABLE_URING, strerror(errno));
			return -1;
		}
		h->uring_old = old;
	}
	/* Tests compare exact modes; the kernel applies the caller's umask. */
	umask(0);

	snprintf(h->base, sizeof(h->base), "/tmp/holdfast-st.XXXXXX");
	if (!mkdtemp(h->base)) {
		hf_log("mkdtemp: %s", strerror(errno));
		h->base[0] = 0;
		uring_restore(h);
		return -1;
	}
	/* uid 65534 must be able to walk to the mount and the source. */
	chmod(h->base, 0755);
	snprintf(h->srv, sizeof(h->srv), "%s/srv", h->base);
	snprintf(h->src, sizeof(h->src), "%s/srv/src", h->base);
	snprintf(h->mnt, sizeof(h->mnt), "%s/mnt", h->base);
	snprintf(h->log, sizeof(h->log), "%s/server.log", h->base);
	if (mkdir(h->srv, 0755) || mkdir(h->src, 0755) || mkdir(h->mnt, 0755)) {
		hf_log("mkdir in %s: %s", h->base, strerror(errno));
		goto fail_rm;
	}
	if (stat(h->base, &st_base)) {
		hf_log("stat %s: %s", h->base, strerror(errno));
		goto fail_rm;
	}

	if (pipe2(ready, O_CLOEXEC)) {
		hf_log("pipe2: %s", strerror(errno));
		goto fail_rm;
	}
	h->pid = spawn_server(h, o, ready[1]);
	close(ready[1]);
	if (h->pid < 0) {
		hf_log("fork: %s", strerror(errno));
		close(ready[0]);
		goto fail_rm;
	}
	h->started = true;
	if (wait_ready(h, ready[0])) {
		close(ready[0]);
		goto fail_stop;
	}
	close(ready[0]);

	/* "ready" must mean a live mount. */
	if (!hf_is_mounted(h->mnt, NULL, 0)) {
		hf_log("%s is not a mount point after ready", h->mnt);
		goto fail_stop;
	}
	if (stat(h->mnt, &st_mnt)) {
		hf_log("stat %s after ready: %s", h->mnt, strerror(errno));
		goto fail_stop;
	}
	/* The FUSE connection's fusectl name; a bind mount has the base's. */
	if (st_mnt.st_dev != st_base.st_dev)
		h->dev = st_mnt.st_dev;

	if (pipe2(wd, O_CLOEXEC)) {
		hf_log("pipe2: %s", strerror(errno));
		goto fail_stop;
	}
	fflush(stdout);
	fflush(stderr);
	h->watchdog = fork();
	if (h->watchdog == 0) {
		int rfd = fcntl(wd[0], F_DUPFD_CLOEXEC, 3);

		/* Hold nothing of the test's, above all not the write end. */
		dup2(rfd, 3);
		hf_close_range(4, ~0U);
		watchdog(h, 3, timeout_s, pgrp);
	}
	close(wd[0]);
	if (h->watchdog < 0) {
		hf_log("fork watchdog: %s", strerror(errno));
		close(wd[1]);
		goto fail_stop;
	}
	h->wd_fd = wd[1];
	return 0;

fail_stop:
	hf_teardown(h, true);
	return -1;
fail_rm:
	hf_rm_rf(h->base);
	h->base[0] = 0;
	uring_restore(h);
	return -1;
}

int hf_descendants(pid_t root, pid_t *out, int max)
{
	static pid_t pids[32768], ppids[32768];
	struct dirent *de;
	int n = 0, found = 0, i, j;
	DIR *d;

	d = opendir("/proc");
	if (!d)
		return 0;
	while ((de = readdir(d)) && n < 32768) {
		char path[300], buf[512], *p;
		int fd, ppid;
		ssize_t len;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = 0;
		p = strrchr(buf, ')');
		if (!p || sscanf(p + 2, "%*c %d", &ppid) != 1)
			continue;
		pids[n] = atoi(de->d_name);
		ppids[n++] = ppid;
	}
	closedir(d);
	/* Breadth first: out[] doubles as the queue. */
	for (i = -1; i < found; i++) {
		pid_t parent = i < 0 ? root : out[i];

		for (j = 0; j < n && found < max; j++)
			if (ppids[j] == parent)
				out[found++] = pids[j];
	}
	return found;
}

int hf_stop(struct hf *h, int sig)
{
	pid_t kids[64];
	int status, nkids = 0, i;

	if (!h->started)
		return -1;
	if (!h->reaped) {
		/* The server may be a supervisor with helpers; remember them. */
		nkids = hf_descendants(h->pid, kids, 64);
		kill(h->pid, sig);
		status = hf_wait(h->pid, HF_STOP_TIMEOUT_MS);
		if (status == -1) {
			/*
			 * hf_wait() already sent SIGKILL; if the process still
			 * does not go away it is stuck on its own mount.
			 */
			hf_log("holdfastd %d did not exit within %d ms of signal %d",
			       h->pid, HF_STOP_TIMEOUT_MS, sig);
			force_unmount(h);
			status = hf_wait(h->pid, 2000);
			h->wstatus = -1;
		} else {
			h->wstatus = status;
		}
		h->reaped = true;
	}
	for (i = 0; i < nkids; i++) {
		if (!hf_pid_alive(kids[i]))
			continue;
		/* Give a helper a moment to follow its parent out. */
		sleep_ms(200);
		if (!hf_pid_alive(kids[i]))
			continue;
		hf_log("holdfastd's child %d outlived it; killing it", kids[i]);
		kill(kids[i], SIGKILL);
	}
	if (hf_is_mounted(h->mnt, NULL, 0)) {
		hf_log("%s still mounted after holdfastd exited", h->mnt);
		force_unmount(h);
	}
	return h->wstatus;
}

/*
 * A failed ASSERT leaves the test's fds, mappings and maybe its cwd on the
 * mount.  Drop them so the server's unmount on SIGTERM is not refused with
 * EBUSY because of the test itself.
 */
static void release_mount_refs(const struct hf *h)
{
	size_t mlen = strlen(h->mnt);
	char link[PATH_MAX], cwd[PATH_MAX], line[PATH_MAX + 256];
	struct dirent *de;
	FILE *maps;
	DIR *d;

	if (getcwd(cwd, sizeof(cwd)) && !strncmp(cwd, h->mnt, mlen) &&
	    (cwd[mlen] == '/' || !cwd[mlen]))
		chdir("/");

	d = opendir("/proc/self/fd");
	if (d) {
		while ((de = readdir(d))) {
			char path[64];
			int fd = atoi(de->d_name);
			ssize_t n;

			if (fd < 3 || fd == dirfd(d))
				continue;
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			n = readlink(path, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = 0;
			if (!strncmp(link, h->mnt, mlen) &&
			    (link[mlen] == '/' || !link[mlen]))
				close(fd);
		}
		closedir(d);
	}

	maps = fopen("/proc/self/maps", "re");
	if (maps) {
		unsigned long start, end;
		char *p;

		while (fgets(line, sizeof(line), maps)) {
			p = strchr(line, '/');
			if (!p || strncmp(p, h->mnt, mlen) || p[mlen] != '/')
				continue;
			if (sscanf(line, "%lx-%lx", &start, &end) == 2)
				munmap((void *)start, end - start);
		}
		fclose(maps);
	}
}

/* $HF_KEEP_LOGS=DIR: keep every server log as DIR/<scratch dir name>.log. */
static void keep_log(const struct hf *h)
{
	const char *dir = getenv("HF_KEEP_LOGS");
	const char *name = strrchr(h->base, '/');
	char path[PATH_MAX], buf[65536];
	int in, out;
	ssize_t n;

	if (!dir || !*dir || !name)
		return;
	snprintf(path, sizeof(path), "%s%s.log", dir, name);
	in = open(h->log, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return;
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out >= 0) {
		while ((n = read(in, buf, sizeof(buf))) > 0)
			if (write(out, buf, n) != n)
				break;
		close(out);
		hf_log("server log kept as %s", path);
	}
	close(in);
}

void hf_teardown(struct hf *h, bool failed)
{
	if (!h->base[0]) {
		uring_restore(h);
		return;
	}
	/* A request stalled by fault injection would keep SIGTERM from ending the server. */
	if (h->fault_injection && h->started && !h->reaped)
		hf_ctl(h, NULL, 0, 3000, "unstall", NULL);
	release_mount_refs(h);
	if (h->started) {
		int st = hf_stop(h, SIGTERM);

		if (st != -1 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0) && !failed)
			hf_log("holdfastd exit status 0x%x on SIGTERM", st);
	}
	if (failed || getenv("HOLDFAST_SHOW_LOG"))
		dump_log(h);
	keep_log(h);
	if (h->wd_fd >= 0) {
		if (write(h->wd_fd, "D", 1) != 1)
			hf_log("watchdog pipe: %s", strerror(errno));
		close(h->wd_fd);
		h->wd_fd = -1;
		hf_wait(h->watchdog, 2000);
	}
	hf_rm_rf(h->base);
	h->base[0] = 0;
	h->started = false;
	uring_restore(h);
}

/*
 * Crash recovery helpers.
 */

int hf_ctl(const struct hf *h, char *out, size_t cap, int timeout_ms, const char *cmd, ...)
{
	const char *ctl = getenv("HOLDFASTCTL");
	const char *argv[16];
	long long end = hf_now_ms() + timeout_ms;
	size_t got = 0;
	int p[2], n = 0, status;
	const char *a;
	va_list ap;
	pid_t pid;

	if (!ctl || !*ctl)
		ctl = HF_DEFAULT_HOLDFASTCTL;
	argv[n++] = ctl;
	argv[n++] = cmd;
	argv[n++] = h->mnt;
	va_start(ap, cmd);
	while ((a = va_arg(ap, const char *)) && n < 15)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	if (out && cap)
		out[0] = 0;
	if (pipe2(p, O_CLOEXEC))
		return -1;
	pid = hf_fork_child(&p[1], 1);
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(3, 1);
		dup2(3, 2);
		close(3);
		execv(ctl, (char **)argv);
		fprintf(stderr, "exec %s: %s\n", ctl, strerror(errno));
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		long long left = end - hf_now_ms();
		char sink[512];
		ssize_t r;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		if (out && got + 1 < cap)
			r = read(p[0], out + got, cap - 1 - got);
		else
			r = read(p[0], sink, sizeof(sink));
		if (r <= 0)
			break;
		if (out && got + 1 < cap) {
			got += r;
			out[got] = 0;
		}
	}
	close(p[0]);
	status = hf_wait(pid, (int)(end > hf_now_ms() ? end - hf_now_ms() : 0) + 100);
	if (status == -1 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

bool hf_json_num(const char *doc, const char *key, double *out)
{
	char needle[128];
	const char *p;
	char *end;

	if (!doc)
		return false;
	snprintf(needle, sizeof(needle), "\"%s\":", key);
	p = strstr(doc, needle);
	if (!p)
		return false;
	p += strlen(needle);
	while (*p == ' ')
		p++;
	*out = strtod(p, &end);
	return end > p;
}

bool hf_status(const struct hf *h, char *buf, size_t cap)
{
	return hf_ctl(h, buf, cap, 5000, "status", NULL) == 0 && buf[0] == '{';
}

double hf_status_num(const struct hf *h, const char *key)
{
	static char doc[16384];
	double v;

	if (!hf_status(h, doc, sizeof(doc)) || !hf_json_num(doc, key, &v))
		return -1;
	return v;
}

bool hf_wait_stalled(const struct hf *h, int timeout_ms)
{
	long long end = hf_now_ms() + timeout_ms;

	while (hf_status_num(h, "stalled") < 1) {
		if (hf_now_ms() >= end)
			return false;
		usleep(2000);
	}
	return true;
}

pid_t hf_server_child(const struct hf *h)
{
	char path[64], buf[256];
	pid_t first = 0, second = 0;
	ssize_t n;
	int fd;

	/* The store is single-threaded: its main task's children are all of them. */
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", h->pid, h->pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	if (sscanf(buf, "%d %d", &first, &second) == 2)
		return -1;
	return first;
}

pid_t hf_wait_serving(const struct hf *h, pid_t old, int timeout_ms, char *status, size_t cap)
{
	static char doc[16384];
	long long end = hf_now_ms() + timeout_ms;
	double pid;

	if (!status) {
		status = doc;
		cap = sizeof(doc);
	}
	do {
		if (hf_status(h, status, cap) && hf_json_num(status, "pid", &pid) &&
		    (pid_t)pid != old && (pid_t)pid > 0)
			return (pid_t)pid;
		sleep_ms(1);
	} while (hf_now_ms() < end);
	return -1;
}

pid_t hf_kill_server(const struct hf *h, int timeout_ms)
{
	pid_t pid = hf_server_child(h);

	if (pid <= 0)
		return -1;
	if (kill(pid, SIGKILL))
		return -1;
	return hf_wait_serving(h, pid, timeout_ms, NULL, 0);
}

int hf_log_count(const struct hf *h, const char *needle)
{
	char line[4096];
	int count = 0;
	FILE *f;

	f = fopen(h->log, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			count++;
	fclose(f);
	return count;
}

long hf_read_num(const char *fmt, ...)
{
	char path[PATH_MAX], buf[32];
	va_list ap;
	ssize_t n;
	int fd;

	va_start(ap, fmt);
	vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return strtol(buf, NULL, 10);
}
