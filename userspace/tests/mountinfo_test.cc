// SPDX-License-Identifier: GPL-2.0
// Finding our mount's device in /proc/self/mountinfo (devfuse::mountinfo_dev),
// which names the bdi whose readahead --readahead sets.
#include "transport/devfuse/mount.h"

#include <gtest/gtest.h>
#include <sys/sysmacros.h>

namespace {

using holdfast::devfuse::mountinfo_dev;

constexpr const char *kInfo =
    "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
    "40 22 0:38 / /mnt/a rw,nosuid,nodev shared:20 - fuse.holdfast /srv rw,user_id=0\n"
    "41 22 0:39 / /mnt/with\\040space rw - fuse.holdfast /srv rw\n"
    "42 40 0:41 / /mnt/a rw - fuse.holdfast /other rw\n"
    "43 22 0:42 / /mnt/b rw - fuse.sshfs host: rw\n"
    "44 22 0:43 / /mnt/back\\134slash rw - fuse.holdfast /srv rw\n";

TEST(Mountinfo, FindsTheMountByPathAndType) {
    auto d = mountinfo_dev(kInfo, "/mnt/b", "fuse.sshfs");
    ASSERT_TRUE(d);
    EXPECT_EQ(major(*d), 0u);
    EXPECT_EQ(minor(*d), 42u);
}

TEST(Mountinfo, NewestMountOnTopWins) {
    // Two holdfast mounts at /mnt/a: the later line is the one on top.
    auto d = mountinfo_dev(kInfo, "/mnt/a", "fuse.holdfast");
    ASSERT_TRUE(d);
    EXPECT_EQ(minor(*d), 41u);
}

TEST(Mountinfo, UnescapesOctal) {
    auto d = mountinfo_dev(kInfo, "/mnt/with space", "fuse.holdfast");
    ASSERT_TRUE(d);
    EXPECT_EQ(minor(*d), 39u);
    d = mountinfo_dev(kInfo, "/mnt/back\\slash", "fuse.holdfast");
    ASSERT_TRUE(d);
    EXPECT_EQ(minor(*d), 43u);
    EXPECT_FALSE(mountinfo_dev(kInfo, "/mnt/with\\040space", "fuse.holdfast"));
}

TEST(Mountinfo, OtherTypeOrPathIsNotOurs) {
    EXPECT_FALSE(mountinfo_dev(kInfo, "/mnt/b", "fuse.holdfast"));
    EXPECT_FALSE(mountinfo_dev(kInfo, "/mnt", "fuse.holdfast"));
    EXPECT_FALSE(mountinfo_dev(kInfo, "/mnt/a/", "fuse.holdfast"));
    EXPECT_FALSE(mountinfo_dev("", "/mnt/a", "fuse.holdfast"));
}

TEST(Mountinfo, MalformedLinesAreSkipped) {
    const char *bad = "40 22 0:38 /\n"                                   // truncated
                      "41 22 0-39 / /m rw - fuse.holdfast /s rw\n"       // no colon
                      "42 22 0:40x / /m rw - fuse.holdfast /s rw\n"      // trailing junk
                      "43 22 0:41 / /m rw fuse.holdfast /s rw\n"         // no separator
                      "44 22 0:44 / /m rw - fuse.holdfast /s rw\n"       // the good one
                      "45 22 :45 / /m rw - fuse.holdfast /s rw\n";       // no major
    auto d = mountinfo_dev(bad, "/m", "fuse.holdfast");
    ASSERT_TRUE(d);
    EXPECT_EQ(minor(*d), 44u);
}

} // namespace
