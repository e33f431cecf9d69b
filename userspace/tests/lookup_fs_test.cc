// SPDX-License-Identifier: GPL-2.0
// LOOKUP in the filesystem itself, without a transport: which node id a
// name gets, how references are counted, and what the inode record keeps
// for a successor (its file handle), whether the inode was new or known.
#include "fs/passthrough.h"
#include "scratch_fs.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

using namespace holdfast;

namespace {

class LookupFs : public ::testing::Test {
  protected:
    void SetUp() override
    {
        char t[] = "/var/tmp/holdfast-lookupfs.XXXXXX";
        ASSERT_NE(nullptr, mkdtemp(t));
        top = t;
        touch("a");
        fs = std::make_unique<test::ScratchFs>(top);
    }
    void TearDown() override
    {
        fs.reset();
        std::filesystem::remove_all(top);
    }
    void touch(const char *name)
    {
        int fd = ::open((top + "/" + name).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ASSERT_LE(0, fd);
        ::close(fd);
    }
    uint64_t host_ino(const char *name)
    {
        struct stat st;
        EXPECT_EQ(0, lstat((top + "/" + name).c_str(), &st));
        return st.st_ino;
    }
    const state::InodeRecord &rec(uint64_t id) { return fs->inodes->record(id); }

    std::string top;
    std::unique_ptr<test::ScratchFs> fs;
};

TEST_F(LookupFs, KnownInodeCountsAnotherReferenceAndKeepsItsHandle)
{
    fuse_entry_out e1, e2;
    ASSERT_EQ(0, fs->lookup(state::kRootNodeId, "a", e1));
    const uint32_t bytes = rec(e1.nodeid).handle_bytes;
    if (!bytes)
        GTEST_SKIP() << top << ": no file handles on this filesystem";
    ASSERT_EQ(0, fs->lookup(state::kRootNodeId, "a", e2));
    EXPECT_EQ(e1.nodeid, e2.nodeid);
    EXPECT_EQ(e1.generation, e2.generation);
    EXPECT_EQ(host_ino("a"), e2.attr.ino);
    EXPECT_EQ(2u, fs->inodes->nlookup(e1.nodeid));
    EXPECT_EQ(bytes, rec(e1.nodeid).handle_bytes);
    EXPECT_EQ(2u, fs->inodes->open_fds()) << "one O_PATH fd per inode (the root's and a's)";
}

// The node id we hold keeps its host inode alive, so another file at the
// same name can never share its inode number: a lookup finds a new node.
TEST_F(LookupFs, ObjectReplacingANameGetsItsOwnNode)
{
    fuse_entry_out e1, e2;
    ASSERT_EQ(0, fs->lookup(state::kRootNodeId, "a", e1));
    const uint64_t old_ino = host_ino("a");
    ASSERT_EQ(0, unlink((top + "/a").c_str()));
    touch("a");
    ASSERT_NE(old_ino, host_ino("a"));
    ASSERT_EQ(0, fs->lookup(state::kRootNodeId, "a", e2));
    EXPECT_NE(e1.nodeid, e2.nodeid);
    EXPECT_EQ(host_ino("a"), e2.attr.ino);
    EXPECT_EQ(1u, fs->inodes->nlookup(e1.nodeid));
    EXPECT_EQ(1u, fs->inodes->nlookup(e2.nodeid));
}

TEST_F(LookupFs, ForgottenInodeIsLookedUpAfreshWithItsHandle)
{
    fuse_entry_out e1, e2;
    ASSERT_EQ(0, fs->lookup(state::kRootNodeId, "a", e1));
    const uint32_t bytes = rec(e1.nodeid).handle_bytes;
    fs->pfs->forget(e1.nodeid, 1);
    EXPECT_EQ(uint32_t(state::kFree), rec(e1.nodeid).state.load());
    ASSERT_EQ(0, fs->lookup(state::kRootNodeId, "a", e2));
    EXPECT_EQ(1u, fs->inodes->nlookup(e2.nodeid));
    EXPECT_EQ(bytes, rec(e2.nodeid).handle_bytes);
}

TEST_F(LookupFs, MissingNameIsENOENT)
{
    fuse_entry_out e;
    EXPECT_EQ(-ENOENT, fs->lookup(state::kRootNodeId, "nothing", e));
    EXPECT_EQ(1u, fs->inodes->live());
}

// After a run of LOOKUPs that found known inodes, the filesystem tries a
// stat by name first (do_lookup()); what it answers must not change.
TEST_F(LookupFs, AfterManyKnownLookupsAnswersStayTheSame)
{
    fuse_entry_out a, e;
    ASSERT_EQ(0, fs->lookup(state::kRootNodeId, "a", a));
    for (int i = 0; i < 40; i++) {
        ASSERT_EQ(0, fs->lookup(state::kRootNodeId, "a", e));
        ASSERT_EQ(a.nodeid, e.nodeid);
    }
    EXPECT_EQ(41u, fs->inodes->nlookup(a.nodeid));
    EXPECT_EQ(host_ino("a"), e.attr.ino);
    EXPECT_EQ(uint32_t(S_IFREG | 0644), e.attr.mode);

    EXPECT_EQ(-ENOENT, fs->lookup(state::kRootNodeId, "nothing", e));

    // A symlink is the link itself, never its target.
    ASSERT_EQ(0, symlink("a", (top + "/l").c_str()));
    fuse_entry_out l1, l2;
    ASSERT_EQ(0, fs->lookup(state::kRootNodeId, "l", l1));
    ASSERT_EQ(0, fs->lookup(state::kRootNodeId, "l", l2));
    EXPECT_EQ(l1.nodeid, l2.nodeid);
    EXPECT_NE(a.nodeid, l2.nodeid);
    EXPECT_TRUE(S_ISLNK(l2.attr.mode));
    EXPECT_EQ(host_ino("l"), l2.attr.ino);

    // Another file at the name: a node of its own, its own attributes.
    const uint64_t old_ino = host_ino("a");
    ASSERT_EQ(0, unlink((top + "/a").c_str()));
    ASSERT_EQ(0, mkdir((top + "/a").c_str(), 0755));
    ASSERT_NE(old_ino, host_ino("a"));
    ASSERT_EQ(0, fs->lookup(state::kRootNodeId, "a", e));
    EXPECT_NE(a.nodeid, e.nodeid);
    EXPECT_TRUE(S_ISDIR(e.attr.mode));
    EXPECT_EQ(host_ino("a"), e.attr.ino);
    EXPECT_EQ(1u, fs->inodes->nlookup(e.nodeid));
    EXPECT_EQ(41u, fs->inodes->nlookup(a.nodeid));

    // The root's parent is the root, by stat as by open.
    ASSERT_EQ(0, fs->lookup(state::kRootNodeId, "..", e));
    EXPECT_EQ(state::kRootNodeId, e.nodeid);
}

} // namespace
