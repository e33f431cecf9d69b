// SPDX-License-Identifier: GPL-2.0
// Per-thread credential switching.  glibc's setresuid() and friends change
// every thread of the process (NPTL broadcasts them), so we call the raw
// syscalls: they affect only the calling worker thread.
#pragma once

#include "fuse/filesystem.h"

#include <sys/types.h>

namespace holdfast::fs {

class CredScope {
  public:
    // Becomes ctx.uid/ctx.gid (+ the caller's supplementary groups when the
    // pid names a host process, + ctx.supp_gid when the request carried one)
    // unless `enabled` is false or the caller is root.  ok() is false if the switch failed; the op must then fail too.
    CredScope(const fuse::Ctx &ctx, bool enabled, bool host_pids);
    ~CredScope();
    CredScope(const CredScope &) = delete;
    CredScope &operator=(const CredScope &) = delete;

    bool ok() const { return err_ == 0; }
    int error() const { return err_; }

  private:
    bool switched_ = false;
    int err_ = 0;
};

// Reads the supplementary groups of a host process (Groups: in /proc/PID/status).
int read_groups(pid_t pid, gid_t *out, int max);

} // namespace holdfast::fs
