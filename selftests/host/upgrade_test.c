// SPDX-License-Identifier: GPL-2.0
/*
 * Live upgrade: `holdfastctl upgrade MNT [--binary PATH]` hands the mount to
 * a new server process through the fd store.  Clients must not notice: no
 * syscall fails, nothing is done twice, and the pause is reported.
 *
 * Counter semantics pinned here: "restarts" and "generation" in the status
 * count every successor process, a handover as well as a crash
 * (generation == restarts + 1), and a handover is never counted as a crash
 * by the store's crash-loop guard.  After an upgrade to another binary, the
 * store keeps starting that binary (also after a crash).
 *
 * Clients run in hf_fork_child() children; every wait is bounded.
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
#include <sys/stat.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"
#include "recovery_workload.h"

/* holdfastctl itself waits up to 20 s for the successor. */
#define UPG_CTL_TIMEOUT_MS	25000

FIXTURE(upg) {
	struct hf h;
};

/*
 * Over FUSE-over-io_uring the old server cannot stop the kernel from
 * handing its entries requests; the successor adopts them.
 */
HF_TRANSPORT_VARIANTS(upg);

FIXTURE_SETUP(upg)
{
	struct hf_opts o = { .fault_injection = true, .transport = variant->transport };

	HF_SETUP(&o);
}

FIXTURE_TEARDOWN(upg)
{
	HF_TEARDOWN();
}

static double num(const char *doc, const char *key)
{
	double v;

	return hf_json_num(doc, key, &v) ? v : -1;
}

