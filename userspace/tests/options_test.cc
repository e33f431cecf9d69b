// SPDX-License-Identifier: GPL-2.0
// holdfastd's command line: every refusal must tell the user which option and
// which value were wrong, because that message is all they get.
#include "daemon/options.h"

#include <gtest/gtest.h>

#include <deque>
#include <getopt.h>
#include <initializer_list>
#include <string>
#include <vector>

using holdfast::daemon::Options;
using holdfast::daemon::parse;
using holdfast::fs::CacheMode;
using holdfast::log::Level;

namespace {

// gtest's own predicate form prints both strings on failure; no gmock needed.
bool contains(const std::string &haystack, const std::string &needle) {
    return haystack.find(needle) != std::string::npos;
}
bool lacks(const std::string &haystack, const std::string &needle) {
    return !contains(haystack, needle);
}

// getopt keeps a pointer into the argv it last scanned; argv strings live for
// the whole test run so that pointer never dangles between tests.
std::deque<std::string> &arg_store() {
    static std::deque<std::string> store;
    return store;
}

std::vector<char *> make_argv(std::initializer_list<const char *> args) {
    std::vector<char *> argv;
    arg_store().emplace_back("holdfastd");
    argv.push_back(arg_store().back().data());
    for (const char *a : args) {
        arg_store().emplace_back(a);
        argv.push_back(arg_store().back().data());
    }
    argv.push_back(nullptr);
    return argv;
}

// glibc only forgets a half-scanned argv element when optind is 0; do that
// here so each test starts clean whatever the previous one left behind.
void reset_getopt() {
    static char prog[] = "reset";
    char *argv[] = {prog, nullptr};
    optind = 0;
    opterr = 0;
    while (getopt(1, argv, "") != -1) {
    }
}

// Parses with a fresh getopt and a fresh Options; returns the message.
std::string run(std::initializer_list<const char *> args, Options &o) {
    reset_getopt();
    auto argv = make_argv(args);
    o = Options{};
    return parse(int(argv.size() - 1), argv.data(), o);
}

std::string run(std::initializer_list<const char *> args) {
    Options o;
    return run(args, o);
}

TEST(Options, MinimalCommandLine) {
    Options o;
    EXPECT_EQ(run({"--shared-dir", "/srv", "--mountpoint", "/mnt"}, o), "");
    EXPECT_EQ(o.fs.shared_dir, "/srv");
    EXPECT_EQ(o.mountpoint, "/mnt");
    // Defaults documented in usage().
    EXPECT_EQ(o.threads, 0u);
    EXPECT_EQ(o.fs.cache, CacheMode::automatic);
    EXPECT_FALSE(o.fs.writeback);
    EXPECT_FALSE(o.fs.xattr);
    EXPECT_FALSE(o.fs.readonly);
    EXPECT_TRUE(o.fs.posix_locks);
    EXPECT_TRUE(o.fs.flock);
    EXPECT_FALSE(o.allow_other_set);
    EXPECT_FALSE(o.default_permissions);
    EXPECT_EQ(o.ready_fd, -1);
    EXPECT_EQ(o.log_level, Level::info);
    EXPECT_EQ(o.max_inodes, 1u << 20);
    EXPECT_EQ(o.max_handles, 1u << 18);
    EXPECT_TRUE(o.recovery);
    EXPECT_FALSE(o.fault_injection);
    EXPECT_FALSE(o.help);
    EXPECT_FALSE(o.version);
}

TEST(Options, EqualsFormIsAccepted) {
    Options o;
    EXPECT_EQ(run({"--shared-dir=/srv", "--mountpoint=/mnt", "--cache=never"}, o), "");
    EXPECT_EQ(o.fs.shared_dir, "/srv");
    EXPECT_EQ(o.mountpoint, "/mnt");
    EXPECT_EQ(o.fs.cache, CacheMode::never);
}

TEST(Options, FullCommandLineSetsEveryField) {
    Options o;
    // One option (and its value) per line reads best here.
    // clang-format off
    ASSERT_EQ(run({"--shared-dir", "/srv/share",
                   "--mountpoint", "/mnt/x",
                   "--thread-pool-size", "8",
                   "--cache", "always",
                   "--writeback",
                   "--xattr",
                   "--readonly",
                   "--no-allow-other",
                   "--default-permissions",
                   "--no-posix-locks",
                   "--no-flock",
                   "--ready-fd", "5",
                   "--log-level", "debug",
                   "--max-inodes", "4096",
                   "--max-handles", "1024",
                   "--recovery", "off",
                   "--fault-injection"},
                  o),
              "");
    // clang-format on
    EXPECT_EQ(o.fs.shared_dir, "/srv/share");
    EXPECT_EQ(o.mountpoint, "/mnt/x");
    EXPECT_EQ(o.threads, 8u);
    EXPECT_EQ(o.fs.cache, CacheMode::always);
    EXPECT_TRUE(o.fs.writeback);
    EXPECT_TRUE(o.fs.xattr);
    EXPECT_TRUE(o.fs.readonly);
    EXPECT_FALSE(o.allow_other);
    EXPECT_TRUE(o.allow_other_set);
    EXPECT_TRUE(o.default_permissions);
    EXPECT_FALSE(o.fs.posix_locks);
    EXPECT_FALSE(o.fs.flock);
    EXPECT_EQ(o.ready_fd, 5);
    EXPECT_EQ(o.log_level, Level::debug);
    EXPECT_EQ(o.max_inodes, 4096u);
    EXPECT_EQ(o.max_handles, 1024u);
    EXPECT_FALSE(o.recovery);
    EXPECT_TRUE(o.fault_injection);
    EXPECT_FALSE(o.help);
    EXPECT_FALSE(o.version);
}

TEST(Options, LaterFlagsOverrideEarlierOnes) {
    Options o;
    ASSERT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--writeback", "--no-writeback",
                   "--xattr", "--no-xattr", "--no-allow-other", "--allow-other"},
                  o),
              "");
    EXPECT_FALSE(o.fs.writeback);
    EXPECT_FALSE(o.fs.xattr);
    EXPECT_TRUE(o.allow_other);
    EXPECT_TRUE(o.allow_other_set);
}

