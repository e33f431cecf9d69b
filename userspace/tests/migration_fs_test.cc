// SPDX-License-Identifier: GPL-2.0
// Migration between two passthrough filesystems over real directories:
// the same-host fast path (the source's fds, lent) and find-paths (a copy
// of the directory, where the source's file handles mean nothing).  The
// stream format itself is migration_test.cc's.
#include "fs/passthrough.h"
#include "scratch_fs.h"
#include "state/migration.h"
#include "state/region.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

using namespace holdfast;
namespace fsys = std::filesystem;

namespace {

// One end of a migration: a server over its own directory.
struct Side : test::ScratchFs {
    using ScratchFs::ScratchFs;

    uint64_t lookup(uint64_t parent, const char *name)
    {
        fuse_entry_out e;
        return ScratchFs::lookup(parent, name, e) == 0 ? e.nodeid : 0;
    }
    uint64_t open(uint64_t node, int flags)
    {
        fuse_open_out out;
        return ScratchFs::open(node, flags, out) == 0 ? out.fh : 0;
    }
    // The inode the server holds for `node`, as (dev, ino).
    std::pair<uint64_t, uint64_t> held(uint64_t node)
    {
        auto ino = inodes->get(node);
        struct stat st {};
        if (!ino || fstat(ino->fd.get(), &st) < 0)
            return {0, 0};
        return {st.st_dev, st.st_ino};
    }
};

class MigrationFs : public ::testing::Test {
  protected:
    void SetUp() override
    {
        char t[] = "/tmp/holdfast-migfs.XXXXXX";
        top = mkdtemp(t);
        src = top + "/src";
        fsys::create_directories(src + "/d");
        std::ofstream(src + "/d/f") << "file in d";
        std::ofstream(src + "/g") << "g";
    }
    void TearDown() override { fsys::remove_all(top); }

    // The stream a source with `s` looked up and opened sends.
    std::vector<uint8_t> save(Side &s, bool paths, size_t *missing = nullptr)
    {
        state::MigrationState st = state::snapshot(*s.region);
        size_t m = 0;
        if (paths)
            st.paths = s.pfs->inode_paths(m);
        if (missing)
            *missing = m;
        return state::encode(st);
    }
    std::string load(Side &d, const std::vector<uint8_t> &bytes, bool strict, size_t &unresolved,
                     std::vector<fdstore::NamedFd> lent = {})
    {
        state::MigrationState st;
        auto &h = d.region->header();
        std::string e = state::decode(bytes, {h.inode_capacity, h.handle_capacity}, st);
        if (!e.empty())
            return e;
        const auto &root = d.region->inodes()[state::kRootNodeId];
        const bool foreign = root.dev != st.root_dev || root.ino != st.root_ino;
        e = state::install(st, *d.region);
        if (!e.empty())
            return e;
        return d.pfs->take_migrated(strict, unresolved, std::move(lent), st.paths, foreign);
    }

