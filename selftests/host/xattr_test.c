// SPDX-License-Identifier: GPL-2.0
/*
 * Extended attributes through holdfastd: SETXATTR, GETXATTR, LISTXATTR and
 * REMOVEXATTR with --xattr, and their refusal without it.  Values set on one
 * side are read on the other, so a server keeping xattrs in memory, or
 * passing sizes and flags wrongly, is caught.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "kselftest_harness.h"
#include "holdfast_fixture.h"

FIXTURE(xattr) {
	struct hf h;
};

FIXTURE_VARIANT(xattr) {
	struct hf_opts o;
};

FIXTURE_VARIANT_ADD(xattr, cache_auto) {
	.o = { .cache = "auto", .xattr = true },
};

FIXTURE_VARIANT_ADD(xattr, cache_never) {
	.o = { .cache = "never", .xattr = true },
};

FIXTURE_SETUP(xattr)
{
	HF_SETUP(&variant->o);
}

FIXTURE_TEARDOWN(xattr)
{
	HF_TEARDOWN();
}

/* Sorted, NUL-separated list, as a single comparable string with '|'. */
static int norm_list(const char *list, ssize_t len, char *out, size_t cap)
{
	const char *names[64];
	int n = 0, i, j;
	ssize_t pos;

	for (pos = 0; pos < len && n < 64; pos += strlen(list + pos) + 1)
		names[n++] = list + pos;
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			const char *t = names[j];

			names[j] = names[j - 1];
			names[j - 1] = t;
		}
	out[0] = 0;
	for (i = 0; i < n; i++) {
		strncat(out, names[i], cap - strlen(out) - 2);
		strcat(out, "|");
	}
	return n;
}

TEST_F(xattr, set_get)
{
	char val[256], big[4000];
	ssize_t n;

	ASSERT_EQ(0, hf_write_file(M("f"), "", 0, 0644));

	/* Set through the mount, seen on the host. */
	ASSERT_EQ(0, setxattr(M("f"), "user.holdfast", "value-1", 7, 0)) TH_LOG("setxattr: %m");
	n = getxattr(S("f"), "user.holdfast", val, sizeof(val));
	ASSERT_EQ(7, n);
	EXPECT_EQ(0, memcmp(val, "value-1", 7));

	/* Set on the host, seen through the mount. */
	ASSERT_EQ(0, setxattr(S("f"), "user.host", "from-host", 9, 0));
	n = getxattr(M("f"), "user.host", val, sizeof(val));
	ASSERT_EQ(9, n) TH_LOG("getxattr: %m");
	EXPECT_EQ(0, memcmp(val, "from-host", 9));

	/* Size probe with a zero buffer, then ERANGE with a short one. */
	EXPECT_EQ(9, getxattr(M("f"), "user.host", NULL, 0));
	EXPECT_EQ(-1, getxattr(M("f"), "user.host", val, 3));
	EXPECT_EQ(ERANGE, errno);

	/* Binary value with NULs, and an empty value. */
	memcpy(val, "a\0b\0\xff", 5);
	ASSERT_EQ(0, setxattr(M("f"), "user.bin", val, 5, 0));
	memset(val, 0, sizeof(val));
	ASSERT_EQ(5, getxattr(S("f"), "user.bin", val, sizeof(val)));
	EXPECT_EQ(0, memcmp(val, "a\0b\0\xff", 5));
	ASSERT_EQ(0, setxattr(M("f"), "user.empty", "", 0, 0));
	EXPECT_EQ(0, getxattr(S("f"), "user.empty", val, sizeof(val)));

	/* A value near the ext4 in-inode limit round-trips intact. */
	hf_fill(big, sizeof(big), 20, 0);
	ASSERT_EQ(0, setxattr(M("f"), "user.big", big, sizeof(big), 0));
	memset(big, 0, sizeof(big));
	ASSERT_EQ((ssize_t)sizeof(big), getxattr(S("f"), "user.big", big, sizeof(big)));
	EXPECT_EQ(-1, hf_check(big, sizeof(big), 20, 0));

	/* Flags reach the host: CREATE on existing, REPLACE on missing. */
	EXPECT_EQ(-1, setxattr(M("f"), "user.holdfast", "x", 1, XATTR_CREATE));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(-1, setxattr(M("f"), "user.nothere", "x", 1, XATTR_REPLACE));
	EXPECT_EQ(ENODATA, errno);
	ASSERT_EQ(0, setxattr(M("f"), "user.holdfast", "v2", 2, XATTR_REPLACE));
	ASSERT_EQ(2, getxattr(S("f"), "user.holdfast", val, sizeof(val)));
	EXPECT_EQ(0, memcmp(val, "v2", 2));

	EXPECT_EQ(-1, getxattr(M("f"), "user.nothere", val, sizeof(val)));
	EXPECT_EQ(ENODATA, errno);
}

