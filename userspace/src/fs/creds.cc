// SPDX-License-Identifier: GPL-2.0
#include "fs/creds.h"

#include "util/log.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace holdfast::fs {

int read_groups(pid_t pid, gid_t *out, int max)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
    ::close(fd);
    if (n <= 0)
        return -EIO;
    buf[n] = 0;
    char *p = strstr(buf, "\nGroups:");
    if (!p)
        return 0;
    p += 8;
    int count = 0;
    while (count < max) {
        char *end;
        unsigned long g = strtoul(p, &end, 10);
        if (end == p)
            break;
        out[count++] = static_cast<gid_t>(g);
        p = end;
    }
    return count;
}

CredScope::CredScope(const fuse::Ctx &ctx, bool enabled, bool host_pids)
{
    if (!enabled || (ctx.uid == 0 && ctx.gid == 0))
        return;
    gid_t groups[64];
    int ngroups = 0;
    if (host_pids && ctx.pid && ctx.uid != 0) {
        int r = read_groups(static_cast<pid_t>(ctx.pid), groups, 64);
        // A caller that exited has no groups left to honour; fall back to none.
        ngroups = r > 0 ? r : 0;
    }
    // FUSE_CREATE_SUPP_GROUP: the one supplementary group the client vouches
    // for (the parent directory's), so a create may use it (virtio-fs guests
    // send no pid we could read groups from).
    if (ctx.has_supp_gid && ngroups < 64) {
        bool have = false;
        for (int i = 0; i < ngroups; i++)
            have = have || groups[i] == ctx.supp_gid;
        if (!have)
            groups[ngroups++] = static_cast<gid_t>(ctx.supp_gid);
    }
    // Order matters: groups and gid need CAP_SETGID, which we hold only
    // while our effective uid is still 0.
    if (syscall(SYS_setgroups, ngroups, groups) < 0 ||
        syscall(SYS_setresgid, -1, ctx.gid, -1) < 0) {
        err_ = -errno;
        syscall(SYS_setgroups, 0, nullptr);
        syscall(SYS_setresgid, -1, 0, -1);
        return;
    }
    switched_ = true;
    if (syscall(SYS_setresuid, -1, ctx.uid, -1) < 0)
        err_ = -errno;
}

CredScope::~CredScope()
{
    if (!switched_)
        return;
    // Back to euid 0 first: that restores the effective capabilities we
    // need to reset the groups (capabilities(7), "Effect of user ID changes").
    if (syscall(SYS_setresuid, -1, 0, -1) < 0 || syscall(SYS_setresgid, -1, 0, -1) < 0 ||
        syscall(SYS_setgroups, 0, nullptr) < 0) {
        // A worker stuck with a caller's identity would serve the next
        // request with wrong permissions: stopping is the only safe answer.
        LOG_ERR("cannot restore worker credentials: %s", strerror(errno));
        abort();
    }
}

} // namespace holdfast::fs
