/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A mixed file system workload for the crash recovery and upgrade tests:
 * several client processes, each in its own directory on the mount, loop
 * over create/write/read-verify/rename/stat/mkdir/readdir/append/rmdir/
 * unlink and check every result, while the test kills or replaces the
 * server under them.  Results land in a shared mapping; a worker stops at
 * its first failure (later results would only be consequences of it) and
 * records what failed.
 *
 * Header-only (static functions) so that recovery_test and upgrade_test can
 * share it without a change to the Makefile's link line.
 */
#ifndef HOLDFAST_RECOVERY_WORKLOAD_H
#define HOLDFAST_RECOVERY_WORKLOAD_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "holdfast_fixture.h"

#define WL_MAX_WORKERS	8
#define WL_MAX_FILE	(64 * 1024)

struct wl_worker {
	long iterations;	/* completed loops */
	long syscalls;		/* checked calls */
	long failures;		/* failed calls (0 or 1: a worker stops there) */
	long corrupt;		/* bytes read back wrong */
	long bytes;		/* bytes written and verified */
	int done;		/* worker finished its final check */
	char what[512];		/* the first failure */
};

struct wl_shared {
	volatile int stop;
	int nworkers;
	struct wl_worker w[WL_MAX_WORKERS];
};

struct wl {
	struct wl_shared *sh;
	pid_t pids[WL_MAX_WORKERS];
	int n;
};

static void __attribute__((format(printf, 2, 3)))
wl_note(struct wl_worker *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->what, sizeof(w->what), fmt, ap);
	va_end(ap);
}

#define WL_FAIL(_w, _fmt, ...) do {					\
	(_w)->failures++;						\
	wl_note(_w, _fmt, ##__VA_ARGS__);				\
	return -1;							\
} while (0)

#define WL_CHECK(_w, _cond, _fmt, ...) do {				\
	(_w)->syscalls++;						\
	if (!(_cond))							\
		WL_FAIL(_w, _fmt ": %s", ##__VA_ARGS__, strerror(errno)); \
} while (0)

/* Count bytes of @buf that differ from the pattern; 0 if all are right. */
static long wl_count_bad(const unsigned char *buf, size_t len, unsigned int seed, off_t off)
{
	unsigned char *want = malloc(len ? len : 1);
	long bad = 0;
	size_t i;

	if (!want)
		return (long)len;
	hf_fill(want, len, seed, off);
	for (i = 0; i < len; i++)
		bad += buf[i] != want[i];
	free(want);
	return bad;
}

/* The append log must hold exactly lines 0..n-1 of this worker, in order. */
static int wl_check_log(struct wl_worker *w, const char *path, int id, long n)
{
	static char buf[1 << 20];
	char want[32];
	ssize_t got;
	long i;
	size_t off = 0;

	got = hf_read_file(path, buf, sizeof(buf));
	WL_CHECK(w, got >= 0, "read %s", path);
	for (i = 0; i < n; i++) {
		int l = snprintf(want, sizeof(want), "%02d %08ld\n", id, i);

		if (off + l > (size_t)got || memcmp(buf + off, want, l)) {
			w->corrupt++;
			WL_FAIL(w, "append log %s: line %ld is not \"%02d %08ld\" (%zd bytes, "
				"expected %ld lines)", path, i, id, i, got, n);
		}
		off += l;
	}
	if (off != (size_t)got) {
		w->corrupt++;
		WL_FAIL(w, "append log %s: %zd bytes, %zu expected (a line landed twice?)",
			path, got, off);
	}
	return 0;
}