TEST_F(xattr, list)
{
	char mlist[1024], hlist[1024], mn[1200], hn[1200];
	ssize_t ml, hl;

	ASSERT_EQ(0, hf_write_file(S("f"), "", 0, 0644));
	ASSERT_EQ(0, setxattr(S("f"), "user.one", "1", 1, 0));
	ASSERT_EQ(0, setxattr(M("f"), "user.two", "22", 2, 0));
	ASSERT_EQ(0, setxattr(M("f"), "user.three", "333", 3, 0));

	ml = listxattr(M("f"), mlist, sizeof(mlist));
	ASSERT_LT(0, ml) TH_LOG("listxattr: %m");
	hl = listxattr(S("f"), hlist, sizeof(hlist));
	ASSERT_LT(0, hl);
	EXPECT_EQ(hl, ml);
	EXPECT_EQ(3, norm_list(mlist, ml, mn, sizeof(mn)));
	norm_list(hlist, hl, hn, sizeof(hn));
	EXPECT_STREQ(hn, mn);

	/* Size probe and ERANGE, as for getxattr. */
	EXPECT_EQ(hl, listxattr(M("f"), NULL, 0));
	EXPECT_EQ(-1, listxattr(M("f"), mlist, 4));
	EXPECT_EQ(ERANGE, errno);

	/* A directory carries xattrs too. */
	ASSERT_EQ(0, mkdir(M("d"), 0755));
	ASSERT_EQ(0, setxattr(M("d"), "user.dir", "d", 1, 0));
	ml = listxattr(M("d"), mlist, sizeof(mlist));
	ASSERT_LT(0, ml);
	norm_list(mlist, ml, mn, sizeof(mn));
	EXPECT_STREQ("user.dir|", mn);
}

TEST_F(xattr, remove)
{
	char val[16];

	ASSERT_EQ(0, hf_write_file(S("f"), "", 0, 0644));
	ASSERT_EQ(0, setxattr(S("f"), "user.a", "1", 1, 0));
	ASSERT_EQ(0, setxattr(S("f"), "user.b", "2", 1, 0));
	ASSERT_EQ(1, getxattr(M("f"), "user.a", val, sizeof(val)));

	ASSERT_EQ(0, removexattr(M("f"), "user.a")) TH_LOG("removexattr: %m");
	EXPECT_EQ(-1, getxattr(S("f"), "user.a", val, sizeof(val)));
	EXPECT_EQ(ENODATA, errno);
	EXPECT_EQ(-1, getxattr(M("f"), "user.a", val, sizeof(val)));
	EXPECT_EQ(ENODATA, errno);
	/* Only that one went. */
	EXPECT_EQ(1, getxattr(S("f"), "user.b", val, sizeof(val)));

	EXPECT_EQ(-1, removexattr(M("f"), "user.a"));
	EXPECT_EQ(ENODATA, errno);
}

