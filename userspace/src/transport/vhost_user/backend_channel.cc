// SPDX-License-Identifier: GPL-2.0
#include "transport/vhost_user/backend_channel.h"

#include "transport/vhost_user/connection.h"
#include "util/log.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace holdfast::vhost {

namespace {

long long now_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

const char *backend_request_name(uint32_t req)
{
    switch (req) {
    case kBackendShmemMap:
        return "SHMEM_MAP";
    case kBackendShmemUnmap:
        return "SHMEM_UNMAP";
    default:
        return "backend request";
    }
}

} // namespace

std::vector<uint8_t> encode_backend_request(uint32_t request, bool need_reply, const void *p,
                                            size_t n)
{
    std::vector<uint8_t> out(sizeof(MsgHeader) + n);
    MsgHeader h{request, kVersion | (need_reply ? kNeedReply : 0), uint32_t(n)};
    std::memcpy(out.data(), &h, sizeof(h));
    if (n)
        std::memcpy(out.data() + sizeof(h), p, n);
    return out;
}

std::string check_ack(uint32_t request, const MsgHeader &hdr, std::span<const uint8_t> payload,
                      uint64_t &value)
{
    if (hdr.request != request)
        return "reply names request " + std::to_string(hdr.request) + ", expected " +
               std::to_string(request);
    if (hdr.flags != (kVersion | kReplyFlag))
        return "reply has flags " + std::to_string(hdr.flags);
    if (hdr.size != sizeof(uint64_t) || payload.size() != sizeof(uint64_t))
        return "reply payload of " + std::to_string(hdr.size) + " bytes, expected 8";
    std::memcpy(&value, payload.data(), sizeof(value));
    return "";
}

void BackendChannel::attach(Fd sock, bool reply_ack)
{
    // Never block a queue worker on a front-end that stopped reading:
    // sends fail instead, reads wait in poll() with a deadline.
    int fl = fcntl(sock.get(), F_GETFL);
    if (fl >= 0)
        fcntl(sock.get(), F_SETFL, fl | O_NONBLOCK);
    std::lock_guard g(mu_);
    sock_ = std::move(sock);
    reply_ack_ = reply_ack;
    LOG_INFO("back-end request channel up%s", reply_ack ? " (acknowledged requests)" : "");
}

void BackendChannel::detach()
{
    std::lock_guard g(mu_);
    sock_.reset();
}

bool BackendChannel::connected() const
{
    std::lock_guard g(mu_);
    return bool(sock_);
}

int BackendChannel::fail(int e, std::string &err, const std::string &why)
{
    err = why;
    if (e != -EREMOTEIO && e != -ENOTCONN && e != -EAGAIN) {
        // The stream may be out of step with us: nothing later on it
        // could be trusted to answer the request it seems to answer.
        LOG_ERR("back-end request channel: %s; closing it", why.c_str());
        sock_.reset();
    }
    return e;
}

int BackendChannel::read_exact(void *buf, size_t n, long long deadline_ns, std::string &err)
{
    size_t got = 0;
    while (got < n) {
        long long left = deadline_ns - now_ns();
        if (left <= 0)
            return fail(-ETIMEDOUT, err, "no reply from the front-end in time");
        pollfd p{sock_.get(), POLLIN, 0};
        int r = poll(&p, 1, int(left / 1000000) + 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return fail(-EIO, err, std::string("poll: ") + strerror(errno));
        }
        if (r == 0)
            continue;
        alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * kMaxFds)];
        iovec iov{static_cast<char *>(buf) + got, n - got};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = ctrl;
        mh.msg_controllen = sizeof(ctrl);
        ssize_t k = recvmsg(sock_.get(), &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return fail(-EIO, err, std::string("recvmsg: ") + strerror(errno));
        }
        // An acknowledgement carries no fds: close any that came.
        for (cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < nfd; i++) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                close(fd);
            }
        }
        if (k == 0)
            return fail(-EIO, err,
                        got ? "front-end closed the channel inside a reply"
                            : "front-end closed the channel");
        got += size_t(k);
    }
    return 0;
}

int BackendChannel::request(uint32_t req, const void *payload, size_t n, int fd, std::string &err)
{
    std::lock_guard g(mu_);
    if (!sock_)
        return fail(-ENOTCONN, err, "no back-end request channel");
    auto bytes = encode_backend_request(req, reply_ack_, payload, n);
    size_t sent = 0;
    if (!send_message(sock_.get(), bytes, fd, err, &sent)) {
        // A full socket takes nothing (the front-end is not reading): the
        // channel is still in step and nothing happened.
        if ((errno == EAGAIN || errno == EWOULDBLOCK) && sent == 0)
            return -EAGAIN;
        return fail(-EIO, err, err);
    }
    if (!reply_ack_)
        return 0;

    const long long deadline = now_ns() + timeout_ms_ * 1000000LL;
    MsgHeader h;
    int r = read_exact(&h, sizeof(h), deadline, err);
    if (r)
        return r;
    // Read what the header announces (bounded) so a wrong reply is
    // reported for what it is.
    if (h.size > kMaxPayload)
        return fail(-EPROTO, err, "reply announces " + std::to_string(h.size) + " bytes");
    std::vector<uint8_t> p(h.size);
    if (h.size && (r = read_exact(p.data(), p.size(), deadline, err)))
        return r;
    uint64_t value = 0;
    std::string bad = check_ack(req, h, p, value);
    if (!bad.empty())
        return fail(-EPROTO, err, std::string(backend_request_name(req)) + ": " + bad);
    if (value != 0)
        return fail(-EREMOTEIO, err,
                    std::string(backend_request_name(req)) + " refused by the front-end (" +
                        std::to_string(value) + ")");
    return 0;
}

int BackendChannel::map(int fd, uint64_t fd_offset, uint64_t win_offset, uint64_t len,
                        bool writable)
{
    MMapMsg m{};
    m.shmid = kDaxShmid;
    m.fd_offset = fd_offset;
    m.shm_offset = win_offset;
    m.len = len;
    m.flags = writable ? kMMapRw : 0;
    std::string err;
    int r = request(kBackendShmemMap, &m, sizeof(m), fd, err);
    if (r)
        LOG_WARN("SHMEM_MAP %#llx+%#llx: %s", (unsigned long long)win_offset,
                 (unsigned long long)len, err.c_str());
    return r;
}

int BackendChannel::unmap(uint64_t win_offset, uint64_t len)
{
    MMapMsg m{};
    m.shmid = kDaxShmid;
    m.shm_offset = win_offset;
    m.len = len;
    std::string err;
    int r = request(kBackendShmemUnmap, &m, sizeof(m), -1, err);
    if (r)
        LOG_DBG("SHMEM_UNMAP %#llx+%#llx: %s", (unsigned long long)win_offset,
                (unsigned long long)len, err.c_str());
    return r;
}

} // namespace holdfast::vhost
