// SPDX-License-Identifier: GPL-2.0
#include "transport/vhost_user/connection.h"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <unistd.h>

namespace holdfast::vhost {

namespace {

// recvmsg that collects any fds into `fds`; returns bytes, 0 on EOF, -1.
ssize_t recv_some(int sock, void *buf, size_t len, std::vector<int> &fds, std::string &err)
{
    alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * kMaxFds)];
    iovec iov{buf, len};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctrl;
    mh.msg_controllen = sizeof(ctrl);
    ssize_t n;
    do {
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        err = std::string("recvmsg: ") + strerror(errno);
        return -1;
    }
    for (cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            fds.push_back(fd);
        }
    }
    if (mh.msg_flags & MSG_CTRUNC) {
        err = "message came with more fds than the protocol allows";
        return -1;
    }
    return n;
}

void close_all(std::vector<int> &fds)
{
    for (int fd : fds)
        if (fd >= 0)
            ::close(fd);
    fds.clear();
}

} // namespace

int read_message(int sock, MsgHeader &hdr, std::vector<uint8_t> &payload, std::vector<int> &fds,
                 std::string &err)
{
    fds.clear();
    payload.clear();
    uint8_t *h = reinterpret_cast<uint8_t *>(&hdr);
    size_t got = 0;
    while (got < sizeof(hdr)) {
        ssize_t n = recv_some(sock, h + got, sizeof(hdr) - got, fds, err);
        if (n < 0) {
            close_all(fds);
            return -1;
        }
        if (n == 0) {
            close_all(fds);
            if (got == 0)
                return 0;
            err = "connection closed inside a message header";
            return -1;
        }
        got += size_t(n);
    }
    if (hdr.size > kMaxPayload) {
        close_all(fds);
        err = "message payload of " + std::to_string(hdr.size) + " bytes is too large";
        return -1;
    }
    payload.resize(hdr.size);
    got = 0;
    while (got < hdr.size) {
        ssize_t n = recv_some(sock, payload.data() + got, hdr.size - got, fds, err);
        if (n <= 0) {
            close_all(fds);
            if (n == 0)
                err = "connection closed inside a message payload";
            return -1;
        }
        got += size_t(n);
    }
    if (fds.size() > kMaxFds) {
        close_all(fds);
        err = "message came with more fds than the protocol allows";
        return -1;
    }
    return 1;
}

bool send_message(int sock, const std::vector<uint8_t> &bytes, int fd, std::string &err,
                  size_t *sent_out)
{
    alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))];
    iovec iov{const_cast<uint8_t *>(bytes.data()), bytes.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (fd >= 0) {
        std::memset(ctrl, 0, sizeof(ctrl));
        mh.msg_control = ctrl;
        mh.msg_controllen = sizeof(ctrl);
        cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    size_t sent = 0;
    while (sent < bytes.size()) {
        ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            err = std::string("sendmsg: ") + strerror(e);
            if (sent_out)
                *sent_out = sent;
            errno = e;
            return false;
        }
        sent += size_t(n);
        // Whatever is left goes without the fd (it went with the first byte).
        iov.iov_base = const_cast<uint8_t *>(bytes.data()) + sent;
        iov.iov_len = bytes.size() - sent;
        mh.msg_control = nullptr;
        mh.msg_controllen = 0;
    }
    return true;
}

} // namespace holdfast::vhost
