// SPDX-License-Identifier: GPL-2.0
// The process that talks QMP for a sandboxed vhost-user server.  The
// sandbox leaves the server no way to open a socket (no socket/connect in
// its seccomp filter, no host paths in its mount namespace), so a child
// forked before the sandbox does the re-plug on request.  It holds only
// its end of a socketpair, can do exactly one thing (re-plug the one
// device it was given), and dies with the server (PR_SET_PDEATHSIG).
#pragma once

#include "util/fd.h"
#include "vmm/qmp.h"

#include <optional>
#include <string>
#include <sys/types.h>

namespace holdfast::daemon {

class ReplugAgent {
  public:
    // Forks the agent.  Call while single-threaded.  Throws on failure.
    // `pending` (a memfd the fd store keeps) holds the properties of the
    // device while a re-plug is under way, so that a server restarted
    // between device_del and device_add can finish it.
    static ReplugAgent start(const std::string &qmp_socket, const std::string &device,
                             const std::string &socket_path, Fd pending);
    ReplugAgent(ReplugAgent &&) = default;
    ReplugAgent &operator=(ReplugAgent &&) = delete;
    ~ReplugAgent();

    // Asks for a re-plug; the result becomes readable on fd().
    void request();
    int fd() const { return sock_.get(); }
    // Reads what the agent sent (fd() is readable): the result of the last
    // request (logged here), or nothing when it only reported the device's
    // properties (kept in `pending`).
    std::optional<vmm::ReplugResult> result();

  private:
    ReplugAgent() = default;
    Fd sock_;
    Fd pending_;
    pid_t pid_ = -1;
};

} // namespace holdfast::daemon
