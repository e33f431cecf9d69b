// SPDX-License-Identifier: GPL-2.0
/*
 * --readahead: how far ahead the kernel reads the files of a holdfastd
 * mount, set on the mount's own bdi.  Host only: it starts, inspects and
 * kills its own servers, which the guest suite's virtio-fs mounts do not
 * have (and a guest kernel sets its own readahead).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

#define KiB (1024LL)
#define MiB (1024LL * KiB)

/*
 * The mount's bdi gets the readahead we asked for, and the
 * kernel really reads that far ahead (it keeps the smaller of the bdi's
 * value and INIT's max_readahead, so an INIT answer echoing the kernel's
 * 128 KiB would undo it).  It belongs to the mount: a successor after a
 * crash finds it unchanged.  Passthrough off: its reads send no READ.
 */
FIXTURE(readahead) {
	struct hf h;
};

FIXTURE_VARIANT(readahead) {
	struct hf_opts o;
	unsigned int kib;	/* expected read_ahead_kb */
};

FIXTURE_VARIANT_ADD(readahead, default_1m) {
	.o = { .cache = "auto", .extra_args = "--passthrough off" },
	.kib = 1024,
};

FIXTURE_VARIANT_ADD(readahead, set_256k) {
	.o = { .cache = "auto", .extra_args = "--passthrough off --readahead 256" },
	.kib = 256,
};

FIXTURE_VARIANT_ADD(readahead, kernel_128k) {
	/* VM_READAHEAD_PAGES: the kernel's default for a new bdi. */
	.o = { .cache = "auto", .extra_args = "--passthrough off --readahead kernel" },
	.kib = 128,
};

FIXTURE_SETUP(readahead)
{
	HF_SETUP(&variant->o);
}

FIXTURE_TEARDOWN(readahead)
{
	HF_TEARDOWN();
}

static long mount_read_ahead_kb(const char *mnt)
{
	struct stat st;

	if (stat(mnt, &st) < 0)
		return -1;
	return hf_read_num("/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
			   minor(st.st_dev));
}

static long reads_served(const struct hf *h)
{
	double v = hf_status_num(h, "READ");

	return v < 0 ? 0 : (long)v;
}

/*
 * Reads @name (made on the host, so the mount has none of it cached) front
 * to back in 1 MiB read()s, checks the data, and returns the READs it took.
 */
static long cold_sequential_reads(struct __test_metadata *_metadata, struct hf *h,
				  const char *name, unsigned int seed)
{
	const size_t size = 16 * MiB, chunk = 1 * MiB;
	char *buf = malloc(size);
	long before, after;
	size_t got = 0;
	ssize_t n;
	int fd;

	if (!buf)
		return -1;
	hf_fill(buf, size, seed, 0);
	if (hf_write_file(hf_s(h, "%s", name), buf, size, 0644) < 0) {
		free(buf);
		return -1;
	}
	memset(buf, 0, size);
	before = reads_served(h);
	fd = open(hf_m(h, "%s", name), O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		free(buf);
		return -1;
	}
	while (got < size && (n = read(fd, buf + got, chunk)) > 0)
		got += n;
	close(fd);
	after = reads_served(h);
	EXPECT_EQ(size, got);
	EXPECT_EQ(-1, hf_check(buf, got, seed, 0));
	free(buf);
	return after - before;
}

TEST_F(readahead, bdi_and_read_sizes)
{
	const long expect = (long)(16 * MiB / (variant->kib * KiB));
	long reads;

	ASSERT_EQ((long)variant->kib, mount_read_ahead_kb(self->h.mnt));

	/*
	 * One READ per readahead window, give or take the first, smaller
	 * window; never larger than max_pages (1 MiB).
	 */
	reads = cold_sequential_reads(_metadata, &self->h, "f1", 41);
	TH_LOG("%ld READs for 16 MiB, read_ahead_kb %u", reads, variant->kib);
	EXPECT_LE(16, reads);
	EXPECT_LE(expect, reads);
	EXPECT_GE(expect * 3 / 2 + 4, reads);

	ASSERT_LT(0, hf_kill_server(&self->h, HF_READY_TIMEOUT_MS));
	EXPECT_EQ((long)variant->kib, mount_read_ahead_kb(self->h.mnt));
	reads = cold_sequential_reads(_metadata, &self->h, "f2", 42);
	TH_LOG("after a crash: %ld READs", reads);
	EXPECT_LE(expect, reads);
	EXPECT_GE(expect * 3 / 2 + 4, reads);
}

TEST_HARNESS_MAIN
