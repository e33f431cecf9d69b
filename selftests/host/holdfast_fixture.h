/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared fixture code for the holdfast host selftests.
 *
 * Every test gets its own scratch tree and its own holdfastd:
 *
 *   /tmp/holdfast-st.XXXXXX/        base (mode 0755, so uid 65534 can walk it)
 *       srv/                        the "server side" parent of the source
 *       srv/src/                    --shared-dir
 *       mnt/                        --mountpoint
 *       server.log                  holdfastd stdout+stderr
 *
 * srv/ exists so that "the parent of the source" (server side) and "the
 * parent of the mountpoint" (client side) are different directories; the
 * jail tests rely on telling them apart.
 *
 * Nothing here may outlive a test: teardown stops the server with SIGTERM,
 * then unmounts lazily, then aborts the connection through a private
 * fusectl mount.  A watchdog process (own process group, so the harness's
 * kill(-pgrp, SIGKILL) on timeout does not take it down) does the same if
 * the test process dies or overruns without running teardown.
 *
 * Rules for test code (see lab-kernel.md §1.7, the hang lesson):
 *  - fork children only through hf_fork_child()/hf_run_child(): they close
 *    every inherited fd and die with the test process;
 *  - never use ASSERT_*() in a forked child (it would longjmp into the
 *    child's copy of the fixture and run teardown there);
 *  - never use ASSERT_*() in FIXTURE_TEARDOWN (6.1's harness would loop).
 */
#ifndef HOLDFAST_FIXTURE_H
#define HOLDFAST_FIXTURE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#ifndef HF_REPO_ROOT
#define HF_REPO_ROOT "."
#endif

/* Where the binaries are unless $HOLDFASTD / $HOLDFASTCTL say otherwise. */
#define HF_DEFAULT_HOLDFASTD	HF_REPO_ROOT "/build/userspace/holdfastd"
#define HF_DEFAULT_HOLDFASTCTL	HF_REPO_ROOT "/build/userspace/holdfastctl"

/* The uid/gid every "unprivileged caller" test switches to. */
#define HF_NOBODY	65534

/* How long the server gets to come up, and to go away on SIGTERM. */
#define HF_READY_TIMEOUT_MS	10000
#define HF_STOP_TIMEOUT_MS	10000
/* How long a mounted server gets to say "ready" before we go ahead anyway. */
#define HF_READY_GRACE_MS	2000

struct hf_opts {
	const char *cache;	/* "auto", "never", ...; NULL = server default */
	bool writeback;
	bool xattr;
	bool readonly;
	int threads;		/* --thread-pool-size; 0 = server default */
	bool fault_injection;	/* --fault-injection (holdfastctl stall/unstall) */
	/*
	 * More holdfastd options, space-separated; they come last, so they
	 * win.  $HOLDFAST_TRANSPORT (dev, uring, auto), if set, adds
	 * "--transport VALUE" before them: HOLDFAST_TRANSPORT=uring
	 * selftests/run-host.sh runs every test over FUSE-over-io_uring (the
	 * fuse module's enable_uring must be Y).
	 */
	const char *extra_args;
	/*
	 * "dev" or "uring": --transport for this test, whatever
	 * $HOLDFAST_TRANSPORT says.  With "uring", hf_start() sets the fuse
	 * module's enable_uring to Y and hf_teardown() puts the old value
	 * back; HF_SETUP skips the test, saying why, if that cannot be done.
	 */
	const char *transport;
	/*
	 * --shared-dir instead of the scratch tree's srv/src: for a server
	 * whose backing files live somewhere particular (another server's
	 * mount, to make backing-file I/O wait on demand).
	 */
	const char *shared_dir;
	/*
	 * > 0: start holdfastd under "holdfast-fdstore --max-fds N" (next to
	 * $HOLDFASTD) instead of letting it start the store with its defaults.
	 */
	int store_max_fds;
};

struct hf {
	char base[256];		/* short: every other path is built on it */
	char srv[PATH_MAX];
	char src[PATH_MAX];
	char mnt[PATH_MAX];
	char log[PATH_MAX];
	pid_t pid;		/* holdfastd, a child of the test process */
	pid_t watchdog;
	int wd_fd;		/* write end; 'D' + close = teardown done */
	dev_t dev;		/* st_dev of the mount, for fusectl */
	int wstatus;		/* server wait status once reaped */
	bool reaped;
	bool started;
	bool fault_injection;	/* teardown releases stalled requests first */
	char uring_old;		/* enable_uring before hf_start() set it; 0: untouched */
};

/*
 * Why a test asking for @o->transport "uring" cannot run here (no
 * FUSE-over-io_uring in the kernel, enable_uring not writable), or NULL.
 */
const char *hf_transport_unavailable(const struct hf_opts *o);

/* The fuse module's enable_uring: 'Y' or 'N', 0 if the kernel has none. */
char hf_uring_param(void);
/* Set it; 0 or -1 with errno. */
int hf_uring_set(char v);

/*
 * Start holdfastd on a fresh scratch tree and wait until the mount is live.
 * On failure everything is cleaned up again, a reason is logged, and -1 is
 * returned, so FIXTURE_SETUP can simply ASSERT_EQ(0, hf_start(...)).
 * @timeout_s is the test's timeout; the watchdog fires a little after it.
 */
int hf_start(struct hf *h, const struct hf_opts *o, unsigned int timeout_s);

/*
 * Send @sig to the server and wait (bounded) for it to exit; then make sure
 * MNT is unmounted, escalating to a lazy unmount and a connection abort.
 * Returns the server's wait status, or -1 if it had to be killed.
 * Idempotent.
 */
int hf_stop(struct hf *h, int sig);

/*
 * hf_stop(SIGTERM), dump the server log if @failed, remove the scratch tree.
 * With $HF_KEEP_LOGS=DIR the server log is first copied into DIR.
 */
void hf_teardown(struct hf *h, bool failed);

/* True if @path is a mount point in /proc/self/mountinfo; fstype copied out. */
bool hf_is_mounted(const char *path, char *fstype, size_t len);

/* Abort the FUSE connection with device number @dev via a private fusectl. */
int hf_abort_conn(dev_t dev);

/*
 * "MNT/rel" and "SRC/rel".  The result lives in a small ring of static
 * buffers: good for a handful of paths in one expression, copy it to keep it.
 */
const char *hf_m(const struct hf *h, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
const char *hf_s(const struct hf *h, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
const char *hf_b(const struct hf *h, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Whole-file helpers; they return -1 and keep errno on failure. */
int hf_write_file(const char *path, const void *buf, size_t len, mode_t mode);
ssize_t hf_read_file(const char *path, void *buf, size_t cap);
/* Deterministic, position-dependent bytes so misplaced data is detected. */
void hf_fill(void *buf, size_t len, unsigned int seed, off_t off);
/* Offset of the first byte that differs from hf_fill(seed, off), or -1. */
ssize_t hf_check(const void *buf, size_t len, unsigned int seed, off_t off);

/*
 * fork() for test clients: the child closes every fd >= 3 except those in
 * @keep (moved to 3, 4, ... in order), gets SIGKILL when the test process
 * dies, and must leave with _exit().  Returns the pid in the parent.
 */
pid_t hf_fork_child(const int *keep, int nkeep);

/*
 * Run @fn in a child that first drops to @uid/@gid with no supplementary
 * groups (uid == -1: stay root).  Returns fn's return value (0..255) or -1
 * if the child could not switch ids, crashed or timed out.
 */
int hf_run_child(uid_t uid, gid_t gid, int (*fn)(void *), void *arg, int timeout_ms);

/* waitpid() with a bound; on timeout SIGKILL.  Returns the status or -1. */
int hf_wait(pid_t pid, int timeout_ms);

/* Descendants of @root (children, grandchildren, ...) from /proc. */
int hf_descendants(pid_t root, pid_t *out, int max);

/* Alive and not a zombie; works for processes that are not our children. */
bool hf_pid_alive(pid_t pid);

/* Remove a tree without crossing mount points; errors are ignored. */
void hf_rm_rf(const char *path);

/* Milliseconds on CLOCK_MONOTONIC. */
long long hf_now_ms(void);

/*
 * Crash recovery helpers.  h->pid is the fd store (holdfastd re-executes
 * itself as holdfast-fdstore); the serving holdfastd is its only child.
 */

/*
 * Run "holdfastctl CMD MNT [ARGS...]" (the argument list ends with NULL),
 * killed after @timeout_ms.  Its stdout and stderr, merged, go to @out
 * (NUL-terminated; @out may be NULL).  Returns the exit status, or -1 if it
 * could not run, died by a signal or timed out.
 */
int hf_ctl(const struct hf *h, char *out, size_t cap, int timeout_ms, const char *cmd, ...)
	__attribute__((sentinel));

/* The number after the first "KEY": in @doc (no nesting awareness). */
bool hf_json_num(const char *doc, const char *key, double *out);

/* holdfastctl status into @buf; false if no server answered. */
bool hf_status(const struct hf *h, char *buf, size_t cap);

/* One number from holdfastctl status; -1 if no server answered or no KEY. */
double hf_status_num(const struct hf *h, const char *key);

/* Wait up to @timeout_ms until at least one request is stalled (fault injection). */
bool hf_wait_stalled(const struct hf *h, int timeout_ms);

/* The store's child (the serving holdfastd); 0 if none, -1 if several. */
pid_t hf_server_child(const struct hf *h);

/*
 * Wait until a server whose pid is not @old answers status (it does so only
 * once it serves: the control socket opens after FUSE_NOTIFY_RESEND).  The
 * status document is left in @status if given.  Returns the new pid, or -1
 * after @timeout_ms.
 */
pid_t hf_wait_serving(const struct hf *h, pid_t old, int timeout_ms, char *status, size_t cap);

/*
 * SIGKILL the serving holdfastd (never the store) and wait for its
 * successor to serve.  Returns the new pid, or -1 (no server to kill, or
 * none serving again within @timeout_ms).
 */
pid_t hf_kill_server(const struct hf *h, int timeout_ms);

/* Lines of the server log containing @needle. */
int hf_log_count(const struct hf *h, const char *needle);

/* The number a sysfs-like file holds (printf'd path), or -1. */
long hf_read_num(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Glue for test files; they include kselftest_harness.h first.
 */
#ifdef __KSELFTEST_HARNESS_H

/*
 * The server needs root to open /dev/fuse, mount and switch credentials.
 * A SKIP in 6.1's FIXTURE_SETUP would still run the test body, so leave
 * the test process with the harness's "skip" exit code instead.
 */
#define HF_SETUP(_opts) do {						\
	const char *_why;						\
									\
	if (geteuid() != 0)						\
		SKIP(_exit(255), "holdfastd must run as root (euid %d)",	\
		     (int)geteuid());						\
	_why = hf_transport_unavailable(_opts);				\
	if (_why)							\
		SKIP(_exit(255), "%s", _why);				\
	ASSERT_EQ(0, hf_start(&self->h, (_opts), _metadata->timeout));	\
} while (0)

#define HF_TEARDOWN() hf_teardown(&self->h, !_metadata->passed)

/* Short forms for the test bodies, which all have a "self->h". */
#define M(...) hf_m(&self->h, __VA_ARGS__)
#define S(...) hf_s(&self->h, __VA_ARGS__)

/* The usual cache-mode variants: default, uncached, fully cached + writeback. */
#define HF_CACHE_VARIANTS(fixture)					\
FIXTURE_VARIANT(fixture) {						\
	struct hf_opts o;						\
};									\
FIXTURE_VARIANT_ADD(fixture, cache_auto) {				\
	.o = { .cache = "auto" },					\
};									\
FIXTURE_VARIANT_ADD(fixture, cache_never) {				\
	.o = { .cache = "never" },					\
};									\
FIXTURE_VARIANT_ADD(fixture, cache_always_wb) {			\
	.o = { .cache = "always", .writeback = true },			\
}

/* The same tests over /dev/fuse and over FUSE-over-io_uring. */
#define HF_TRANSPORT_VARIANTS(fixture)					\
FIXTURE_VARIANT(fixture) {						\
	const char *transport;	/* hf_opts.transport */			\
};									\
FIXTURE_VARIANT_ADD(fixture, dev) {					\
	.transport = "dev",						\
};									\
FIXTURE_VARIANT_ADD(fixture, uring) {					\
	.transport = "uring",						\
}

#endif /* __KSELFTEST_HARNESS_H */

#endif /* HOLDFAST_FIXTURE_H */
