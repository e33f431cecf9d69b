// SPDX-License-Identifier: GPL-2.0
// holdfastd's vhost-user-fs options (--socket-path, --fd, --sandbox, ...).
#include "daemon/options.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

using holdfast::daemon::Options;

namespace {

std::string run(std::vector<std::string> args, Options &o)
{
    // getopt may keep pointers into argv: keep every argv alive.
    static std::deque<std::vector<std::string>> keep;
    args.insert(args.begin(), "holdfastd");
    keep.push_back(args);
    std::vector<char *> argv;
    for (auto &a : keep.back())
        argv.push_back(a.data());
    argv.push_back(nullptr);
    o = Options{};
    return holdfast::daemon::parse(int(argv.size() - 1), argv.data(), o);
}

bool has(const std::string &s, const std::string &n) { return s.find(n) != std::string::npos; }

} // namespace

TEST(VhostOptions, SocketPathReplacesMountpoint)
{
    Options o;
    EXPECT_EQ(run({"--shared-dir", "/srv", "--socket-path", "/run/fs.sock"}, o), "");
    EXPECT_TRUE(o.vhost());
    EXPECT_EQ(o.socket_path, "/run/fs.sock");
    EXPECT_TRUE(o.mountpoint.empty());
    // Defaults: the strict sandbox.
    EXPECT_EQ(o.sandbox, "namespace");
    EXPECT_EQ(o.seccomp, "kill");
    EXPECT_EQ(o.max_request_queues, 16u);
}

TEST(VhostOptions, VirtiofsdSpellings)
{
    Options o;
    EXPECT_EQ(run({"--shared-dir=/srv", "--socket-path=/s", "--thread-pool-size=8", "--cache=always",
                   "--sandbox=chroot", "--seccomp=log", "--tag=myfs", "--xattr"},
                  o),
              "");
    EXPECT_EQ(o.threads, 8u);
    EXPECT_EQ(o.sandbox, "chroot");
    EXPECT_EQ(o.seccomp, "log");
    EXPECT_EQ(o.tag, "myfs");
    EXPECT_TRUE(o.fs.xattr);
    EXPECT_EQ(run({"--shared-dir", "/srv", "--fd", "3"}, o), "");
    EXPECT_EQ(o.listen_fd, 3);
    EXPECT_TRUE(o.vhost());
}

TEST(VhostOptions, Conflicts)
{
    Options o;
    EXPECT_TRUE(has(run({"--shared-dir", "/a", "--socket-path", "/s", "--fd", "3"}, o), "--fd"));
    EXPECT_TRUE(
        has(run({"--shared-dir", "/a", "--socket-path", "/s", "--mountpoint", "/m"}, o), "--mountpoint"));
    std::string m = run({"--shared-dir", "/a"}, o);
    EXPECT_TRUE(has(m, "--mountpoint")) << m;
    EXPECT_TRUE(has(m, "--socket-path")) << m;
}

TEST(VhostOptions, BadValuesAreNamed)
{
    Options o;
    std::string m = run({"--shared-dir", "/a", "--socket-path", "/s", "--sandbox", "jail"}, o);
    EXPECT_TRUE(has(m, "--sandbox") && has(m, "'jail'")) << m;
    m = run({"--shared-dir", "/a", "--socket-path", "/s", "--seccomp", "maybe"}, o);
    EXPECT_TRUE(has(m, "--seccomp") && has(m, "'maybe'")) << m;
    m = run({"--shared-dir", "/a", "--socket-path", "/s", "--max-request-queues", "17"}, o);
    EXPECT_TRUE(has(m, "--max-request-queues")) << m;
    m = run({"--shared-dir", "/a", "--socket-path", "/s", "--tag",
             "a-tag-that-is-much-longer-than-36-bytes"},
            o);
    EXPECT_TRUE(has(m, "--tag")) << m;
    m = run({"--shared-dir", "/a", "--socket-path", std::string(120, 'x')}, o);
    EXPECT_TRUE(has(m, "too long")) << m;
}

TEST(VhostOptions, PrintCapabilitiesIgnoresTheRest)
{
    Options o;
    EXPECT_EQ(run({"--print-capabilities"}, o), "");
    EXPECT_TRUE(o.print_capabilities);
}

