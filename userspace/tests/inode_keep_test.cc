// SPDX-License-Identifier: GPL-2.0
// Which inodes the fd store must keep for the next server (those no file
// handle brings back), and how many of them it has room for.
#include "fdstore/client.h"
#include "fs/inode_keep.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <linux/magic.h>

using namespace holdfast;

TEST(InodeKeep, HandlesOfOrdinaryFilesystemsReopen)
{
    EXPECT_TRUE(fs::handles_reopen(TMPFS_MAGIC, 0));
    EXPECT_TRUE(fs::handles_reopen(EXT4_SUPER_MAGIC, 0));
    EXPECT_TRUE(fs::handles_reopen(BTRFS_SUPER_MAGIC, 0));
}

TEST(InodeKeep, NoHandleMeansTheStoreKeepsIt)
{
    EXPECT_FALSE(fs::handles_reopen(TMPFS_MAGIC, EOPNOTSUPP));
    // A handle too big for the record is as good as none.
    EXPECT_FALSE(fs::handles_reopen(EXT4_SUPER_MAGIC, EOVERFLOW));
}

TEST(InodeKeep, FuseHandlesNeverCount)
{
    // Linux 6.6+ without FUSE_EXPORT_SUPPORT: no handle at all.
    EXPECT_FALSE(fs::handles_reopen(FUSE_SUPER_MAGIC, EOPNOTSUPP));
    // Before 6.6, or with export support: a handle that decodes only while
    // the kernel (or the FUSE server) still knows the node.
    EXPECT_FALSE(fs::handles_reopen(FUSE_SUPER_MAGIC, 0));
    EXPECT_EQ(long(FUSE_SUPER_MAGIC), fs::kFuseSuperMagic);
}

TEST(InodeKeep, BudgetLeavesAQuarterOfTheStore)
{
    EXPECT_EQ(6144u, fs::inode_store_budget(8192));
    EXPECT_EQ(75u, fs::inode_store_budget(100));
    EXPECT_EQ(3u, fs::inode_store_budget(4));
    // However big the store, the names must fit LISTEN_FDNAMES.
    EXPECT_EQ(fs::kMaxKeptInodes, fs::inode_store_budget(65536));
    EXPECT_EQ(fs::kMaxKeptInodes, fs::inode_store_budget(1000000));
    // A store that does not say is taken for holdfast-fdstore's default.
    EXPECT_EQ(fs::inode_store_budget(fs::kDefaultStoreCapacity), fs::inode_store_budget(0));
}

TEST(InodeKeep, OpenFilesHaveRoomListingsCannotTake)
{
    EXPECT_EQ(4608u, fs::inode_keep_limit(6144, false));
    EXPECT_EQ(6144u, fs::inode_keep_limit(6144, true));
    EXPECT_LT(fs::inode_keep_limit(8, false), fs::inode_keep_limit(8, true));
}

namespace {

// $FDSTORE for one Notifier, put back afterwards.
size_t capacity_with(const char *value)
{
    const char *old = getenv("FDSTORE");
    std::string saved = old ? old : "";
    if (value)
        setenv("FDSTORE", value, 1);
    else
        unsetenv("FDSTORE");
    size_t cap = fdstore::Notifier().capacity();
    if (old)
        setenv("FDSTORE", saved.c_str(), 1);
    else
        unsetenv("FDSTORE");
    return cap;
}

} // namespace

TEST(InodeKeep, StoreCapacityFromEnvironment)
{
    EXPECT_EQ(8192u, capacity_with("8192"));
    EXPECT_EQ(0u, capacity_with(nullptr));
    // Anything but a plain number in range says nothing.
    EXPECT_EQ(0u, capacity_with(""));
    EXPECT_EQ(0u, capacity_with("12x"));
    EXPECT_EQ(0u, capacity_with("-5"));
    EXPECT_EQ(0u, capacity_with("99999999999"));
}
