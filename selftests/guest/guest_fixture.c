// SPDX-License-Identifier: GPL-2.0
/*
 * The host selftests' fixture (host/holdfast_fixture.h), inside a test VM.
 *
 * On the host every test starts its own holdfastd and mounts it.  In the
 * guest the servers are already there: the VM runner starts one holdfastd
 * per option set, each serving its own host directory as a virtio-fs
 * device, and the guest's /init mounts them:
 *
 *   /mnt/<key>     the mount under test, <key> named after the options:
 *                  auto, never, always-wb, auto-xattr, never-xattr, auto-ro
 *   /mnt/host      one more holdfastd (cache=never, xattr) serving the
 *                  parent of all of them: the guest's view of "the host
 *                  side", which is what S() paths use.  With cache=never
 *                  every read goes to the host file, as on the host.
 *
 * hf_start() makes a fresh directory per test under both views (the same
 * host directory), so M("x") and S("x") name the same host file, exactly
 * like the host fixture's MNT and SRC.  There is no server to stop: hf_stop()
 * only reports, and tests that need to stop or signal the server (control,
 * jail, recovery) are not built for the guest.
 *
 * Everything else (paths, data patterns, children, ...) is the host
 * fixture's own code, compiled with its server functions renamed away
 * (see Makefile).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "holdfast_fixture.h"

#ifndef HF_GUEST_MNT
#define HF_GUEST_MNT "/mnt"
#endif

static void glog(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "# guest fixture: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

/* The mount serving these options (what the VM runner set up). */
static void key_for(const struct hf_opts *o, char *out, size_t len)
{
	const char *cache = o && o->cache ? o->cache : "auto";

	snprintf(out, len, "%s%s%s%s", cache, o && o->writeback ? "-wb" : "",
		 o && o->xattr ? "-xattr" : "", o && o->readonly ? "-ro" : "");
}

int hf_start(struct hf *h, const struct hf_opts *o, unsigned int timeout_s)
{
	static unsigned int seq;
	char key[64], name[64];
	struct stat st;

	(void)timeout_s;
	memset(h, 0, sizeof(*h));
	h->wd_fd = -1;
	umask(0);
	key_for(o, key, sizeof(key));
	snprintf(h->mnt, sizeof(h->mnt), HF_GUEST_MNT "/%s", key);
	if (stat(h->mnt, &st) || !S_ISDIR(st.st_mode)) {
		glog("no mount for options '%s' at %s", key, h->mnt);
		return -1;
	}
	snprintf(name, sizeof(name), "t%d.%u", (int)getpid(), seq++);
	snprintf(h->srv, sizeof(h->srv), HF_GUEST_MNT "/host/%s", key);
	snprintf(h->src, sizeof(h->src), "%s/%s", h->srv, name);
	snprintf(h->mnt, sizeof(h->mnt), HF_GUEST_MNT "/%s/%s", key, name);
	snprintf(h->base, sizeof(h->base), "/tmp/hf-guest.%s.%s", key, name);
	snprintf(h->log, sizeof(h->log), "%s/server.log", h->base);
	if (mkdir(h->base, 0755) && errno != EEXIST) {
		glog("mkdir %s: %s", h->base, strerror(errno));
		return -1;
	}
	if (mkdir(h->src, 0755)) {
		glog("mkdir %s: %s", h->src, strerror(errno));
		rmdir(h->base);
		return -1;
	}
	/* uid 65534 must be able to walk into it, as on the host. */
	chmod(h->src, 0755);
	if (stat(h->mnt, &st) || !S_ISDIR(st.st_mode)) {
		glog("%s not visible through the mount: %s", h->mnt, strerror(errno));
		hf_rm_rf(h->src);
		rmdir(h->base);
		return -1;
	}
	h->started = true;
	h->reaped = true; /* nothing of ours to reap */
	h->pid = -1;
	return 0;
}

int hf_stop(struct hf *h, int sig)
{
	(void)sig;
	/* The servers belong to the VM runner; report a clean exit. */
	return h->started ? 0 : -1;
}

void hf_teardown(struct hf *h, bool failed)
{
	(void)failed;
	if (!h->base[0])
		return;
	/* A failed test may have left its cwd in the directory. */
	if (chdir("/"))
		glog("chdir /: %s", strerror(errno));
	/*
	 * The test's directory stays: the VM runner removes the whole shared
	 * tree on the host afterwards, which costs nothing, while removing it
	 * here would send every unlink through virtio-fs once more (10000 of
	 * them after dir.readdir_10k).
	 */
	hf_rm_rf(h->base);
	h->base[0] = 0;
	h->started = false;
}
