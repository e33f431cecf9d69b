// SPDX-License-Identifier: GPL-2.0
#include "daemon/replug_agent.h"

#include "util/log.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <linux/close_range.h>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace holdfast::daemon {

namespace {

// The agent.  Requests: 'R' + the properties of a re-plug cut short (JSON,
// or nothing).  Replies: 'P' + the device's properties once read, then the
// status digit + message.
[[noreturn]] void agent_main(int sock, const std::string &qmp, const std::string &device,
                             const std::string &path)
{
    for (;;) {
        char req[4096];
        ssize_t n = recv(sock, req, sizeof(req), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(0); // the server closed its end: it is stopping
        vmm::ReplugOptions ro;
        ro.device = device;
        ro.socket_path = path;
        ro.log = [](const std::string &s) { LOG_INFO("qmp: %s", s.c_str()); };
        ro.on_props = [sock](const vmm::DeviceProps &p) {
            std::string m = "P" + vmm::props_to_json(p);
            if (m.size() < 4096)
                (void)!send(sock, m.data(), m.size(), MSG_NOSIGNAL);
        };
        if (n > 1 && !vmm::props_from_json(std::string(req + 1, size_t(n - 1)), ro.known))
            ro.known = {};
        LOG_INFO("qmp: re-plugging device %s through %s", device.c_str(), qmp.c_str());
        vmm::ReplugResult r = vmm::replug_at(qmp, ro);
        std::string msg(1, char('0' + int(r.status)));
        msg += r.message.substr(0, 4000);
        if (send(sock, msg.data(), msg.size(), MSG_NOSIGNAL) < 0)
            _exit(0);
    }
}

} // namespace

ReplugAgent ReplugAgent::start(const std::string &qmp_socket, const std::string &device,
                               const std::string &socket_path, Fd pending)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        throw std::runtime_error(std::string("socketpair: ") + strerror(errno));
    const pid_t parent = getpid();
    fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        throw std::runtime_error(std::string("fork: ") + strerror(e));
    }
    if (pid == 0) {
        // Dies with the server (the fd store restarts the server, whose new
        // agent takes over), holds none of its fds (not the region, not the
        // listening socket: those must go when the server goes).
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(0);
        int s = sv[1];
        if (s != 3) {
            dup3(s, 3, O_CLOEXEC);
            s = 3;
        }
        close_range(4, ~0U, 0);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, nullptr);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_IGN); // a ^C reaches the server, which closes our socket
        agent_main(s, qmp_socket, device, socket_path);
    }
    close(sv[1]);
    ReplugAgent a;
    a.sock_.reset(sv[0]);
    a.pending_ = std::move(pending);
    a.pid_ = pid;
    LOG_DBG("qmp agent: pid %d", int(pid));
    return a;
}

ReplugAgent::~ReplugAgent()
{
    // EOF on its socket ends the agent.  No waitpid() or kill() here: the
    // seccomp filter of a sandboxed server allows neither, and the agent
    // is reaped by whoever inherits it when we exit, moments later.
    sock_.reset();
}

void ReplugAgent::request()
{
    std::string req = "R";
    if (pending_) {
        char buf[4000];
        ssize_t n = pread(pending_.get(), buf, sizeof(buf), 0);
        if (n > 0) {
            req.append(buf, size_t(n));
            LOG_INFO("qmp: the last re-plug was cut short; its device: %.*s", int(n), buf);
        }
    }
    if (send(sock_.get(), req.data(), req.size(), MSG_NOSIGNAL) < 0)
        LOG_ERR("qmp agent: %s", strerror(errno));
}

std::optional<vmm::ReplugResult> ReplugAgent::result()
{
    char buf[4096];
    ssize_t n = recv(sock_.get(), buf, sizeof(buf), 0);
    vmm::ReplugResult r;
    if (n <= 0) {
        // The agent died: QMP cannot be reached any more.
        r.status = vmm::ReplugStatus::failed;
        r.message = "the QMP agent exited";
        LOG_ERR("qmp: %s", r.message.c_str());
        sock_.reset();
        return r;
    }
    if (buf[0] == 'P') {
        // Kept until the re-plug succeeds: a successor finishes it.
        if (pending_ && (ftruncate(pending_.get(), 0) < 0 ||
                         pwrite(pending_.get(), buf + 1, size_t(n - 1), 0) < 0))
            LOG_WARN("qmp: cannot keep the device's properties: %s", strerror(errno));
        return std::nullopt;
    }
    int st = buf[0] - '0';
    r.status = st >= 0 && st <= int(vmm::ReplugStatus::failed) ? vmm::ReplugStatus(st)
                                                               : vmm::ReplugStatus::failed;
    r.message.assign(buf + 1, size_t(n - 1));
    if (r.status == vmm::ReplugStatus::ok) {
        LOG_INFO("qmp: %s", r.message.c_str());
        if (pending_ && ftruncate(pending_.get(), 0) < 0)
            LOG_WARN("qmp: %s", strerror(errno));
    } else if (r.status == vmm::ReplugStatus::failed) {
        LOG_ERR("qmp: re-plug failed: %s", r.message.c_str());
    } else {
        LOG_WARN("qmp: %s: %s", vmm::replug_status_name(r.status), r.message.c_str());
    }
    return r;
}

} // namespace holdfast::daemon