/* The executable of @pid, or "" */
static const char *exe_of(pid_t pid)
{
	static char buf[PATH_MAX];
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	n = readlink(path, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

/* The mount answers: a small file written and read back. */
static bool mount_works(const struct hf *h, const char *name)
{
	char buf[32];

	if (hf_write_file(hf_m(h, "%s", name), "alive", 5, 0644))
		return false;
	return hf_read_file(hf_m(h, "%s", name), buf, sizeof(buf)) == 5 && !memcmp(buf, "alive", 5);
}

/*
 * Run one upgrade and check its report and the successor's status.
 * Returns the reported handover_ms (or -1).
 */
static double upgrade_once(struct __test_metadata *_metadata, const struct hf *h,
			   const char *binary)
{
	static char out[2048], doc[16384];
	double restarts0, gen0, ms;
	pid_t old = hf_server_child(h), now;
	int rc;

	if (!hf_status(h, doc, sizeof(doc))) {
		EXPECT_TRUE(false) TH_LOG("no status before the upgrade");
		return -1;
	}
	restarts0 = num(doc, "restarts");
	gen0 = num(doc, "generation");
	EXPECT_EQ(old, (pid_t)num(doc, "pid"));

	if (binary)
		rc = hf_ctl(h, out, sizeof(out), UPG_CTL_TIMEOUT_MS, "upgrade", "--binary", binary,
			    NULL);
	else
		rc = hf_ctl(h, out, sizeof(out), UPG_CTL_TIMEOUT_MS, "upgrade", NULL);
	EXPECT_EQ(0, rc) TH_LOG("holdfastctl upgrade: %s", out);
	if (rc)
		return -1;
	EXPECT_NE(NULL, strstr(out, "\"upgraded\":true")) TH_LOG("%s", out);
	EXPECT_EQ(old, (pid_t)num(out, "old_pid")) TH_LOG("%s", out);
	EXPECT_NE(old, (pid_t)num(out, "new_pid")) TH_LOG("%s", out);
	ms = num(out, "handover_ms");
	EXPECT_LT(0, ms) TH_LOG("%s", out);

	now = hf_server_child(h);
	EXPECT_EQ(now, (pid_t)num(out, "new_pid")) TH_LOG("the store's child is %d", now);
	EXPECT_FALSE(hf_pid_alive(old)) TH_LOG("old server %d still running", old);
	if (!hf_status(h, doc, sizeof(doc))) {
		EXPECT_TRUE(false) TH_LOG("no status after the upgrade");
		return ms;
	}
	EXPECT_EQ(now, (pid_t)num(doc, "pid"));
	EXPECT_EQ(restarts0 + 1, num(doc, "restarts"));
	EXPECT_EQ(gen0 + 1, num(doc, "generation"));
	EXPECT_EQ(num(doc, "restarts") + 1, num(doc, "generation"));
	EXPECT_NE(NULL, strstr(doc, "\"recovered\":true"));
	TH_LOG("upgrade %d -> %d: handover %.1f ms (holdfastctl), old exit -> serving %.2f ms, "
	       "attach %.2f ms", old, now, ms, num(doc, "last_crash_to_serving_ms"),
	       num(doc, "last_attach_ms"));
	return ms;
}

/*
 * Upgrades while workers keep making requests.  Over io_uring a request the
 * kernel hands to one of the old server's idle entries while that process
 * exits fails with ECANCELED on 6.18 (Documentation/io-uring.rst, "Risks":
 * the exit window); CI saw it once in this test after passthrough became the
 * default on the ring (the ring then carries only metadata, so its entries
 * sit idle more).  So the uring variant, like the other tests that keep
 * issuing requests through a server's exit, is built only with
 * -DHF_URING_EXIT_RACE.
 */
FIXTURE(upg_load) {
	struct hf h;
};

FIXTURE_VARIANT(upg_load) {
	const char *transport;
};

FIXTURE_VARIANT_ADD(upg_load, dev) {
	.transport = "dev",
};

#ifdef HF_URING_EXIT_RACE
FIXTURE_VARIANT_ADD(upg_load, uring) {
	.transport = "uring",
};
#endif

FIXTURE_SETUP(upg_load)
{
	struct hf_opts o = { .fault_injection = true, .transport = variant->transport };

	HF_SETUP(&o);
}

FIXTURE_TEARDOWN(upg_load)
{
	HF_TEARDOWN();
}

TEST_F_TIMEOUT(upg_load, upgrade_under_load, 90)
{
	long iterations, syscalls, failures, corrupt, bytes;
	struct wl wl;
	int i, bad, upgrades = 0;

	ASSERT_EQ(0, wl_start(&wl, self->h.mnt, 3));
	usleep(500000);
	for (i = 0; i < 3 && !wl_failed(&wl); i++) {
		if (upgrade_once(_metadata, &self->h, NULL) < 0)
			break;
		upgrades++;
		usleep(500000);
	}
	bad = wl_stop(&wl, 20000);
	if (wl_stuck(&wl)) {
		TH_LOG("%d workers stuck on the mount: aborting the connection", wl_stuck(&wl));
		hf_abort_conn(self->h.dev);
	}
	wl_totals(&wl, &iterations, &syscalls, &failures, &corrupt, &bytes);
	for (i = 0; i < wl.n; i++)
		if (wl.sh->w[i].what[0])
			TH_LOG("worker %d: %s", i, wl.sh->w[i].what);
	EXPECT_EQ(0, failures);
	EXPECT_EQ(0, corrupt);
	EXPECT_EQ(0, bad);
	EXPECT_EQ(3, upgrades);
	EXPECT_EQ(upgrades, hf_status_num(&self->h, "restarts"));
	TH_LOG("%d upgrades under load: %ld passes, %ld checked syscalls, %ld MiB verified, "
	       "%ld failed, %ld bytes corrupt", upgrades, iterations, syscalls, bytes >> 20,
	       failures, corrupt);
	wl_free(&wl);
}

/* Copy a file, keeping it executable. */
static int copy_exe(const char *from, const char *to)
{
	char buf[65536];
	int in, out, ret = -1;
	ssize_t n;

	in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -1;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (out >= 0) {
		ret = 0;
		while ((n = read(in, buf, sizeof(buf))) > 0)
			if (write(out, buf, n) != n) {
				ret = -1;
				break;
			}
		if (n < 0)
			ret = -1;
		if (close(out))
			ret = -1;
	}
	close(in);
	return ret;
}

static const char *holdfastd_path(void)
{
	const char *bin = getenv("HOLDFASTD");

	return bin && *bin ? bin : HF_DEFAULT_HOLDFASTD;
}

TEST_F_TIMEOUT(upg, upgrade_to_other_binary, 60)
{
	char copy[PATH_MAX];
	pid_t after;
	struct stat st;

	/* Another path, in a directory without holdfast-fdstore next to it. */
	snprintf(copy, sizeof(copy), "%s/alt", self->h.base);
	ASSERT_EQ(0, mkdir(copy, 0755));
	snprintf(copy, sizeof(copy), "%s/alt/holdfastd-next", self->h.base);
	ASSERT_EQ(0, copy_exe(holdfastd_path(), copy));
	ASSERT_EQ(0, stat(copy, &st));

	ASSERT_TRUE(mount_works(&self->h, "f"));
	upgrade_once(_metadata, &self->h, copy);
	after = hf_server_child(&self->h);
	EXPECT_STREQ(copy, exe_of(after));
	EXPECT_TRUE(mount_works(&self->h, "f"));

	/* A crash now restarts the new binary, not the old one. */
	{
		after = hf_kill_server(&self->h, 10000);
		ASSERT_LT(0, after);
		EXPECT_STREQ(copy, exe_of(after));
		EXPECT_TRUE(mount_works(&self->h, "g"));
		EXPECT_EQ(2, hf_status_num(&self->h, "restarts"));
	}
}

TEST_F(upg, upgrade_to_bad_binary_refused)
{
	static char out[2048];
	char noexec[PATH_MAX];
	pid_t before = hf_server_child(&self->h);
	int rc;

	ASSERT_LT(0, before);
	rc = hf_ctl(&self->h, out, sizeof(out), UPG_CTL_TIMEOUT_MS, "upgrade", "--binary",
		    "/nonexistent/holdfastd", NULL);
	EXPECT_NE(0, rc) TH_LOG("upgrade to a missing binary: %s", out);
	EXPECT_NE(NULL, strstr(out, "error")) TH_LOG("no error message: %s", out);
	EXPECT_NE(NULL, strstr(out, "/nonexistent/holdfastd")) TH_LOG("%s", out);

	/* Present but not executable: refused the same way. */
	snprintf(noexec, sizeof(noexec), "%s/holdfastd-noexec", self->h.base);
	ASSERT_EQ(0, hf_write_file(noexec, "#!/bin/sh\nexit 0\n", 17, 0644));
	rc = hf_ctl(&self->h, out, sizeof(out), UPG_CTL_TIMEOUT_MS, "upgrade", "--binary",
		    noexec, NULL);
	EXPECT_NE(0, rc) TH_LOG("upgrade to a non-executable file: %s", out);

	/* The old server goes on serving, untouched. */
	EXPECT_EQ(before, hf_server_child(&self->h));
	EXPECT_EQ(before, (pid_t)hf_status_num(&self->h, "pid"));
	EXPECT_EQ(0, hf_status_num(&self->h, "restarts"));
	EXPECT_TRUE(mount_works(&self->h, "f"));
	EXPECT_STREQ(holdfastd_path(), exe_of(hf_server_child(&self->h)));
}

/*
 * An executable that is not a working server (here: a script that exits 1
 * at once).  The old server has handed over by the time the new one fails,
 * so only the store can save the mount: it must go back to the binary that
 * worked rather than retry the broken one until its crash-loop guard gives
 * up and the mount's connection ends.  Bounded: a server must serve within
 * 10 s of the upgrade command.
 */
TEST_F_TIMEOUT(upg, upgrade_to_failing_binary_keeps_mount, 60)
{
	static char out[2048];
	char bad[PATH_MAX];
	pid_t before = hf_server_child(&self->h), now;
	int rc;

	snprintf(bad, sizeof(bad), "%s/holdfastd-broken", self->h.base);
	ASSERT_EQ(0, hf_write_file(bad, "#!/bin/sh\necho 'broken server' >&2\nexit 1\n", 43,
				   0755));
	rc = hf_ctl(&self->h, out, sizeof(out), 6000, "upgrade", "--binary", bad, NULL);
	TH_LOG("holdfastctl upgrade --binary %s: exit %d: %s", bad, rc, out);
	now = hf_wait_serving(&self->h, before, 4000, NULL, 0);
	TH_LOG("store log: %d starts of the broken binary, %d 'crash loop'",
	       hf_log_count(&self->h, "broken server"), hf_log_count(&self->h, "crash loop"));
	if (now <= 0) {
		/* Nothing serves: free anything stuck before failing. */
		hf_abort_conn(self->h.dev);
		ASSERT_LT(0, now) TH_LOG("no server serving 10 s after an upgrade to a broken "
					 "binary");
	}
	EXPECT_STREQ(holdfastd_path(), exe_of(now));
	EXPECT_TRUE(mount_works(&self->h, "f"));
}

/* A request the old server holds when it hands over reaches the new one. */
static int op_mkdir(const struct hf *h, const void *arg)
{
	return mkdir(hf_m(h, "held"), 0755) ? errno : 0;
}

TEST_F_TIMEOUT(upg, upgrade_with_request_in_flight, 60)
{
	static char out[1024], doc[16384];
	struct pollfd pfd;
	struct stat st;
	int p[2], r = -1;
	pid_t c;

	ASSERT_EQ(0, hf_ctl(&self->h, out, sizeof(out), 5000, "stall", "MKDIR", "after", "1",
			    NULL)) TH_LOG("%s", out);
	ASSERT_EQ(0, pipe2(p, O_CLOEXEC));
	c = hf_fork_child(&p[1], 1);
	ASSERT_LE(0, c);
	if (c == 0) {
		int e = op_mkdir(&self->h, NULL);

		_exit(write(3, &e, sizeof(e)) == sizeof(e) ? 0 : 1);
	}
	close(p[1]);
	hf_wait_stalled(&self->h, 5000);
	ASSERT_EQ(1, hf_status_num(&self->h, "stalled"));

	/* The held worker never finishes: the old server gives it 2 s, then goes. */
	upgrade_once(_metadata, &self->h, NULL);
	pfd = (struct pollfd){ .fd = p[0], .events = POLLIN };
	if (poll(&pfd, 1, 10000) == 1 && read(p[0], &r, sizeof(r)) == sizeof(r)) {
		EXPECT_EQ(0, r) TH_LOG("mkdir across the upgrade: %s", strerror(r));
	} else {
		EXPECT_TRUE(false) TH_LOG("mkdir never returned after the upgrade");
	}
	if (r == -1)
		hf_abort_conn(self->h.dev);
	close(p[0]);
	hf_wait(c, 5000);
	EXPECT_EQ(0, lstat(hf_s(&self->h, "held"), &st));
	EXPECT_TRUE(S_ISDIR(st.st_mode));
	ASSERT_TRUE(hf_status(&self->h, doc, sizeof(doc)));
	EXPECT_LE(1, num(doc, "resent_requests"));
	EXPECT_LE(1, num(doc, "replayed_from_journal"));
}

/*
 * Handovers are not crashes: more of them than --restart-max (20) in a
 * row, within the window, are all carried out.
 */
TEST_F_TIMEOUT(upg, many_upgrades_not_a_crash_loop, 90)
{
	double ms[22], mn = 1e9, mx = 0, sum = 0;
	int i, n = 0;

	for (i = 0; i < 22; i++) {
		double v = upgrade_once(_metadata, &self->h, NULL);

		if (v < 0)
			break;
		ms[n++] = v;
	}
	EXPECT_EQ(22, n);
	EXPECT_EQ(22, hf_status_num(&self->h, "restarts"));
	EXPECT_TRUE(mount_works(&self->h, "f"));
	for (i = 0; i < n; i++) {
		mn = ms[i] < mn ? ms[i] : mn;
		mx = ms[i] > mx ? ms[i] : mx;
		sum += ms[i];
	}
	if (n)
		TH_LOG("%d upgrades: handover_ms min %.1f mean %.1f max %.1f", n, mn, sum / n, mx);
	EXPECT_EQ(0, hf_log_count(&self->h, "crash loop"));
}

TEST_HARNESS_MAIN
