// SPDX-License-Identifier: GPL-2.0
#include "daemon/options.h"

#include <cctype>
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
    kMaxThreads,
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
    kTransport,
    kPassthrough,
    kDirectIo,
    kUringDepth,
    kBackendIo,
    kReadahead,
    kSocketPath,
    kFd,
    kSandbox,
    kSeccomp,
    kTag,
    kMaxQueues,
    kReconnect,
    kQmpSocket,
    kQmpDevice,
    kMigrationOnError,
    kMigrationFastPath,
    kMigrationMode,
    kPrintCaps,
    kDaxWindow,
    kDaxInode,
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
// A two-way choice: `out` is true for `yes`, false for `no`; false if
// `s` is neither.
bool parse_choice(const char *s, const char *yes, const char *no, bool &out)
{
    if (!strcmp(s, yes))
        out = true;
    else if (!strcmp(s, no))
        out = false;
    else
        return false;
    return true;
}
// A size: digits, then nothing (bytes) or K, M, G, T (binary multiples).
bool parse_size(const char *s, uint64_t &out)
{
    if (!*s || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return false;
    unsigned shift = 0;
    if (*end) {
        switch (*end) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        case 't':
        case 'T':
            shift = 40;
            break;
        default:
            return false;
        }
        if (end[1])
            return false;
    }
    if (v > (~0ULL >> shift))
        return false;
    out = uint64_t(v) << shift;
    return true;
}
// --dax-inode: flag, all, none or min-size=SIZE; what is wrong, or "".
std::string parse_dax_inode(const char *s, fs::Options &out)
{
    static constexpr char kMin[] = "min-size=";
    uint64_t v;
    if (!strcmp(s, "flag"))
        out.dax_inode = fs::DaxInodePolicy::flag;
    else if (!strcmp(s, "all"))
        out.dax_inode = fs::DaxInodePolicy::all;
    else if (!strcmp(s, "none"))
        out.dax_inode = fs::DaxInodePolicy::none;
    else if (!strncmp(s, kMin, sizeof(kMin) - 1)) {
        if (!parse_size(s + sizeof(kMin) - 1, v))
            return "has no size after min-size= (a number, optionally followed by K, M, G or T)";
        out.dax_inode = fs::DaxInodePolicy::min_size;
        out.dax_inode_min_size = v;
    } else {
        return "is not flag, all, none or min-size=SIZE";
    }
    return "";
}
} // namespace

const char *transport_name(Options::Transport t)
{
    switch (t) {
    case Options::Transport::dev:
        return "dev";
    case Options::Transport::uring:
        return "uring";
    case Options::Transport::automatic:
        return "auto";
    }
    return "?";
}