    std::string top, src;
};

TEST_F(MigrationFs, FindPathsTakesACopyOfTheDirectory)
{
    Side s(src);
    const uint64_t d = s.lookup(1, "d"), f = s.lookup(d, "f"), g = s.lookup(1, "g");
    ASSERT_TRUE(d && f && g);
    ASSERT_NE(0u, s.open(f, O_RDWR));
    size_t missing = 99;
    auto bytes = save(s, true, &missing);
    EXPECT_EQ(0u, missing);

    fsys::copy(src, top + "/dst", fsys::copy_options::recursive);
    Side dst(top + "/dst");
    size_t unresolved = 99;
    ASSERT_EQ("", load(dst, bytes, true, unresolved));
    EXPECT_EQ(0u, unresolved);
    EXPECT_EQ(3u, dst.pfs->found_by_path());
    // The copy's files, not the source's (which its file handles would open).
    struct stat st;
    ASSERT_EQ(0, stat((top + "/dst/d/f").c_str(), &st));
    EXPECT_EQ(dst.held(f), std::make_pair(uint64_t(st.st_dev), uint64_t(st.st_ino)));
    ASSERT_EQ(0, stat((top + "/dst/g").c_str(), &st));
    EXPECT_EQ(dst.held(g), std::make_pair(uint64_t(st.st_dev), uint64_t(st.st_ino)));
}

TEST_F(MigrationFs, AnotherDirectoryWithoutPathsIsRefused)
{
    Side s(src);
    ASSERT_TRUE(s.lookup(1, "g"));
    auto bytes = save(s, false);
    fsys::copy(src, top + "/dst", fsys::copy_options::recursive);
    Side dst(top + "/dst");
    size_t unresolved = 0;
    EXPECT_NE(std::string::npos,
              load(dst, bytes, true, unresolved).find("another shared directory"));
}

TEST_F(MigrationFs, WhatIsNotAtItsPathFollowsThePolicy)
{
    Side s(src);
    const uint64_t g = s.lookup(1, "g");
    ASSERT_TRUE(g && s.lookup(1, "d"));
    auto bytes = save(s, true);
    fsys::copy(src, top + "/dst", fsys::copy_options::recursive);
    fsys::remove(top + "/dst/g");
    fsys::create_directory(top + "/dst/g"); // another type at its path
    {
        Side strict(top + "/dst");
        size_t unresolved = 0;
        EXPECT_NE("", load(strict, bytes, true, unresolved));
        EXPECT_EQ(1u, unresolved);
    }
    Side lax(top + "/dst");
    size_t unresolved = 0;
    EXPECT_EQ("", load(lax, bytes, false, unresolved));
    EXPECT_EQ(1u, unresolved);
    EXPECT_EQ(nullptr, lax.inodes->get(g)) << "never the source's file, by its handle";
}

TEST_F(MigrationFs, AnUnlinkedFileHasNoPath)
{
    Side s(src);
    const uint64_t g = s.lookup(1, "g");
    ASSERT_NE(0u, s.open(g, O_RDONLY));
    ASSERT_EQ(0, unlink((src + "/g").c_str()));
    size_t missing = 0;
    state::MigrationState st = state::snapshot(*s.region);
    st.paths = s.pfs->inode_paths(missing);
    EXPECT_EQ(1u, missing);
    EXPECT_TRUE(st.paths.empty());
}

TEST_F(MigrationFs, LentFdsAreUsedWhenTheyAreTheFilesTheRecordsName)
{
    Side s(src);
    const uint64_t d = s.lookup(1, "d"), f = s.lookup(d, "f");
    const uint64_t fh = s.open(f, O_RDWR | O_APPEND);
    ASSERT_TRUE(d && f && fh);
    std::vector<std::shared_ptr<const void>> keep;
    auto lent = s.pfs->lend_fds(keep);
    ASSERT_EQ(3u, lent.size()); // d, f, the open file
    auto bytes = save(s, false);

    // What pidfd_getfd(2) would give the destination, one of them wrong.
    std::vector<fdstore::NamedFd> taken;
    for (const auto &l : lent) {
        const char name[2] = {l.kind, 0};
        int fd = l.id == d ? ::open(src.c_str(), O_PATH | O_CLOEXEC) : dup(l.fd);
        taken.push_back({name + std::to_string(l.id), Fd(fd)});
    }
    Side dst(src); // a second server on the same directory
    size_t unresolved = 99;
    ASSERT_EQ("", load(dst, bytes, true, unresolved, std::move(taken)));
    EXPECT_EQ(0u, unresolved);
    EXPECT_EQ(2u, dst.pfs->lent_used()) << "d's lent fd is another file: opened by handle";
    struct stat st;
    ASSERT_EQ(0, stat((src + "/d").c_str(), &st));
    EXPECT_EQ(dst.held(d), std::make_pair(uint64_t(st.st_dev), uint64_t(st.st_ino)));
    // The open file description itself came over: O_APPEND and all.
    auto h = dst.handles->get(fh);
    ASSERT_TRUE(h);
    EXPECT_TRUE(fcntl(h->fd.get(), F_GETFL) & O_APPEND);
}

} // namespace
