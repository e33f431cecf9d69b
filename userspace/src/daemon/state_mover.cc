// SPDX-License-Identifier: GPL-2.0
#include "daemon/state_mover.h"

#include "daemon/init_record.h"
#include "state/migration.h"
#include "transport/vhost_user/protocol.h"
#include "util/fd.h"
#include "util/log.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace holdfast::daemon {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
        .count();
}

std::string write_all(int fd, const std::vector<uint8_t> &b)
{
    size_t done = 0;
    while (done < b.size()) {
        ssize_t n = write(fd, b.data() + done, b.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return std::string("writing the state: ") + (n < 0 ? strerror(errno) : "no progress");
        done += size_t(n);
    }
    return "";
}

std::string read_all(int fd, std::vector<uint8_t> &b)
{
    b.clear();
    for (;;) {
        if (b.size() > state::kMaxMigrationStream)
            return "the state stream is larger than any real one";
        size_t old = b.size();
        b.resize(old + (1 << 16));
        ssize_t n = read(fd, b.data() + old, 1 << 16);
        if (n < 0 && errno == EINTR) {
            b.resize(old);
            continue;
        }
        if (n < 0) {
            b.resize(old);
            return std::string("reading the state: ") + strerror(errno);
        }
        b.resize(old + size_t(n));
        if (n == 0)
            return "";
    }
}

// Takes the fds a source on this host lent (MigrationHandover) out of its
// process.  Whatever fails leaves those files to be opened by handle.
std::vector<fdstore::NamedFd> borrow(const state::MigrationHandover &h)
{
    std::vector<fdstore::NamedFd> out;
    Fd pidfd(int(syscall(SYS_pidfd_open, pid_t(h.pid), 0)));
    if (!pidfd) {
        LOG_WARN("device state: the source (pid %u) lent its fds, but pidfd_open: %s; opening "
                 "every file by handle",
                 h.pid, strerror(errno));
        return out;
    }
    out.reserve(h.fds.size());
    size_t failed = 0;
    int first_err = 0;
    for (const state::LentFd &f : h.fds) {
        int fd = int(syscall(SYS_pidfd_getfd, pidfd.get(), f.fd, 0));
        if (fd < 0) {
            if (!failed++)
                first_err = errno;
            if (errno == EPERM || errno == ESRCH)
                break; // the same for every other one
            continue;
        }
        char name[64];
        if (f.kind == 'l')
            snprintf(name, sizeof(name), "l%llu.%llx", (unsigned long long)f.id,
                     (unsigned long long)f.owner);
        else
            snprintf(name, sizeof(name), "%c%llu", f.kind, (unsigned long long)f.id);
        out.push_back({name, Fd(fd)});
    }
    if (failed)
        LOG_WARN("device state: could not take %zu of the %zu fds the source (pid %u) lent "
                 "(pidfd_getfd: %s)",
                 h.fds.size() - out.size(), h.fds.size(), h.pid, strerror(first_err));
    return out;
}

} // namespace

StateMover::~StateMover()
{
    join();
}

void StateMover::join()
{
    if (copier_.joinable())
        copier_.join();
}