TEST(Options, EveryCacheModeParses) {
    const std::pair<const char *, CacheMode> modes[] = {{"auto", CacheMode::automatic},
                                                        {"always", CacheMode::always},
                                                        {"never", CacheMode::never},
                                                        {"metadata", CacheMode::metadata}};
    for (auto [name, mode] : modes) {
        Options o;
        EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--cache", name}, o), "")
            << name;
        EXPECT_EQ(o.fs.cache, mode) << name;
    }
}

TEST(Options, EveryLogLevelParses) {
    const std::pair<const char *, Level> levels[] = {{"error", Level::error},
                                                     {"warn", Level::warn},
                                                     {"info", Level::info},
                                                     {"debug", Level::debug}};
    for (auto [name, level] : levels) {
        Options o;
        EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--log-level", name}, o), "")
            << name;
        EXPECT_EQ(o.log_level, level) << name;
    }
}

TEST(Options, ThreadPoolBounds) {
    Options o;
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--thread-pool-size", "1"}, o), "");
    EXPECT_EQ(o.threads, 1u);
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--thread-pool-size", "1024"}, o),
              "");
    EXPECT_EQ(o.threads, 1024u);
    // virtiofsd's spelling is an alias.
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--threads", "3"}, o), "");
    EXPECT_EQ(o.threads, 3u);
}

TEST(Options, MissingSharedDir) {
    std::string m = run({"--mountpoint", "/m"});
    EXPECT_PRED2(contains, m, "--shared-dir");
    EXPECT_PRED2(contains, m, "required");
}

TEST(Options, MissingMountpoint) {
    std::string m = run({"--shared-dir", "/a"});
    EXPECT_PRED2(contains, m, "--mountpoint");
    EXPECT_PRED2(contains, m, "required");
}

TEST(Options, NothingGiven) {
    // At least the first missing option is named.
    std::string m = run({});
    EXPECT_PRED2(contains, m, "--shared-dir");
}

TEST(Options, EmptySharedDirCountsAsMissing) {
    std::string m = run({"--shared-dir=", "--mountpoint", "/m"});
    EXPECT_PRED2(contains, m, "--shared-dir");
}

