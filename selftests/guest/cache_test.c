// SPDX-License-Identifier: GPL-2.0
/*
 * The cache modes as a guest sees them.  A change made on the host side
 * (here: through the /mnt/host view, which is another holdfastd on the same
 * host directory) must become visible on the mount under test:
 *
 *   never      at once: attributes and entries are not cached, data is
 *              direct I/O;
 *   auto       once the 1 s attribute/entry timeout has passed (close-to-
 *              open for data);
 *   always     not before the guest's caches are dropped: attributes and
 *              entries are cached for a day and data pages are kept across
 *              opens (KEEP_CACHE), which is what this mode is for.
 *
 * And in every mode, what the guest wrote and closed is on the host.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

FIXTURE(cache) {
	struct hf h;
};

HF_CACHE_VARIANTS(cache);

FIXTURE_SETUP(cache)
{
	HF_SETUP(&variant->o);
}

FIXTURE_TEARDOWN(cache)
{
	HF_TEARDOWN();
}

static int drop_caches(void)
{
	int fd, r;

	sync();
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	r = write(fd, "3", 1) == 1 ? 0 : -1;
	close(fd);
	return r;
}

static bool mode(const FIXTURE_VARIANT(cache) *v, const char *m)
{
	return !strcmp(v->o.cache, m);
}

/* Wait until what the mode promises makes a host change visible. */
static void settle(const FIXTURE_VARIANT(cache) *v)
{
	if (mode(v, "auto"))
		usleep(1300 * 1000);
	else if (mode(v, "always"))
		drop_caches();
}

static ssize_t read_all(const char *path, char *buf, size_t cap)
{
	ssize_t n = hf_read_file(path, buf, cap - 1);

	if (n >= 0)
		buf[n] = 0;
	return n;
}

TEST_F(cache, guest_write_reaches_host)
{
	char buf[64];

	ASSERT_EQ(0, hf_write_file(M("f"), "written by the guest", 20, 0644));
	ASSERT_EQ(20, read_all(S("f"), buf, sizeof(buf)));
	EXPECT_STREQ("written by the guest", buf);
}

TEST_F(cache, host_content_change)
{
	char buf[64];

	ASSERT_EQ(0, hf_write_file(M("f"), "AAAAAAAA", 8, 0644));
	ASSERT_EQ(8, read_all(M("f"), buf, sizeof(buf)));
	ASSERT_EQ(0, hf_write_file(S("f"), "BBBBBBBBBBBB", 12, 0644));
	settle(variant);
	ASSERT_EQ(12, read_all(M("f"), buf, sizeof(buf)));
	EXPECT_STREQ("BBBBBBBBBBBB", buf);
}

TEST_F(cache, host_unlink)
{
	struct stat st;

	ASSERT_EQ(0, hf_write_file(M("f"), "x", 1, 0644));
	ASSERT_EQ(0, stat(M("f"), &st));
	ASSERT_EQ(0, unlink(S("f")));
	settle(variant);
	EXPECT_EQ(-1, stat(M("f"), &st));
	EXPECT_EQ(ENOENT, errno);
}

TEST_F(cache, host_create_and_chmod)
{
	struct stat st;

	ASSERT_EQ(-1, stat(M("g"), &st));
	ASSERT_EQ(0, hf_write_file(S("g"), "x", 1, 0600));
	if (mode(variant, "never"))
		EXPECT_EQ(0, stat(M("g"), &st)) TH_LOG("cache=never must see a new host file at once");
	settle(variant);
	ASSERT_EQ(0, stat(M("g"), &st));
	EXPECT_EQ(0600, st.st_mode & 07777);
	ASSERT_EQ(0, chmod(S("g"), 0644));
	settle(variant);
	ASSERT_EQ(0, stat(M("g"), &st));
	EXPECT_EQ(0644, st.st_mode & 07777);
}

TEST_F(cache, never_sees_host_changes_at_once)
{
	char buf[64];
	struct stat st;

	if (!mode(variant, "never"))
		return;
	ASSERT_EQ(0, hf_write_file(M("f"), "1111", 4, 0644));
	ASSERT_EQ(4, read_all(M("f"), buf, sizeof(buf)));
	ASSERT_EQ(0, hf_write_file(S("f"), "222222", 6, 0644));
	ASSERT_EQ(0, stat(M("f"), &st));
	EXPECT_EQ(6, st.st_size);
	ASSERT_EQ(6, read_all(M("f"), buf, sizeof(buf)));
	EXPECT_STREQ("222222", buf);
}

TEST_F(cache, always_keeps_pages_across_opens)
{
	char buf[64];
	struct timespec ts[2];
	struct stat st;

	if (!mode(variant, "always"))
		return;
	ASSERT_EQ(0, hf_write_file(M("f"), "old-data", 8, 0644));
	ASSERT_EQ(8, read_all(M("f"), buf, sizeof(buf)));
	ASSERT_EQ(0, stat(S("f"), &st));
	/* Same size, same times: nothing tells the guest it changed. */
	ASSERT_EQ(0, hf_write_file(S("f"), "new-data", 8, 0644));
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	ASSERT_EQ(0, utimensat(AT_FDCWD, S("f"), ts, 0));
	ASSERT_EQ(8, read_all(M("f"), buf, sizeof(buf)));
	EXPECT_STREQ("old-data", buf) TH_LOG("cache=always re-read went to the host");
	ASSERT_EQ(0, drop_caches());
	ASSERT_EQ(8, read_all(M("f"), buf, sizeof(buf)));
	EXPECT_STREQ("new-data", buf);
}

TEST_HARNESS_MAIN
