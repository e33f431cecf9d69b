// SPDX-License-Identifier: GPL-2.0
// POSIX record locks, OFD-backed, and flock.
//
// POSIX locks belong to a (process, inode) pair and die with any close() by
// that process; the kernel names the process by lock_owner.  We give each
// owner its own open file description of the inode and take OFD locks on
// it, so owners conflict with each other exactly as processes do, and FLUSH
// (sent at every close) drops the owner's locks by closing that fd.
// flock locks belong to the open file, which is our handle's fd.
#include "fs/passthrough.h"

#include "util/log.h"

#include <cerrno>
#include <climits>
#include <csignal>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <unistd.h>

namespace holdfast::fs {

namespace {
bool to_flock(const fuse_file_lock &l, struct flock &fl)
{
    if (l.start > uint64_t(LLONG_MAX) || l.end < l.start)
        return false;
    fl = {};
    fl.l_type = short(l.type);
    fl.l_whence = SEEK_SET;
    fl.l_start = off_t(l.start);
    // OFFSET_MAX as end means "to EOF and beyond", which is length 0.
    fl.l_len = l.end >= uint64_t(LLONG_MAX) ? 0 : off_t(l.end - l.start + 1);
    return true;
}

// Wakes a worker blocked in F_OFD_SETLKW; the handler does nothing, the
// point is the EINTR.  Installed without SA_RESTART by the daemon.
constexpr int kWakeSignal = SIGUSR2;
} // namespace

int Passthrough::getlk(const fuse::Ctx &ctx, const fuse_lk_in &in, fuse_lk_out &out)
{
    auto h = handle_for(in.fh, ctx.nodeid);
    if (!h || h->dir)
        return bad_handle(in.fh);
    struct flock fl;
    if (!to_flock(in.lk, fl))
        return -EINVAL;
    std::lock_guard g(h->inode->lock_mu);
    auto &owners = h->inode->lock_fds;
    auto me = owners.find(in.owner);
    // Ask with the owner's own description so its locks don't conflict with
    // themselves; the handle's fd holds no record locks of anyone.
    int fd = me != owners.end() && me->second.fd ? me->second.fd.get() : h->fd.get();
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return -errno;
    out.lk.type = uint32_t(fl.l_type);
    if (fl.l_type == F_UNLCK)
        return 0;
    out.lk.start = uint64_t(fl.l_start);
    out.lk.end = fl.l_len == 0 ? uint64_t(LLONG_MAX) : uint64_t(fl.l_start + fl.l_len - 1);
    // OFD locks carry no pid.  Find the holder: probing from the holder's
    // own description, its lock no longer conflicts.
    struct flock probe;
    for (auto &[owner, lo] : owners) {
        if (owner == in.owner || !lo.fd)
            continue;
        to_flock(in.lk, probe);
        if (fcntl(lo.fd.get(), F_OFD_GETLK, &probe) == 0 &&
            (probe.l_type == F_UNLCK || probe.l_start != fl.l_start || probe.l_len != fl.l_len)) {
            out.lk.pid = lo.pid;
            break;
        }
    }
    return 0;
}

int Passthrough::setlk(const fuse::Ctx &ctx, const fuse_lk_in &in, bool wait)
{
    auto h = handle_for(in.fh, ctx.nodeid);
    if (!h || h->dir)
        return bad_handle(in.fh);

    if (in.lk_flags & FUSE_LK_FLOCK) {
        int op;
        switch (in.lk.type) {
        case F_RDLCK:
            op = LOCK_SH;
            break;
        case F_WRLCK:
            op = LOCK_EX;
            break;
        case F_UNLCK:
            op = LOCK_UN;
            break;
        default:
            return -EINVAL;
        }
        if (!wait)
            op |= LOCK_NB;
        Waiter w{pthread_self()};
        if (wait) {
            std::lock_guard g(waiters_mu_);
            waiters_[ctx.unique] = &w;
        }
        int r;
        while ((r = flock(h->fd.get(), op)) < 0 && errno == EINTR &&
               !w.interrupted.load(std::memory_order_acquire))
            ;
        int err = r < 0 ? -errno : 0;
        // A flock lives on the open file: keep that file in the fd store so
        // the lock outlives a crash of this process.
        if (!err && op != LOCK_UN && op != (LOCK_UN | LOCK_NB) && rec_.store) {
            auto &hr = handles_.record(h->fh);
            if (!(hr.flags.load(std::memory_order_acquire) & state::kHandleFdStored) &&
                rec_.store->store("h" + std::to_string(h->fh), h->fd.get()) == 0)
                hr.flags.fetch_or(state::kHandleFdStored, std::memory_order_release);
        }
        if (wait) {
            std::lock_guard g(waiters_mu_);
            waiters_.erase(ctx.unique);
        }
        return err == -EWOULDBLOCK ? -EAGAIN : err;
    }

    struct flock fl;
    if (!to_flock(in.lk, fl))
        return -EINVAL;
    int fd;
    {
        std::lock_guard g(h->inode->lock_mu);
        auto &lo = h->inode->lock_fds[in.owner];
        auto &slot = lo.fd;
        if (fl.l_type != F_UNLCK)
            lo.pid = in.lk.pid;
        lo.fh = h->fh;
        if (!slot) {
            if (fl.l_type == F_UNLCK) {
                h->inode->lock_fds.erase(in.owner);
                return 0; // nothing held, nothing to drop
            }
            int nfd = reopen_fd(h->fd.get(), h->flags & (O_ACCMODE | O_CLOEXEC));
            if (nfd < 0) {
                h->inode->lock_fds.erase(in.owner);
                return nfd;
            }
            slot.reset(nfd);
            // The owner's locks live on this fd: the store keeps it (and so
            // the locks) through a crash of this process.
            if (rec_.store)
                rec_.store->store(lock_name(h->inode->nodeid, in.owner), nfd);
        }
        fd = slot.get();
        if (!wait) {
            if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
                return errno == EACCES ? -EAGAIN : -errno;
            return 0;
        }
    }
    // Blocking: wait without holding lock_mu so other owners can go on.  The
    // owner fd stays valid: only this owner's FLUSH closes it, and the kernel
    // does not flush an owner while that owner is blocked here.
    Waiter w{pthread_self()};
    {
        std::lock_guard g(waiters_mu_);
        waiters_[ctx.unique] = &w;
    }
    int err = 0;
    while (fcntl(fd, F_OFD_SETLKW, &fl) < 0) {
        if (errno != EINTR) {
            err = -errno;
            break;
        }
        if (w.interrupted.load(std::memory_order_acquire)) {
            err = -EINTR;
            break;
        }
    }
    std::lock_guard g(waiters_mu_);
    waiters_.erase(ctx.unique);
    return err;
}

void Passthrough::interrupt(uint64_t unique)
{
    // The INTERRUPT may overtake its request on another worker, so give the
    // request a moment to register; once found, the waiter may be between
    // checking its flag and entering fcntl(), where one signal would be lost:
    // keep signalling until it has left.
    bool seen = false;
    for (int tries = 0; tries < 400; tries++) {
        bool found;
        {
            std::lock_guard g(waiters_mu_);
            auto it = waiters_.find(unique);
            found = it != waiters_.end();
            if (found) {
                it->second->interrupted.store(true, std::memory_order_release);
                pthread_kill(it->second->thread, kWakeSignal);
            }
        }
        if (!found && (seen || tries >= 20))
            return; // answered, or not a request that blocks here
        seen |= found;
        usleep(found ? 5000 : 1000);
    }
    LOG_WARN("interrupt of request %#llx: waiter did not wake", (unsigned long long)unique);
}

} // namespace holdfast::fs