TEST(Options, UnknownLongOptionIsNamed) {
    std::string m = run({"--shared-dir", "/a", "--mountpoint", "/m", "--bogus"});
    EXPECT_PRED2(contains, m, "unknown option");
    EXPECT_PRED2(contains, m, "--bogus");
}

TEST(Options, UnknownShortOptionIsNamed) {
    std::string m = run({"--shared-dir", "/a", "-x", "--mountpoint", "/m"});
    EXPECT_PRED2(contains, m, "unknown option");
    EXPECT_PRED2(contains, m, "-x");
}

TEST(Options, UnknownShortOptionInsideAClusterIsNamed) {
    // "-xh": getopt has not finished the element when it reports 'x', so
    // argv[optind - 1] is the element before it (here the program name).
    std::string m = run({"-xh", "--shared-dir", "/a", "--mountpoint", "/m"});
    EXPECT_PRED2(contains, m, "-x");
    EXPECT_PRED2(lacks, m, "holdfastd");
}

TEST(Options, UnexpectedPositionalArgument) {
    std::string m = run({"--shared-dir", "/a", "--mountpoint", "/m", "extra"});
    EXPECT_PRED2(contains, m, "extra");
}

TEST(Options, MissingArgumentAtEndIsNamed) {
    for (const char *opt :
         {"--cache", "--thread-pool-size", "--log-level", "--ready-fd", "--shared-dir",
          "--mountpoint", "--max-inodes", "--max-handles", "--recovery"}) {
        std::string m = run({"--shared-dir", "/a", "--mountpoint", "/m", opt});
        EXPECT_PRED2(contains, m, opt) << opt;
        EXPECT_PRED2(contains, m, "argument") << opt;
    }
}

TEST(Options, ArgumentGivenToFlagIsNotCalledMissing) {
    // "--writeback=yes": the option takes no argument; telling the user it
    // "needs an argument" sends them the wrong way.
    std::string m = run({"--shared-dir", "/a", "--mountpoint", "/m", "--writeback=yes"});
    EXPECT_PRED2(contains, m, "--writeback");
    EXPECT_PRED2(lacks, m, "needs an argument");
}

// A bad value is reported with the option's name and the value as given.
void expect_bad_value(const char *opt, const char *value) {
    std::string m = run({"--shared-dir", "/a", "--mountpoint", "/m", opt, value});
    EXPECT_PRED2(contains, m, opt) << opt << " " << value;
    EXPECT_PRED2(contains, m, std::string("'") + value + "'") << opt << " " << value;
}

TEST(Options, BadCacheMode) {
    expect_bad_value("--cache", "sometimes");
    expect_bad_value("--cache", "");
    expect_bad_value("--cache", "AUTO");
}

TEST(Options, MaxThreads) {
    Options o;
    EXPECT_EQ(o.max_threads, 0u); // the server's default
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--max-threads", "64"}, o), "");
    EXPECT_EQ(o.max_threads, 64u);
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--thread-pool-size", "4",
                   "--max-threads", "4"},
                  o),
              "");
    for (const char *v : {"0", "1025", "x", ""})
        expect_bad_value("--max-threads", v);
    Options b;
    EXPECT_PRED2(contains,
                 run({"--shared-dir", "/a", "--mountpoint", "/m", "--thread-pool-size", "8",
                      "--max-threads", "4"},
                     b),
                 "--max-threads 4 is below --thread-pool-size 8");
    Options v;
    EXPECT_PRED2(contains,
                 run({"--shared-dir", "/a", "--socket-path", "/s", "--max-threads", "4"}, v),
                 "--max-threads is for a mount");
    EXPECT_PRED2(contains, holdfast::daemon::usage(), "--max-threads");
}

TEST(Options, BadThreadPoolSize) {
    for (const char *v : {"0", "1025", "abc", "-1", "", "8x", "99999999999999999999999"})
        expect_bad_value("--thread-pool-size", v);
}

TEST(Options, BadLogLevel) {
    expect_bad_value("--log-level", "verbose");
    expect_bad_value("--log-level", "");
    expect_bad_value("--log-level", "3");
}