TEST(QmpOptions, QmpSocketImpliesReconnect)
{
    Options o;
    EXPECT_EQ(run({"--shared-dir", "/s", "--socket-path", "/r/s.sock", "--qmp-socket",
                   "/r/qmp.sock", "--qmp-device", "fs0"},
                  o),
              "");
    EXPECT_TRUE(o.reconnect);
    EXPECT_EQ(o.qmp_socket, "/r/qmp.sock");
    EXPECT_EQ(o.qmp_device, "fs0");
    EXPECT_TRUE(o.recovery); // under the fd store by default, as a mount is
    EXPECT_EQ(run({"--shared-dir", "/s", "--socket-path", "/r/s.sock"}, o), "");
    EXPECT_FALSE(o.reconnect);
    EXPECT_EQ(run({"--shared-dir", "/s", "--socket-path", "/r/s.sock", "--reconnect"}, o), "");
    EXPECT_TRUE(o.reconnect);
}

TEST(QmpOptions, Refused)
{
    Options o;
    EXPECT_NE(
        run({"--shared-dir", "/s", "--socket-path", "/r/s.sock", "--qmp-socket", "/r/qmp.sock"}, o),
        "");
    EXPECT_NE(run({"--shared-dir", "/s", "--socket-path", "/r/s.sock", "--qmp-device", "fs0"}, o),
              "");
    EXPECT_NE(run({"--shared-dir", "/s", "--mountpoint", "/m", "--reconnect"}, o), "");
    EXPECT_NE(run({"--shared-dir", "/s", "--mountpoint", "/m", "--qmp-socket", "/q", "--qmp-device",
                   "fs0"},
                  o),
              "");
    for (const char *bad : {"", "0fs", "fs 0", "fs\"0", "a/b"})
        EXPECT_NE(run({"--shared-dir", "/s", "--socket-path", "/r/s.sock", "--qmp-socket", "/q",
                       "--qmp-device", bad},
                      o),
                  "")
            << bad;
    EXPECT_NE(run({"--shared-dir", "/s", "--socket-path", "/r/s.sock", "--qmp-socket",
                   std::string(200, 'x'), "--qmp-device", "fs0"},
                  o),
              "");
}

TEST(MigrationOptions, FastPathDefaultsOnAndParses)
{
    Options o;
    EXPECT_EQ(run({"--shared-dir", "/s", "--socket-path", "/r/s.sock"}, o), "");
    EXPECT_TRUE(o.migration_fast_path);
    EXPECT_EQ(run({"--shared-dir", "/s", "--socket-path", "/r/s.sock", "--migration-fast-path",
                   "off"},
                  o),
              "");
    EXPECT_FALSE(o.migration_fast_path);
    for (const char *bad : {"", "yes", "ON", "1"}) {
        std::string m = run({"--shared-dir", "/s", "--socket-path", "/r/s.sock",
                             "--migration-fast-path", bad},
                            o);
        EXPECT_NE(m.find("--migration-fast-path"), std::string::npos) << bad << ": " << m;
    }
}

TEST(MigrationOptions, ModeParses)
{
    Options o;
    EXPECT_EQ(run({"--shared-dir", "/s", "--socket-path", "/r/s.sock"}, o), "");
    EXPECT_FALSE(o.migration_find_paths);
    EXPECT_EQ(run({"--shared-dir", "/s", "--socket-path", "/r/s.sock", "--migration-mode",
                   "find-paths"},
                  o),
              "");
    EXPECT_TRUE(o.migration_find_paths);
    EXPECT_EQ(run({"--shared-dir", "/s", "--socket-path", "/r/s.sock",
                   "--migration-mode=file-handles"},
                  o),
              "");
    EXPECT_FALSE(o.migration_find_paths);
    for (const char *bad : {"", "paths", "find_paths", "FILE-HANDLES"}) {
        std::string m = run(
            {"--shared-dir", "/s", "--socket-path", "/r/s.sock", "--migration-mode", bad}, o);
        EXPECT_NE(m.find("--migration-mode"), std::string::npos) << bad << ": " << m;
    }
}
