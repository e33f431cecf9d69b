// SPDX-License-Identifier: GPL-2.0
// Kernel passthrough backing ids: one per inode, shared by its handles,
// unregistered with the last one, rebuilt from handle records after a crash.
#include "fs/backing_ids.h"

#include <gtest/gtest.h>

#include <cerrno>

using holdfast::fs::BackingIds;

namespace {

struct Registrar {
    int next = 7;
    int calls = 0;
    int fail = 0; // -errno to return instead of an id
    int operator()()
    {
        calls++;
        return fail ? fail : next++;
    }
};

} // namespace

TEST(BackingIds, OneIdPerInodeSharedByItsHandles)
{
    BackingIds ids;
    Registrar reg;
    auto r = [&] { return reg(); };
    EXPECT_EQ(ids.acquire(10, r), 7);
    EXPECT_EQ(ids.acquire(10, r), 7); // the kernel wants the same backing file
    EXPECT_EQ(ids.acquire(11, r), 8);
    EXPECT_EQ(reg.calls, 2);
    EXPECT_EQ(ids.users(10), 2u);
    EXPECT_EQ(ids.release(10, 7), 0); // one handle left
    EXPECT_EQ(ids.release(10, 7), 7); // last: the caller closes it
    EXPECT_EQ(ids.users(10), 0u);
    EXPECT_FALSE(ids.in_use(7));
    EXPECT_TRUE(ids.in_use(8));
    // The next open registers afresh.
    EXPECT_EQ(ids.acquire(10, r), 9);
}

TEST(BackingIds, FailedRegistrationIsNotRemembered)
{
    BackingIds ids;
    Registrar reg;
    reg.fail = -ELOOP;
    auto r = [&] { return reg(); };
    EXPECT_EQ(ids.acquire(10, r), -ELOOP);
    EXPECT_EQ(ids.size(), 0u);
    reg.fail = 0;
    EXPECT_EQ(ids.acquire(10, r), 7);
    EXPECT_EQ(ids.release(10, 0), 0); // a handle without passthrough
    EXPECT_EQ(ids.users(10), 1u);
}

TEST(BackingIds, RebuiltFromHandleRecords)
{
    // A restarted server sees three live handles: two on node 10 with id 4,
    // one on node 11 with id 5.  The ids stay registered in the kernel.
    BackingIds ids;
    ids.adopt(10, 4);
    ids.adopt(10, 4);
    ids.adopt(11, 5);
    ids.adopt(12, 0); // not passed through
    EXPECT_EQ(ids.size(), 2u);
    Registrar reg;
    // A new open of node 10 reuses id 4: registering a second backing file
    // for the inode would make the kernel refuse the open.
    EXPECT_EQ(ids.acquire(10, [&] { return reg(); }), 4);
    EXPECT_EQ(reg.calls, 0);
    EXPECT_EQ(ids.release(10, 4), 0);
    EXPECT_EQ(ids.release(10, 4), 0);
    EXPECT_EQ(ids.release(10, 4), 4);
    EXPECT_EQ(ids.release(11, 5), 5);
}

TEST(BackingIds, StrayIdGoesWithItsHandle)
{
    // A record naming another id than its inode's (not something our opens
    // make) is closed when that handle goes, never while others use it.
    BackingIds ids;
    ids.adopt(10, 4);
    ids.adopt(10, 6);
    EXPECT_EQ(ids.users(10), 1u);
    EXPECT_EQ(ids.release(10, 6), 6);
    EXPECT_EQ(ids.release(10, 4), 4);
    // An id some other inode uses is not closed through a stale handle.
    ids.adopt(11, 5);
    EXPECT_EQ(ids.release(10, 5), 0);
    EXPECT_TRUE(ids.in_use(5));
}

TEST(BackingIds, ClearForgetsEverything)
{
    BackingIds ids;
    ids.adopt(10, 4);
    ids.clear();
    EXPECT_FALSE(ids.in_use(4));
    EXPECT_EQ(ids.release(10, 4), 4); // nothing else uses it
}