TEST(Options, BadReadyFd) {
    for (const char *v : {"-1", "abc", "", "3.5", "99999999999"})
        expect_bad_value("--ready-fd", v);
    Options o;
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--ready-fd", "0"}, o), "");
    EXPECT_EQ(o.ready_fd, 0);
}

TEST(Options, RecoveryOnOff) {
    Options o;
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--recovery", "off"}, o), "");
    EXPECT_FALSE(o.recovery);
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--recovery=on"}, o), "");
    EXPECT_TRUE(o.recovery);
}

TEST(Options, BadRecovery) {
    expect_bad_value("--recovery", "maybe");
    expect_bad_value("--recovery", "");
    expect_bad_value("--recovery", "1");
}

TEST(Options, BadTableSizes) {
    for (const char *opt : {"--max-inodes", "--max-handles"}) {
        for (const char *v : {"15", "0", "4294967297", "-16", "lots"})
            expect_bad_value(opt, v);
    }
    Options o;
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--max-inodes", "16",
                   "--max-handles", "4294967296"},
                  o),
              "");
    EXPECT_EQ(o.max_inodes, 16u);
    EXPECT_EQ(o.max_handles, 4294967296u);
}

TEST(Options, HelpSetsFlagWithoutRequiredOptions) {
    Options o;
    EXPECT_EQ(run({"--help"}, o), "");
    EXPECT_TRUE(o.help);
    EXPECT_EQ(run({"-h"}, o), "");
    EXPECT_TRUE(o.help);
}

TEST(Options, VersionSetsFlagWithoutRequiredOptions) {
    Options o;
    EXPECT_EQ(run({"--version"}, o), "");
    EXPECT_TRUE(o.version);
    EXPECT_FALSE(o.help);
}

TEST(Options, UsageMentionsEveryOption) {
    std::string u = holdfast::daemon::usage();
    const char *const all[] = {"--shared-dir",     "--mountpoint",     "--thread-pool-size",
                               "--cache",          "--writeback",      "--no-writeback",
                               "--xattr",          "--no-xattr",       "--readonly",
                               "--allow-other",    "--no-allow-other", "--default-permissions",
                               "--no-posix-locks", "--no-flock",       "--max-inodes",
                               "--max-handles",    "--recovery",       "--fault-injection",
                               "--ready-fd",       "--log-level",      "--help",
                               "--version"};
    for (const char *opt : all)
        EXPECT_PRED2(contains, u, opt) << opt;
}

TEST(Options, ParseIsRepeatable) {
    // parse() promises a pure argv -> Options mapping.  glibc's getopt keeps
    // its position inside a short-option cluster across calls unless optind
    // is reset to 0; with optind = 1 a second parse() continues in the
    // previous argv.  Deliberately no reset_getopt() between the calls.
    reset_getopt();
    auto first = make_argv({"-hx"});
    Options a;
    ASSERT_EQ(parse(int(first.size() - 1), first.data(), a), "");
    ASSERT_TRUE(a.help);

    auto second = make_argv({"--shared-dir", "/a", "--mountpoint", "/m"});
    Options b;
    EXPECT_EQ(parse(int(second.size() - 1), second.data(), b), "");
    EXPECT_FALSE(b.help);
    EXPECT_EQ(b.fs.shared_dir, "/a");
    EXPECT_EQ(b.mountpoint, "/m");
}

TEST(Options, Passthrough) {
    Options o;
    ASSERT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m"}, o), "");
    EXPECT_TRUE(o.fs.passthrough); // on where safe: the server decides
    EXPECT_FALSE(o.passthrough_set);
    ASSERT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--passthrough", "off"}, o), "");
    EXPECT_FALSE(o.fs.passthrough);
    EXPECT_TRUE(o.passthrough_set);
    Options p;
    ASSERT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--passthrough", "on"}, p), "");
    EXPECT_TRUE(p.fs.passthrough);
    EXPECT_TRUE(p.passthrough_set);
    std::string m = run({"--shared-dir", "/a", "--mountpoint", "/m", "--passthrough", "yes"});
    EXPECT_PRED2(contains, m, "--passthrough");
    EXPECT_PRED2(contains, holdfast::daemon::usage(), "--passthrough on|off");
}

