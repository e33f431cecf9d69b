// SPDX-License-Identifier: GPL-2.0
#include "fdstore/client.h"

#include "fdstore/protocol.h"

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace holdfast::fdstore {

std::vector<NamedFd> take_listen_fds()
{
    std::vector<NamedFd> out;
    const char *pid = getenv("LISTEN_PID");
    const char *n = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    if (!pid || !n || atol(pid) != getpid()) {
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDNAMES");
        return out;
    }
    long count = atol(n);
    std::string all = names ? names : "";
    size_t pos = 0;
    for (long i = 0; i < count; i++) {
        int fd = kListenFdsStart + int(i);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        size_t colon = all.find(':', pos);
        std::string name = all.substr(pos, colon == std::string::npos ? std::string::npos
                                                                       : colon - pos);
        pos = colon == std::string::npos ? all.size() : colon + 1;
        out.push_back({name, Fd(fd)});
    }
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    return out;
}

Notifier::Notifier()
{
    if (const char *cap = getenv("FDSTORE")) {
        char *end;
        unsigned long long v = strtoull(cap, &end, 10);
        if (*cap && !*end && v <= 1000000)
            capacity_ = size_t(v);
    }
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return;
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len >= sizeof(a.sun_path))
        return;
    memcpy(a.sun_path, path, len);
    if (path[0] == '@')
        a.sun_path[0] = 0; // abstract namespace
    Fd s(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s)
        return;
    if (connect(s.get(), reinterpret_cast<sockaddr *>(&a),
                socklen_t(offsetof(sockaddr_un, sun_path) + len)) < 0)
        return;
    sock_ = std::move(s);
}

int Notifier::send_with_fds(const std::string &text, const int *fds, size_t n)
{
    if (!sock_)
        return -ENOTCONN;
    if (n > kMaxFdsPerMessage)
        return -EINVAL;
    iovec iov{const_cast<char *>(text.data()), text.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
    if (n) {
        msg.msg_control = cbuf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    }
    std::lock_guard g(mu_);
    ssize_t r;
    while ((r = sendmsg(sock_.get(), &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    return r < 0 ? -errno : 0;
}

int Notifier::store(const std::string &name, int fd) { return store(name, std::vector<int>{fd}); }

int Notifier::store(const std::string &name, const std::vector<int> &fds)
{
    for (size_t i = 0; i < fds.size(); i += kMaxFdsPerMessage) {
        size_t n = fds.size() - i < kMaxFdsPerMessage ? fds.size() - i : kMaxFdsPerMessage;
        int r = send_with_fds("FDSTORE=1\nFDNAME=" + name + "\n", fds.data() + i, n);
        if (r)
            return r;
    }
    return 0;
}

int Notifier::remove(const std::string &name)
{
    return send_with_fds("FDSTOREREMOVE=1\nFDNAME=" + name + "\n", nullptr, 0);
}

int Notifier::send(const std::string &text) { return send_with_fds(text, nullptr, 0); }

} // namespace holdfast::fdstore
