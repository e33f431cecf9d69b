// SPDX-License-Identifier: GPL-2.0
#include "daemon/options.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <getopt.h>

namespace holdfast::daemon {

namespace {
enum {
    kShared = 1000,
    kMount,
    kThreads,
    kCache,
    kWriteback,
    kNoWriteback,
    kXattr,
    kNoXattr,
    kReadonly,
    kAllowOther,
    kNoAllowOther,
    kDefaultPerms,
    kNoPosixLocks,
    kNoFlock,
    kReadyFd,
    kLogLevel,
    kMaxInodes,
    kMaxHandles,
    kRecovery,
    kFaultInjection,
    kHelp,
    kVersion,
};

bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t &out)
{
    if (!*s || *s == '-')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    out = v;
    return true;
}
} // namespace

const char *usage()
{
    return "Usage: holdfastd --shared-dir DIR --mountpoint MNT [options]\n"
           "\n"
           "Serves DIR at MNT over FUSE (/dev/fuse).\n"
           "\n"
           "Options:\n"
           "  --shared-dir DIR          host directory to serve (required)\n"
           "  --mountpoint MNT          where to mount it (required)\n"
           "  --thread-pool-size N      worker threads, 1..1024 (default: CPUs, at least 2)\n"
           "  --cache MODE              auto|always|never|metadata (default: auto)\n"
           "  --writeback               enable the kernel writeback cache\n"
           "  --no-writeback            disable it (default)\n"
           "  --xattr / --no-xattr      serve extended attributes (default: off)\n"
           "  --readonly                refuse every modification with EROFS\n"
           "  --allow-other             let all users use the mount (default as root)\n"
           "  --no-allow-other          only the mounting user may use it\n"
           "  --default-permissions     let the kernel check permissions from attributes\n"
           "  --no-posix-locks          do not serve fcntl() record locks\n"
           "  --no-flock                do not serve flock()\n"
           "  --max-inodes N            capacity of the inode table (default 1048576)\n"
           "  --max-handles N           capacity of the open-file table (default 262144)\n"
           "  --recovery on|off         survive crashes and upgrades (default: on): run\n"
           "                            under holdfast-fdstore (or systemd's fd store)\n"
           "  --fault-injection         allow 'holdfastctl stall' (crash tests only)\n"
           "  --ready-fd N              write \"ready\\n\" to fd N once the mount serves\n"
           "  --log-level LEVEL         error|warn|info|debug (default: info)\n"
           "  --help                    this text\n"
           "  --version                 print the version\n";
}

std::string parse(int argc, char **argv, Options &out)
{
    static const option longopts[] = {
        {"shared-dir", required_argument, nullptr, kShared},
        {"mountpoint", required_argument, nullptr, kMount},
        {"thread-pool-size", required_argument, nullptr, kThreads},
        {"threads", required_argument, nullptr, kThreads},
        {"cache", required_argument, nullptr, kCache},
        {"writeback", no_argument, nullptr, kWriteback},
        {"no-writeback", no_argument, nullptr, kNoWriteback},
        {"xattr", no_argument, nullptr, kXattr},
        {"no-xattr", no_argument, nullptr, kNoXattr},
        {"readonly", no_argument, nullptr, kReadonly},
        {"allow-other", no_argument, nullptr, kAllowOther},
        {"no-allow-other", no_argument, nullptr, kNoAllowOther},
        {"default-permissions", no_argument, nullptr, kDefaultPerms},
        {"no-posix-locks", no_argument, nullptr, kNoPosixLocks},
        {"no-flock", no_argument, nullptr, kNoFlock},
        {"ready-fd", required_argument, nullptr, kReadyFd},
        {"log-level", required_argument, nullptr, kLogLevel},
        {"max-inodes", required_argument, nullptr, kMaxInodes},
        {"max-handles", required_argument, nullptr, kMaxHandles},
        {"recovery", required_argument, nullptr, kRecovery},
        {"fault-injection", no_argument, nullptr, kFaultInjection},
        {"help", no_argument, nullptr, kHelp},
        {"version", no_argument, nullptr, kVersion},
        {nullptr, 0, nullptr, 0},
    };
    optind = 0; // 0, not 1: also resets glibc's position inside an option group
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, nullptr)) != -1) {
        uint64_t v;
        switch (c) {
        case kShared:
            out.fs.shared_dir = optarg;
            break;
        case kMount:
            out.mountpoint = optarg;
            break;
        case kThreads:
            if (!parse_u64(optarg, 1, 1024, v))
                return std::string("--thread-pool-size: '") + optarg +
                       "' is not a number between 1 and 1024";
            out.threads = unsigned(v);
            break;
        case kCache:
            if (!fs::parse_cache_mode(optarg, out.fs.cache))
                return std::string("--cache: '") + optarg +
                       "' is not one of auto, always, never, metadata";
            break;
        case kWriteback:
            out.fs.writeback = true;
            break;
        case kNoWriteback:
            out.fs.writeback = false;
            break;
        case kXattr:
            out.fs.xattr = true;
            break;
        case kNoXattr:
            out.fs.xattr = false;
            break;
        case kReadonly:
            out.fs.readonly = true;
            break;
        case kAllowOther:
            out.allow_other = true;
            out.allow_other_set = true;
            break;
        case kNoAllowOther:
            out.allow_other = false;
            out.allow_other_set = true;
            break;
        case kDefaultPerms:
            out.default_permissions = true;
            break;
        case kNoPosixLocks:
            out.fs.posix_locks = false;
            break;
        case kNoFlock:
            out.fs.flock = false;
            break;
        case kReadyFd:
            if (!parse_u64(optarg, 0, 1u << 20, v))
                return std::string("--ready-fd: '") + optarg + "' is not a file descriptor";
            out.ready_fd = int(v);
            break;
        case kLogLevel:
            if (!log::parse_level(optarg, out.log_level))
                return std::string("--log-level: '") + optarg +
                       "' is not one of error, warn, info, debug";
            break;
        case kMaxInodes:
            if (!parse_u64(optarg, 16, 1ull << 32, v))
                return std::string("--max-inodes: '") + optarg +
                       "' is not a number between 16 and 4294967296";
            out.max_inodes = v;
            break;
        case kMaxHandles:
            if (!parse_u64(optarg, 16, 1ull << 32, v))
                return std::string("--max-handles: '") + optarg +
                       "' is not a number between 16 and 4294967296";
            out.max_handles = v;
            break;
        case kRecovery:
            if (!strcmp(optarg, "on"))
                out.recovery = true;
            else if (!strcmp(optarg, "off"))
                out.recovery = false;
            else
                return std::string("--recovery: '") + optarg + "' is not one of on, off";
            break;
        case kFaultInjection:
            out.fault_injection = true;
            break;
        case 'h':
        case kHelp:
            out.help = true;
            return "";
        case kVersion:
            out.version = true;
            return "";
        case ':':
            return std::string("option '") + argv[optind - 1] + "' needs an argument";
        default: {
            // A long option given an argument it does not take comes back as
            // '?' with optopt set to its value.
            if (optopt >= kShared)
                return std::string("option '") + argv[optind - 1] + "' takes no argument";
            if (optopt)
                return std::string("unknown option '-") + char(optopt) + "'";
            return std::string("unknown option '") + argv[optind - 1] + "'";
        }
        }
    }
    if (optind < argc)
        return std::string("unexpected argument '") + argv[optind] + "'";
    if (out.fs.shared_dir.empty())
        return "--shared-dir DIR is required";
    if (out.mountpoint.empty())
        return "--mountpoint MNT is required";
    return "";
}

} // namespace holdfast::daemon