TEST(Options, DirectIo) {
    Options o;
    ASSERT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m"}, o), "");
    EXPECT_FALSE(o.fs.direct_io); // O_DIRECT dropped, as before the option
    ASSERT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--direct-io", "on"}, o), "");
    EXPECT_TRUE(o.fs.direct_io);
    Options v;
    ASSERT_EQ(run({"--socket-path", "/s", "--shared-dir", "/a", "--direct-io", "on"}, v), "");
    EXPECT_TRUE(v.fs.direct_io); // vhost-user too
    ASSERT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--direct-io", "off"}, v), "");
    EXPECT_FALSE(v.fs.direct_io);
    std::string m = run({"--shared-dir", "/a", "--mountpoint", "/m", "--direct-io", "1"});
    EXPECT_PRED2(contains, m, "--direct-io: '1' is not one of on, off");
    EXPECT_PRED2(contains, holdfast::daemon::usage(), "--direct-io on|off");
}

TEST(Options, TransportDefaultsToDevFuse) {
    Options o;
    ASSERT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m"}, o), "");
    EXPECT_EQ(o.transport, Options::Transport::dev);
    EXPECT_EQ(o.uring_queue_depth, 8u);
}

TEST(Options, EveryTransportParses) {
    const std::pair<const char *, Options::Transport> modes[] = {
        {"dev", Options::Transport::dev},
        {"uring", Options::Transport::uring},
        {"auto", Options::Transport::automatic}};
    for (auto [name, mode] : modes) {
        Options o;
        EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--transport", name}, o), "")
            << name;
        EXPECT_EQ(o.transport, mode) << name;
        EXPECT_STREQ(holdfast::daemon::transport_name(mode), name);
    }
    Options o;
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--transport=uring"}, o), "");
    EXPECT_EQ(o.transport, Options::Transport::uring);
}

TEST(Options, BadTransport) {
    expect_bad_value("--transport", "io_uring");
    expect_bad_value("--transport", "");
    expect_bad_value("--transport", "URING");
    std::string m = run({"--shared-dir", "/a", "--mountpoint", "/m", "--transport"});
    EXPECT_PRED2(contains, m, "--transport");
    EXPECT_PRED2(contains, m, "argument");
}

TEST(Options, UringQueueDepthBounds) {
    Options o;
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--uring-queue-depth", "1"}, o),
              "");
    EXPECT_EQ(o.uring_queue_depth, 1u);
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--uring-queue-depth=256"}, o),
              "");
    EXPECT_EQ(o.uring_queue_depth, 256u);
    for (const char *v : {"0", "257", "-1", "", "eight", "8k"})
        expect_bad_value("--uring-queue-depth", v);
}

TEST(Options, BackendIo) {
    Options o;
    EXPECT_TRUE(o.uring_backend_io); // the default: on the ring
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--backend-io", "sync"}, o), "");
    EXPECT_FALSE(o.uring_backend_io);
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--backend-io=uring"}, o), "");
    EXPECT_TRUE(o.uring_backend_io);
    for (const char *v : {"", "async", "on", "URING"})
        expect_bad_value("--backend-io", v);
}

TEST(Options, Readahead) {
    Options o;
    EXPECT_EQ(o.readahead_kib, 1024u); // the default: one READ of max_pages
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--readahead", "kernel"}, o), "");
    EXPECT_EQ(o.readahead_kib, 0u);
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--readahead=4"}, o), "");
    EXPECT_EQ(o.readahead_kib, 4u);
    EXPECT_EQ(run({"--shared-dir", "/a", "--mountpoint", "/m", "--readahead", "65536"}, o), "");
    EXPECT_EQ(o.readahead_kib, 65536u);
    for (const char *v : {"", "0", "3", "65537", "1M", "off", "-1"})
        expect_bad_value("--readahead", v);
    Options v;
    EXPECT_PRED2(contains,
                 run({"--shared-dir", "/a", "--socket-path", "/s", "--readahead", "256"}, v),
                 "--readahead is for a mount");
}

TEST(Options, UsageMentionsTransportOptions) {
    std::string u = holdfast::daemon::usage();
    for (const char *s : {"--transport", "--uring-queue-depth", "dev|uring|auto", "--backend-io"})
        EXPECT_PRED2(contains, u, s) << s;
}

} // namespace