TEST_F(xattr, fd_and_symlink)
{
	char val[16];
	int fd;

	/* The handle-based calls (f*xattr) go to the same inode. */
	ASSERT_EQ(0, hf_write_file(M("f"), "", 0, 0644));
	fd = open(M("f"), O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fsetxattr(fd, "user.fd", "viafd", 5, 0));
	ASSERT_EQ(5, fgetxattr(fd, "user.fd", val, sizeof(val)));
	ASSERT_EQ(5, getxattr(S("f"), "user.fd", val, sizeof(val)));
	EXPECT_EQ(0, memcmp(val, "viafd", 5));
	ASSERT_EQ(0, fremovexattr(fd, "user.fd"));
	EXPECT_EQ(-1, getxattr(S("f"), "user.fd", val, sizeof(val)));
	close(fd);

	/*
	 * l*xattr act on the link itself.  Linux refuses user.* on symlinks
	 * with EPERM; a server that follows the link would set it on "f".
	 */
	ASSERT_EQ(0, symlink("f", M("l")));
	EXPECT_EQ(-1, lsetxattr(M("l"), "user.link", "x", 1, 0));
	EXPECT_EQ(EPERM, errno);
	EXPECT_EQ(-1, getxattr(S("f"), "user.link", val, sizeof(val)));
	EXPECT_EQ(ENODATA, errno);
}

TEST_F(xattr, symlink_trusted)
{
	char val[16];

	/*
	 * On the host, root may put trusted.* xattrs on a symlink itself
	 * (overlayfs does so on its upper layer).  A passthrough has to reach
	 * the link without following it; /proc/self/fd/N of an O_PATH fd of
	 * the link does exactly that (the magic link ends on the link).
	 */
	ASSERT_EQ(0, hf_write_file(S("f"), "", 0, 0644));
	ASSERT_EQ(0, symlink("f", S("l")));
	ASSERT_EQ(0, lsetxattr(S("l"), "trusted.host", "h", 1, 0));

	ASSERT_EQ(0, lsetxattr(M("l"), "trusted.link", "t", 1, 0)) TH_LOG("lsetxattr: %m");
	EXPECT_EQ(1, lgetxattr(S("l"), "trusted.link", val, sizeof(val)));
	EXPECT_EQ(-1, getxattr(S("f"), "trusted.link", val, sizeof(val)));
	EXPECT_EQ(1, lgetxattr(M("l"), "trusted.host", val, sizeof(val))) TH_LOG("lgetxattr: %m");
	EXPECT_EQ(0, lremovexattr(M("l"), "trusted.link")) TH_LOG("lremovexattr: %m");
	EXPECT_EQ(-1, lgetxattr(S("l"), "trusted.link", val, sizeof(val)));
}

/* Without --xattr: no xattr call reaches the host. */
FIXTURE(noxattr) {
	struct hf h;
};

FIXTURE_SETUP(noxattr)
{
	struct hf_opts o = { 0 };

	HF_SETUP(&o);
}

FIXTURE_TEARDOWN(noxattr)
{
	HF_TEARDOWN();
}

TEST_F(noxattr, refused)
{
	char val[64];

	ASSERT_EQ(0, hf_write_file(S("f"), "", 0, 0644));
	ASSERT_EQ(0, setxattr(S("f"), "user.host", "hidden", 6, 0));

	EXPECT_EQ(-1, setxattr(M("f"), "user.x", "1", 1, 0));
	EXPECT_EQ(EOPNOTSUPP, errno);
	EXPECT_EQ(-1, getxattr(S("f"), "user.x", val, sizeof(val)));
	EXPECT_EQ(ENODATA, errno);

	/* A host xattr is not exposed either. */
	EXPECT_EQ(-1, getxattr(M("f"), "user.host", val, sizeof(val)));
	EXPECT_EQ(EOPNOTSUPP, errno);
	EXPECT_EQ(-1, removexattr(M("f"), "user.host"));
	EXPECT_EQ(EOPNOTSUPP, errno);
	EXPECT_EQ(6, getxattr(S("f"), "user.host", val, sizeof(val)));
	/* listxattr: refused, or at least nothing listed. */
	EXPECT_GE(0, listxattr(M("f"), val, sizeof(val)));
}

TEST_HARNESS_MAIN