std::string StateMover::transfer(uint32_t direction, int raw_fd)
{
    Fd fd(raw_fd);
    std::lock_guard g(mu_);
    join();
    direction_ = direction;
    copy_error_.clear();
    pending_ = true;
    if (direction == vhost::kStateSave) {
        const auto t0 = std::chrono::steady_clock::now();
        state::MigrationState s = state::snapshot(region_);
        size_t pathless = 0;
        if (find_paths_)
            s.paths = pfs_.inode_paths(pathless);
        // An inode without a file handle (or, with find-paths, a path)
        // lives only in this process (an fd we hold): no destination could
        // open it.  Refusing now fails the migration while the guest still
        // runs here.
        size_t homeless = 0;
        size_t pi = 0;
        for (const auto &n : s.inodes) {
            while (pi < s.paths.size() && s.paths[pi].nodeid < n.nodeid)
                pi++;
            const bool has_path = pi < s.paths.size() && s.paths[pi].nodeid == n.nodeid;
            if (n.nodeid != state::kRootNodeId && n.handle.empty() && !has_path)
                homeless++;
        }
        if (pathless)
            LOG_WARN("device state: %zu inodes have no path (unlinked, or outside the shared "
                     "directory): a destination on another file system cannot find them",
                     pathless);
        if (homeless && strict_) {
            pending_ = false;
            return std::to_string(homeless) +
                   " inodes have no file handle (the shared directory's file system does not "
                   "export them)" +
                   (find_paths_ ? std::string(" and no path") : std::string()) +
                   ", so no other server can take them";
        }
        lent_.clear();
        if (fast_path_) {
            s.handover = state::MigrationHandover{uint32_t(getpid()), pfs_.lend_fds(lent_)};
            // pidfd_getfd(2) needs ptrace access: a process that switched
            // credentials is no longer dumpable, which would deny it.
            if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
                LOG_WARN("device state: PR_SET_DUMPABLE: %s; a destination on this host "
                         "opens every file again",
                         strerror(errno));
        }
        bytes_ = state::encode(s);
        LOG_INFO("device state: saving %zu inodes, %zu handles%s (%zu bytes, snapshot %.2f ms)",
                 s.inodes.size(), s.handles.size(),
                 s.handover ? (", lending " + std::to_string(s.handover->fds.size()) + " fds")
                                  .c_str()
                            : "",
                 bytes_.size(), ms_since(t0));
        copier_ = std::thread([this, fd = std::move(fd)]() mutable {
            copy_error_ = write_all(fd.get(), bytes_);
            // Closing is the end-of-state marker.
            fd.reset();
        });
        return "";
    }
    copier_ = std::thread([this, fd = std::move(fd)]() mutable {
        copy_error_ = read_all(fd.get(), bytes_);
    });
    return "";
}

std::string StateMover::check()
{
    std::lock_guard g(mu_);
    if (!pending_)
        return "no state transfer was started";
    join();
    pending_ = false;
    if (!copy_error_.empty())
        return copy_error_;
    if (direction_ == vhost::kStateSave)
        return "";

    const auto t0 = std::chrono::steady_clock::now();
    state::MigrationState s;
    state::RegionHeader &h = region_.header();
    std::string e = state::decode(bytes_, {h.inode_capacity, h.handle_capacity}, s);
    if (!e.empty())
        return "refusing the migrated state: " + e;
    const state::InodeRecord &root = region_.inodes()[state::kRootNodeId];
    const bool same_root = root.dev == s.root_dev && root.ino == s.root_ino;
    e = state::install(s, region_);
    if (!e.empty())
        return "refusing the migrated state: " + e;
    const bool same_host = s.boot_id == state::host_boot_id();
    std::vector<fdstore::NamedFd> lent;
    // The source's fds are of its directory: of use only if that is ours.
    if (fast_path_ && same_host && same_root && s.handover)
        lent = borrow(*s.handover);
    const size_t borrowed = lent.size();
    const double borrow_ms = ms_since(t0);
    size_t unresolved = 0;
    e = pfs_.take_migrated(strict_, unresolved, std::move(lent), s.paths, !same_root);
    if (!e.empty())
        return "refusing the migrated state: " + e;
    if (h.init.state.load(std::memory_order_acquire) == state::kLive)
        engine_.adopt(load_init(h));
    LOG_INFO("device state: took over %zu inodes (%zu unresolved), %zu handles from %s "
             "(%zu bytes, %.2f ms; %zu fds borrowed from the source in %.2f ms, %zu used; %zu "
             "found by path)",
             s.inodes.size(), unresolved, s.handles.size(), same_host ? "this host" : "another host",
             bytes_.size(), ms_since(t0), borrowed, borrow_ms, pfs_.lent_used(),
             pfs_.found_by_path());
    bytes_.clear();
    bytes_.shrink_to_fit();
    return "";
}

} // namespace holdfast::daemon
