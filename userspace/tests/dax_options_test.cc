// SPDX-License-Identifier: GPL-2.0
// holdfastd --dax-window: the virtio-fs DAX window size.  A bad value must
// say which option and what is wrong with it.
#include "daemon/options.h"

#include <gtest/gtest.h>

#include <deque>
#include <getopt.h>
#include <initializer_list>
#include <string>
#include <vector>

using holdfast::daemon::Options;

namespace {

std::string run(std::initializer_list<const char *> args, Options &o)
{
    static std::deque<std::string> store; // getopt keeps pointers into argv
    std::vector<char *> argv;
    store.emplace_back("holdfastd");
    argv.push_back(store.back().data());
    for (const char *a : args) {
        store.emplace_back(a);
        argv.push_back(store.back().data());
    }
    argv.push_back(nullptr);
    optind = 0; // a fresh scan
    opterr = 0;
    o = Options{};
    return holdfast::daemon::parse(int(argv.size() - 1), argv.data(), o);
}

std::string dax(const char *value, Options &o)
{
    return run({"--shared-dir", "/srv", "--socket-path", "/tmp/s.sock", "--dax-window", value}, o);
}

bool contains(const std::string &s, const std::string &what)
{
    return s.find(what) != std::string::npos;
}

} // namespace

TEST(DaxOptions, DefaultIsNoWindow)
{
    Options o;
    ASSERT_EQ(run({"--shared-dir", "/srv", "--socket-path", "/tmp/s.sock"}, o), "");
    EXPECT_EQ(o.dax_window, 0u);
}

TEST(DaxOptions, SizesWithAndWithoutSuffix)
{
    struct {
        const char *arg;
        uint64_t want;
    } cases[] = {
        {"0", 0},           {"2097152", 2ull << 20}, {"2M", 2ull << 20},
        {"2m", 2ull << 20}, {"4096K", 4ull << 20},   {"1G", 1ull << 30},
        {"8g", 8ull << 30}, {"1T", 1ull << 40},      {"64M", 64ull << 20},
    };
    for (auto &c : cases) {
        Options o;
        EXPECT_EQ(dax(c.arg, o), "") << c.arg;
        EXPECT_EQ(o.dax_window, c.want) << c.arg;
    }
    Options o;
    ASSERT_EQ(run({"--shared-dir", "/srv", "--fd", "3", "--dax-window=1G"}, o), "");
    EXPECT_EQ(o.dax_window, 1ull << 30);
}

TEST(DaxOptions, BadValuesSayWhatIsWrong)
{
    struct {
        const char *arg;
        const char *says;
    } cases[] = {
        {"", "is not a size"},
        {"abc", "is not a size"},
        {"-2M", "is not a size"},
        {"+2M", "is not a size"},
        {"2X", "is not a size"},
        {"2MB", "is not a size"},
        {"2 M", "is not a size"},
        {"1.5G", "is not a size"},
        {"99999999999999999999", "is not a size"},
        {"17179869184T", "is not a size"}, // 2^64: overflows
        {"1M", "not a multiple of 2M"},
        {"3M", "not a multiple of 2M"},
        {"4097K", "not a multiple of 2M"},
        {"2T", "larger than 1T"},
        {"1026G", "larger than 1T"},
    };
    for (auto &c : cases) {
        Options o;
        std::string e = dax(c.arg, o);
        EXPECT_TRUE(contains(e, "--dax-window")) << c.arg << ": " << e;
        EXPECT_TRUE(contains(e, c.says)) << c.arg << ": " << e;
        EXPECT_TRUE(contains(e, std::string("'") + c.arg + "'")) << c.arg << ": " << e;
    }
}

TEST(DaxOptions, OnlyForVhostUser)
{
    Options o;
    std::string e = run({"--shared-dir", "/srv", "--mountpoint", "/mnt", "--dax-window", "1G"}, o);
    EXPECT_TRUE(contains(e, "--dax-window is for vhost-user mode")) << e;
    // 0 means none: harmless anywhere.
    EXPECT_EQ(run({"--shared-dir", "/srv", "--mountpoint", "/mnt", "--dax-window", "0"}, o), "");
    e = run({"--shared-dir", "/srv", "--socket-path", "/tmp/s", "--dax-window"}, o);
    EXPECT_TRUE(contains(e, "needs an argument")) << e;
}

TEST(DaxOptions, UsageMentionsIt)
{
    EXPECT_TRUE(contains(holdfast::daemon::usage(), "--dax-window SIZE"));
}

// --dax-inode: which files a dax=inode guest maps.
std::string dax_inode(const char *value, Options &o)
{
    return run({"--shared-dir", "/srv", "--socket-path", "/tmp/s.sock", "--dax-window", "64M",
                "--dax-inode", value},
               o);
}

TEST(DaxOptions, DaxInodePolicies)
{
    using holdfast::fs::DaxInodePolicy;
    Options o;
    ASSERT_EQ(dax("64M", o), "");
    EXPECT_EQ(o.fs.dax_inode, DaxInodePolicy::flag); // the default
    ASSERT_EQ(dax_inode("flag", o), "");
    EXPECT_EQ(o.fs.dax_inode, DaxInodePolicy::flag);
    ASSERT_EQ(dax_inode("all", o), "");
    EXPECT_EQ(o.fs.dax_inode, DaxInodePolicy::all);
    ASSERT_EQ(dax_inode("none", o), "");
    EXPECT_EQ(o.fs.dax_inode, DaxInodePolicy::none);
    ASSERT_EQ(dax_inode("min-size=1M", o), "");
    EXPECT_EQ(o.fs.dax_inode, DaxInodePolicy::min_size);
    EXPECT_EQ(o.fs.dax_inode_min_size, 1ull << 20);
    ASSERT_EQ(dax_inode("min-size=0", o), "");
    EXPECT_EQ(o.fs.dax_inode_min_size, 0u);
}

TEST(DaxOptions, DaxInodeBadValuesSayWhatIsWrong)
{
    Options o;
    for (const char *bad : {"", "FLAG", "always", "min-size", "min-size=", "min-size=1X",
                            "min-size=-1", "size>=1M"}) {
        std::string e = dax_inode(bad, o);
        EXPECT_TRUE(contains(e, "--dax-inode")) << bad << ": " << e;
        EXPECT_TRUE(contains(e, std::string("'") + bad + "'")) << bad << ": " << e;
    }
    std::string e =
        run({"--shared-dir", "/srv", "--socket-path", "/tmp/s", "--dax-inode", "all"}, o);
    EXPECT_TRUE(contains(e, "--dax-inode needs --dax-window")) << e;
    EXPECT_TRUE(contains(holdfast::daemon::usage(), "--dax-inode POLICY"));
}