/* One pass over every operation; @k numbers the pass. */
static int wl_iteration(struct wl_worker *w, const char *dir, int id, long k)
{
	static unsigned char buf[WL_MAX_FILE], rbuf[WL_MAX_FILE + 1];
	char f[PATH_MAX], g[PATH_MAX], d[PATH_MAX], log[PATH_MAX], line[32];
	unsigned int seed = (unsigned int)(id * 1000003 + k);
	size_t size = 1 + (size_t)(rand() % WL_MAX_FILE), done;
	struct stat st;
	int fd, seen, l;
	ssize_t n;
	DIR *dp;
	struct dirent *de;

	snprintf(f, sizeof(f), "%.3900s/f%ld", dir, k);
	snprintf(g, sizeof(g), "%.3900s/g%ld", dir, k);
	snprintf(d, sizeof(d), "%.3900s/d%ld", dir, k);
	snprintf(log, sizeof(log), "%.3900s/log", dir);

	/* create + write in uneven pieces */
	fd = open(f, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
	WL_CHECK(w, fd >= 0, "create %s", f);
	hf_fill(buf, size, seed, 0);
	for (done = 0; done < size; ) {
		size_t chunk = 1 + (size_t)(rand() % 16384);

		if (chunk > size - done)
			chunk = size - done;
		n = write(fd, buf + done, chunk);
		WL_CHECK(w, n >= 0, "write %s at %zu", f, done);
		if ((size_t)n != chunk)
			WL_FAIL(w, "write %s at %zu: %zd of %zu bytes", f, done, n, chunk);
		done += n;
	}
	WL_CHECK(w, close(fd) == 0, "close %s", f);

	/* read back and verify */
	fd = open(f, O_RDONLY | O_CLOEXEC);
	WL_CHECK(w, fd >= 0, "open %s", f);
	for (done = 0; done <= size; ) {
		n = read(fd, rbuf + done, sizeof(rbuf) - done);
		WL_CHECK(w, n >= 0, "read %s at %zu", f, done);
		if (n == 0)
			break;
		done += n;
	}
	WL_CHECK(w, close(fd) == 0, "close %s", f);
	if (done != size)
		WL_FAIL(w, "read %s: %zu bytes, wrote %zu", f, done, size);
	w->corrupt += wl_count_bad(rbuf, size, seed, 0);
	if (w->corrupt)
		WL_FAIL(w, "read %s: %ld bytes differ from what was written", f, w->corrupt);
	w->bytes += size;

	/* rename + stat both names */
	WL_CHECK(w, rename(f, g) == 0, "rename %s", f);
	WL_CHECK(w, stat(g, &st) == 0, "stat %s", g);
	if ((size_t)st.st_size != size)
		WL_FAIL(w, "stat %s: size %lld, wrote %zu", g, (long long)st.st_size, size);
	errno = 0;
	WL_CHECK(w, stat(f, &st) < 0 && errno == ENOENT, "stat %s after rename (want ENOENT)", f);

	/* mkdir, then the directory must list exactly what we made */
	WL_CHECK(w, mkdir(d, 0755) == 0, "mkdir %s", d);
	WL_CHECK(w, stat(d, &st) == 0 && S_ISDIR(st.st_mode), "stat %s", d);
	dp = opendir(dir);
	WL_CHECK(w, dp != NULL, "opendir %s", dir);
	seen = 0;
	errno = 0;
	while ((de = readdir(dp))) {
		const char *nm = de->d_name;

		if (!strcmp(nm, ".") || !strcmp(nm, ".."))
			continue;
		if (!strcmp(nm, "log") || !strcmp(nm, strrchr(g, '/') + 1) ||
		    !strcmp(nm, strrchr(d, '/') + 1)) {
			seen++;
			continue;
		}
		closedir(dp);
		WL_FAIL(w, "readdir %s: unexpected entry '%s' in pass %ld", dir, nm, k);
	}
	w->syscalls++;
	if (errno) {
		int e = errno;

		closedir(dp);
		WL_FAIL(w, "readdir %s: %s", dir, strerror(e));
	}
	closedir(dp);
	if (seen != (k ? 3 : 2))
		WL_FAIL(w, "readdir %s: %d of the expected entries in pass %ld", dir, seen, k);

	/* append one line through a fresh O_APPEND fd */
	fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	WL_CHECK(w, fd >= 0, "open %s O_APPEND", log);
	l = snprintf(line, sizeof(line), "%02d %08ld\n", id, k);
	n = write(fd, line, l);
	WL_CHECK(w, n >= 0, "append to %s", log);
	if (n != l)
		WL_FAIL(w, "append to %s: %zd of %d bytes", log, n, l);
	WL_CHECK(w, close(fd) == 0, "close %s", log);

	/* and take it all down again */
	WL_CHECK(w, rmdir(d) == 0, "rmdir %s", d);
	WL_CHECK(w, unlink(g) == 0, "unlink %s", g);
	errno = 0;
	WL_CHECK(w, stat(g, &st) < 0 && errno == ENOENT, "stat %s after unlink (want ENOENT)", g);

	if (k % 32 == 31 && wl_check_log(w, log, id, k + 1))
		return -1;
	return 0;
}

static void __attribute__((noreturn)) wl_worker_main(struct wl_shared *sh, const char *mnt, int id)
{
	struct wl_worker *w = &sh->w[id];
	char dir[PATH_MAX], log[PATH_MAX];
	long k;

	srand((unsigned int)(getpid() * 7919 + id));
	snprintf(dir, sizeof(dir), "%.3900s/w%d", mnt, id);
	snprintf(log, sizeof(log), "%.3900s/log", dir);
	for (k = 0; !sh->stop; k++) {
		if (wl_iteration(w, dir, id, k))
			break;
		w->iterations = k + 1;
	}
	if (!w->failures)
		wl_check_log(w, log, id, w->iterations);
	w->done = 1;
	_exit(w->failures ? 1 : 0);
}

/* Make the worker directories and start @n workers on @mnt. */
static int wl_start(struct wl *wl, const char *mnt, int n)
{
	int i;

	memset(wl, 0, sizeof(*wl));
	if (n > WL_MAX_WORKERS)
		n = WL_MAX_WORKERS;
	wl->sh = mmap(NULL, sizeof(*wl->sh), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (wl->sh == MAP_FAILED) {
		wl->sh = NULL;
		return -1;
	}
	wl->sh->nworkers = n;
	for (i = 0; i < n; i++) {
		char dir[PATH_MAX];

		snprintf(dir, sizeof(dir), "%.3900s/w%d", mnt, i);
		if (mkdir(dir, 0755))
			return -1;
	}
	for (i = 0; i < n; i++) {
		pid_t pid = hf_fork_child(NULL, 0);

		if (pid < 0)
			return -1;
		if (pid == 0)
			wl_worker_main(wl->sh, mnt, i);
		wl->pids[i] = pid;
		wl->n++;
	}
	return 0;
}

/* Any worker failed so far? */
static bool wl_failed(const struct wl *wl)
{
	int i;

	for (i = 0; i < wl->n; i++)
		if (wl->sh->w[i].failures || wl->sh->w[i].corrupt)
			return true;
	return false;
}

/*
 * Stop the workers and reap them within @timeout_ms in all.  A worker stuck
 * on a request nobody will answer is left running (and counted): the
 * caller aborts the connection, then wl_free() reaps it.  Returns the
 * number of workers that did not finish cleanly.
 */
static int wl_stop(struct wl *wl, int timeout_ms)
{
	long long end = hf_now_ms() + timeout_ms;
	int i, left, bad = 0;

	if (!wl->sh)
		return 0;
	wl->sh->stop = 1;
	do {
		left = 0;
		for (i = 0; i < wl->n; i++) {
			int st;

			if (wl->pids[i] <= 0)
				continue;
			if (waitpid(wl->pids[i], &st, WNOHANG) != wl->pids[i]) {
				left++;
				continue;
			}
			if (!WIFEXITED(st) || WEXITSTATUS(st) || !wl->sh->w[i].done)
				bad++;
			wl->pids[i] = 0;
		}
		if (left)
			usleep(10000);
	} while (left && hf_now_ms() < end);
	return bad + left;
}

/* Workers wl_stop() could not reap: stuck on the mount. */
static int wl_stuck(const struct wl *wl)
{
	int i, n = 0;

	for (i = 0; i < wl->n; i++)
		n += wl->pids[i] > 0;
	return n;
}

static void wl_totals(const struct wl *wl, long *iterations, long *syscalls, long *failures,
		      long *corrupt, long *bytes)
{
	int i;

	*iterations = *syscalls = *failures = *corrupt = *bytes = 0;
	for (i = 0; i < wl->n; i++) {
		*iterations += wl->sh->w[i].iterations;
		*syscalls += wl->sh->w[i].syscalls;
		*failures += wl->sh->w[i].failures;
		*corrupt += wl->sh->w[i].corrupt;
		*bytes += wl->sh->w[i].bytes;
	}
}

static void wl_free(struct wl *wl)
{
	int i;

	if (!wl->sh)
		return;
	for (i = 0; i < wl->n; i++)
		if (wl->pids[i] > 0) {
			kill(wl->pids[i], SIGKILL);
			hf_wait(wl->pids[i], 2000);
		}
	munmap(wl->sh, sizeof(*wl->sh));
	wl->sh = NULL;
}

#endif /* HOLDFAST_RECOVERY_WORKLOAD_H */