const char *usage()
{
    return "Usage: holdfastd --shared-dir DIR --mountpoint MNT [options]\n"
           "       holdfastd --shared-dir DIR --socket-path SOCK [options]\n"
           "\n"
           "Serves DIR at MNT over FUSE (/dev/fuse), or to a virtual machine as a\n"
           "vhost-user-fs back-end (QEMU -device vhost-user-fs-pci) on SOCK.\n"
           "\n"
           "Options:\n"
           "  --shared-dir DIR          host directory to serve (required)\n"
           "  --mountpoint MNT          where to mount it (required without --socket-path)\n"
           "  --socket-path SOCK        vhost-user mode: listen on the UNIX socket SOCK\n"
           "  --fd N                    vhost-user mode: fd N is the listening socket\n"
           "  --sandbox MODE            vhost-user mode: namespace|chroot|none (default\n"
           "                            namespace: own mount namespace, minimal root,\n"
           "                            dropped capabilities)\n"
           "  --seccomp ACTION          vhost-user mode: kill|log|trap|none (default kill)\n"
           "  --tag TAG                 vhost-user mode: virtio-fs tag for front-ends that\n"
           "                            read the device config from the back-end\n"
           "  --max-request-queues N    vhost-user mode: request queues offered, 1..16\n"
           "  --reconnect               vhost-user mode: after the front-end disconnects,\n"
           "                            keep the state and serve the next one (a new\n"
           "                            device for the same guest) instead of exiting\n"
           "  --qmp-socket QMP          vhost-user mode: the VM's QMP socket; after a restart\n"
           "                            or a disconnect, re-plug the device through it\n"
           "                            (implies --reconnect; exits when QEMU is gone)\n"
           "  --qmp-device ID           the vhost-user-fs-pci device's id (with --qmp-socket)\n"
           "  --migration-on-error abort|guest-error\n"
           "                            vhost-user migration destination, when a migrated\n"
           "                            file does not resolve: fail the migration (default;\n"
           "                            the source keeps the guest) or answer ESTALE for it\n"
           "  --migration-fast-path on|off\n"
           "                            same-host migration: the destination takes the\n"
           "                            source's open fds instead of opening every file\n"
           "                            again (default: on)\n"
           "  --migration-mode file-handles|find-paths\n"
           "                            migration source: file handles only (default), or\n"
           "                            every inode's path too, for a destination on\n"
           "                            another host or file system\n"
           "  --dax-window SIZE         vhost-user mode: the virtio-fs DAX window (the\n"
           "                            device's cache size), a multiple of 2M up to 1T,\n"
           "                            K/M/G/T suffixes; 0 (default): no DAX\n"
           "  --dax-inode POLICY        with --dax-window, the files a guest mounted with\n"
           "                            dax=inode maps: flag (default: those with the host\n"
           "                            attribute FS_XFLAG_DAX, chattr +x), all, none, or\n"
           "                            min-size=SIZE (files of at least SIZE bytes)\n"
           "  --print-capabilities      print the vhost-user back-end capabilities (JSON)\n"
           "  --thread-pool-size N      worker threads, 1..1024 (default: CPUs, at least 2)\n"
           "  --max-threads N           mount: workers in all, spares started while others\n"
           "                            wait for a device included, 1..1024 (default: 10,\n"
           "                            or --thread-pool-size if more)\n"
           "  --cache MODE              auto|always|never|metadata (default: auto)\n"
           "  --writeback               enable the kernel writeback cache\n"
           "  --no-writeback            disable it (default)\n"
           "  --passthrough on|off      kernel passthrough of regular files' reads, writes\n"
           "                            and mmap (default: on; needs root; never with the\n"
           "                            writeback cache or for vhost-user)\n"
           "  --direct-io on|off        open a host file O_DIRECT when the open asked for\n"
           "                            it, so its I/O bypasses the host page cache\n"
           "                            (default: off: O_DIRECT is dropped)\n"
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
           "  --transport MODE          dev|uring|auto (default: dev): serve requests from\n"
           "                            /dev/fuse, or from FUSE-over-io_uring queues (one per\n"
           "                            CPU; Linux 6.14+, fuse enable_uring=Y); auto uses\n"
           "                            io_uring when the kernel offers it\n"
           "  --uring-queue-depth N     io_uring entries per queue, 1..256 (default 8)\n"
           "  --backend-io MODE         uring|sync (default: uring): with --transport uring,\n"
           "                            read, write, fsync and fallocate the backing files\n"
           "                            through each queue's ring, many at once, or by\n"
           "                            blocking calls, one per queue at a time\n"
           "  --readahead KIB|kernel    the mount's readahead, 4..65536 KiB (default 1024:\n"
           "                            one READ of 1 MiB); kernel keeps the kernel's\n"
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
        {"max-threads", required_argument, nullptr, kMaxThreads},
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
        {"transport", required_argument, nullptr, kTransport},
        {"passthrough", required_argument, nullptr, kPassthrough},
        {"direct-io", required_argument, nullptr, kDirectIo},
        {"uring-queue-depth", required_argument, nullptr, kUringDepth},
        {"backend-io", required_argument, nullptr, kBackendIo},
        {"readahead", required_argument, nullptr, kReadahead},
        {"socket-path", required_argument, nullptr, kSocketPath},
        {"fd", required_argument, nullptr, kFd},
        {"sandbox", required_argument, nullptr, kSandbox},
        {"seccomp", required_argument, nullptr, kSeccomp},
        {"tag", required_argument, nullptr, kTag},
        {"max-request-queues", required_argument, nullptr, kMaxQueues},
        {"reconnect", no_argument, nullptr, kReconnect},
        {"qmp-socket", required_argument, nullptr, kQmpSocket},
        {"qmp-device", required_argument, nullptr, kQmpDevice},
        {"migration-on-error", required_argument, nullptr, kMigrationOnError},
        {"migration-fast-path", required_argument, nullptr, kMigrationFastPath},
        {"migration-mode", required_argument, nullptr, kMigrationMode},
        {"print-capabilities", no_argument, nullptr, kPrintCaps},
        {"dax-window", required_argument, nullptr, kDaxWindow},
        {"dax-inode", required_argument, nullptr, kDaxInode},
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
        case kMaxThreads:
            if (!parse_u64(optarg, 1, 1024, v))
                return std::string("--max-threads: '") + optarg +
                       "' is not a number between 1 and 1024";
            out.max_threads = unsigned(v);
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
            if (!parse_choice(optarg, "on", "off", out.recovery))
                return std::string("--recovery: '") + optarg + "' is not one of on, off";
            break;
        case kFaultInjection:
            out.fault_injection = true;
            break;
        case kTransport:
            if (!strcmp(optarg, "dev"))
                out.transport = Options::Transport::dev;
            else if (!strcmp(optarg, "uring"))
                out.transport = Options::Transport::uring;
            else if (!strcmp(optarg, "auto"))
                out.transport = Options::Transport::automatic;
            else
                return std::string("--transport: '") + optarg + "' is not one of auto, uring, dev";
            break;
        case kPassthrough:
            if (!parse_choice(optarg, "on", "off", out.fs.passthrough))
                return std::string("--passthrough: '") + optarg + "' is not one of on, off";
            out.passthrough_set = true;
            break;
        case kDirectIo:
            if (!parse_choice(optarg, "on", "off", out.fs.direct_io))
                return std::string("--direct-io: '") + optarg + "' is not one of on, off";
            break;
        case kUringDepth:
            if (!parse_u64(optarg, 1, 256, v))
                return std::string("--uring-queue-depth: '") + optarg +
                       "' is not a number between 1 and 256";
            out.uring_queue_depth = unsigned(v);
            break;
        case kBackendIo:
            if (!parse_choice(optarg, "uring", "sync", out.uring_backend_io))
                return std::string("--backend-io: '") + optarg + "' is not one of uring, sync";
            break;
        case kReadahead:
            if (!strcmp(optarg, "kernel"))
                out.readahead_kib = 0;
            else if (parse_u64(optarg, 4, 65536, v))
                out.readahead_kib = unsigned(v);
            else
                return std::string("--readahead: '") + optarg +
                       "' is not kernel or a number of KiB between 4 and 65536";
            out.readahead_set = true;
            break;
        case kSocketPath:
            if (!*optarg)
                return "--socket-path: empty path";
            if (strlen(optarg) >= 108)
                return std::string("--socket-path: '") + optarg + "' is too long for a UNIX socket";
            out.socket_path = optarg;
            break;
        case kFd:
            if (!parse_u64(optarg, 0, 1u << 20, v))
                return std::string("--fd: '") + optarg + "' is not a file descriptor";
            out.listen_fd = int(v);
            break;
        case kSandbox:
            if (strcmp(optarg, "namespace") && strcmp(optarg, "chroot") && strcmp(optarg, "none"))
                return std::string("--sandbox: '") + optarg +
                       "' is not one of namespace, chroot, none";
            out.sandbox = optarg;
            break;
        case kSeccomp:
            if (strcmp(optarg, "kill") && strcmp(optarg, "log") && strcmp(optarg, "trap") &&
                strcmp(optarg, "none"))
                return std::string("--seccomp: '") + optarg +
                       "' is not one of kill, log, trap, none";
            out.seccomp = optarg;
            break;
        case kTag:
            if (!*optarg || strlen(optarg) > 36)
                return std::string("--tag: '") + optarg + "' must be 1..36 bytes";
            out.tag = optarg;
            break;
        case kMaxQueues:
            if (!parse_u64(optarg, 1, 16, v))
                return std::string("--max-request-queues: '") + optarg +
                       "' is not a number between 1 and 16";
            out.max_request_queues = unsigned(v);
            break;
        case kReconnect:
            out.reconnect = true;
            break;
        case kQmpSocket:
            if (!*optarg || strlen(optarg) >= 108)
                return std::string("--qmp-socket: '") + optarg +
                       "' is not a UNIX socket path (1..107 bytes)";
            out.qmp_socket = optarg;
            break;
        case kQmpDevice:
            // QEMU ids: a letter, then letters, digits, '-', '.', '_'.
            if (!*optarg || strlen(optarg) > 64 || !isalpha((unsigned char)optarg[0]) ||
                strspn(optarg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789-._") != strlen(optarg))
                return std::string("--qmp-device: '") + optarg + "' is not a QEMU device id";
            out.qmp_device = optarg;
            break;
        case kMigrationOnError:
            if (!parse_choice(optarg, "abort", "guest-error", out.migration_abort))
                return std::string("--migration-on-error: '") + optarg +
                       "' is not abort or guest-error";
            break;
        case kMigrationFastPath:
            if (!parse_choice(optarg, "on", "off", out.migration_fast_path))
                return std::string("--migration-fast-path: '") + optarg + "' is not on or off";
            break;
        case kMigrationMode:
            if (!parse_choice(optarg, "find-paths", "file-handles", out.migration_find_paths))
                return std::string("--migration-mode: '") + optarg +
                       "' is not file-handles or find-paths";
            break;
        case kDaxWindow:
            if (!parse_size(optarg, v))
                return std::string("--dax-window: '") + optarg +
                       "' is not a size (a number, optionally followed by K, M, G or T)";
            if (v % (2ULL << 20))
                return std::string("--dax-window: '") + optarg +
                       "' is not a multiple of 2M (the guest maps 2 MiB ranges)";
            if (v > (1ULL << 40))
                return std::string("--dax-window: '") + optarg + "' is larger than 1T";
            out.dax_window = v;
            break;
        case kDaxInode:
            if (std::string err = parse_dax_inode(optarg, out.fs); !err.empty())
                return "--dax-inode: '" + std::string(optarg) + "' " + err;
            out.dax_inode_set = true;
            break;
        case kPrintCaps:
            out.print_capabilities = true;
            return "";
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
    if (!out.socket_path.empty() && out.listen_fd >= 0)
        return "--socket-path and --fd exclude each other";
    if (out.vhost() && !out.mountpoint.empty())
        return "--mountpoint and --socket-path/--fd exclude each other";
    if (out.vhost() && out.transport != Options::Transport::dev)
        return "--transport is for a mount (--mountpoint); vhost-user has its own queues";
    if (out.mountpoint.empty() && !out.vhost())
        return "--mountpoint MNT is required (or --socket-path SOCK for a VM)";
    if (!out.vhost() && (out.reconnect || !out.qmp_socket.empty() || !out.qmp_device.empty()))
        return "--reconnect, --qmp-socket and --qmp-device are for vhost-user mode "
               "(--socket-path/--fd)";
    if (out.vhost() && out.max_threads)
        return "--max-threads is for a mount (--mountpoint); vhost-user starts "
               "--thread-pool-size workers per queue";
    if (out.threads && out.max_threads && out.max_threads < out.threads)
        return "--max-threads " + std::to_string(out.max_threads) +
               " is below --thread-pool-size " + std::to_string(out.threads);
    if (out.vhost() && out.readahead_set)
        return "--readahead is for a mount (--mountpoint); a guest sets its own readahead";
    if (!out.vhost() && out.dax_window)
        return "--dax-window is for vhost-user mode (--socket-path/--fd)";
    if (out.dax_inode_set && !out.dax_window)
        return "--dax-inode needs --dax-window (without a window nothing is mapped)";
    if (out.qmp_socket.empty() != out.qmp_device.empty())
        return "--qmp-socket and --qmp-device go together";
    if (!out.qmp_socket.empty())
        out.reconnect = true;
    return "";
}

} // namespace holdfast::daemon
