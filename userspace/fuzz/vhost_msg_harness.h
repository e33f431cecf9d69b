// SPDX-License-Identifier: GPL-2.0
// fuzz_vhost_msg's harness: a hostile vhost-user front-end.  Messages built
// from the input go over a real UNIX socketpair, with real fds attached
// (SCM_RIGHTS), into the code holdfastd's vhost-user loop runs:
// read_message -> parse -> Backend::handle -> close the fds not taken ->
// send the reply.  An error from any of them drops the connection; the
// harness then starts over with a fresh Backend on a fresh socket, as a
// front-end reconnecting to a restarted holdfastd would.
//
// Between messages the input can also act as the guest (write the shared
// memory that rings live in) and as the back-end's queue workers (pop
// chains off a ring, complete them now or later), so a memory table, a
// ring or an inflight buffer set up by one message is used, replaced and
// torn down by the next ones.
//
// Checked: nothing crashes, hangs or touches memory outside what was
// mapped (ASan/UBSan, libFuzzer's timeout); every reply is well framed,
// for the request asked, sent exactly when the protocol wants one; every
// chain a worker gets lies inside the memory table it came with; no fd is
// leaked once the connection is gone.
//
// Input format:
//   byte 0   bits0-3: max_queues - 1; bit4: also offer CONFIGURE_MEM_SLOTS
//            and STATUS; bit5: no REPLY_ACK offered
//   frames, by op = byte & 3:
//     0  message: u8 request, u8 flags (header flags), u8 nfds (low nibble,
//        0-15: more than 8 is refused by the reader), nfds bytes each an
//        index into the fd pool, u16le n, n payload bytes
//     1  guest write: u16le offset into guest memory fd 0 (mod its size),
//        u8 len, len bytes
//     2  worker: queue (op >> 2) mod max_queues; u8 k: pop up to k & 7
//        chains; bit 3 of k: hold them (complete later) instead of
//        completing them now with length u16le
//     3  reconnect (fresh Backend and socket; held chains completed first)
//   Fd pool: 0, 1: 64 KiB memfds (guest memory), 2: 4 KiB memfd, 3, 4:
//   eventfds, 5: a pipe's read end, 6: the last fd the back-end sent us
//   (the inflight buffer), else a 4 KiB memfd.
// Shared by the libFuzzer target, the seed generator and the GoogleTest
// regression test.
#pragma once

#include "input.h"
#include "vhost_check.h"

#include "transport/vhost_user/backend.h"
#include "transport/vhost_user/connection.h"
#include "transport/vhost_user/protocol.h"
#include "util/log.h"

#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <string>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace holdfast::fuzz {

// Open fds of this process (leak check).
inline int count_fds()
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (dirent *e = readdir(d))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; // the DIR's own fd
}

// Input writer (seed generator, tests).
struct VhostMsgSeed {
    std::vector<uint8_t> b;
    explicit VhostMsgSeed(uint8_t config = 0) { b.push_back(config); }
    void raw(const void *p, size_t n)
    {
        auto *c = static_cast<const uint8_t *>(p);
        b.insert(b.end(), c, c + n);
    }
    template <class T> void put(T v) { raw(&v, sizeof(v)); }
    void msg(uint8_t req, std::vector<uint8_t> fds, const void *payload, size_t n,
             uint8_t flags = vhost::kVersion)
    {
        put<uint8_t>(0);
        put<uint8_t>(req);
        put<uint8_t>(flags);
        put<uint8_t>(uint8_t(fds.size()));
        raw(fds.data(), fds.size());
        put<uint16_t>(uint16_t(n));
        raw(payload, n);
    }
    template <class T>
    void msg(uint8_t req, const T &payload, std::vector<uint8_t> fds = {},
             uint8_t flags = vhost::kVersion)
    {
        msg(req, std::move(fds), &payload, sizeof(T), flags);
    }
    void msg0(uint8_t req, uint8_t flags = vhost::kVersion) { msg(req, {}, nullptr, 0, flags); }
    void write(uint16_t off, const void *p, uint8_t n)
    {
        put<uint8_t>(1);
        put<uint16_t>(off);
        put<uint8_t>(n);
        raw(p, n);
    }
    void serve(uint8_t queue, uint8_t k, uint16_t len = 0)
    {
        put<uint8_t>(uint8_t(2 | (queue << 2)));
        put<uint8_t>(k);
        if (!(k & 8))
            put<uint16_t>(len);
    }
    void reconnect() { put<uint8_t>(3); }
};

class VhostMsgHarness {
  public:
    static constexpr size_t kGuestBytes = 64 * 1024;
    static constexpr size_t kPool = 7;

    VhostMsgHarness()
    {
        log::set_level(getenv("HOLDFAST_FUZZ_LOG") ? log::Level::debug
                                                   : static_cast<log::Level>(-1));
    }

    std::string run(const uint8_t *data, size_t size)
    {
        int fds0 = count_fds();
        std::string err;
        {
            Session s(data, size);
            err = s.run();
        }
        if (err.empty() && fds0 >= 0 && count_fds() != fds0)
            err = "fd leak: " + std::to_string(fds0) + " fds open before, " +
                  std::to_string(count_fds()) + " after";
        return err;
    }

  private:
    class Session {
      public:
        Session(const uint8_t *data, size_t size) : in_(data, size) {}

        std::string run()
        {
            uint8_t cfg = in_.u8();
            cfg_.max_queues = 1 + (cfg & 15);
            if (cfg & 0x10)
                cfg_.protocol_features |= vhost::kPConfigureMemSlots | vhost::kPStatus;
            if (cfg & 0x20)
                cfg_.protocol_features &= ~vhost::kPReplyAck;
            cfg_.stop_timeout_ms = 0; // held chains would only make it wait
            if (std::string e = make_pool(); !e.empty())
                return e;
            connect();
            std::string err;
            while (!in_.empty() && err.empty()) {
                uint8_t op = in_.u8();
                switch (op & 3) {
                case 0:
                    err = message();
                    break;
                case 1:
                    guest_write();
                    break;
                case 2:
                    err = serve(op >> 2);
                    break;
                case 3:
                    err = drop();
                    break;
                }
            }
            if (err.empty())
                err = drop();
            return err;
        }

      private:
        std::string make_pool()
        {
            auto memfd = [](size_t n) {
                Fd fd(memfd_create("fuzz-guest", MFD_CLOEXEC));
                if (fd && ftruncate(fd.get(), off_t(n)) < 0)
                    fd.reset();
                return fd;
            };
            pool_[0] = memfd(kGuestBytes);
            pool_[1] = memfd(kGuestBytes);
            pool_[2] = memfd(4096);
            pool_[3] = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
            pool_[4] = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
            int p[2];
            if (pipe2(p, O_CLOEXEC) == 0) {
                pool_[5] = Fd(p[0]);
                close(p[1]);
            }
            pool_[6] = memfd(4096);
            for (auto &f : pool_)
                if (!f)
                    return std::string("cannot make the fd pool: ") + strerror(errno);
            return "";
        }

        void connect()
        {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
            front_.reset(sv[0]);
            back_.reset(sv[1]);
            be_ = std::make_unique<vhost::Backend>(cfg_);
        }

        // The connection is gone: complete what workers hold (their replies
        // are dropped by the stopped rings) and start over.
        std::string drop()
        {
            std::string err;
            if (be_) {
                for (auto &h : held_)
                    if (err.empty())
                        err = check_chain(h.chain, h.queue);
                for (auto &h : held_)
                    be_->queue(h.queue).complete(h.chain, 0);
            }
            held_.clear();
            be_.reset();
            front_.reset();
            back_.reset();
            if (!in_.empty())
                connect();
            return err;
        }

        std::string message()
        {
            vhost::MsgHeader hdr{};
            hdr.request = in_.u8();
            hdr.flags = in_.u8();
            size_t nfds = in_.u8() & 15;
            std::vector<int> send_fds;
            for (size_t i = 0; i < nfds; i++)
                send_fds.push_back(pool_[in_.u8() % kPool].get());
            const uint8_t *payload;
            size_t n = in_.bytes(in_.u16(), payload);
            hdr.size = uint32_t(n);
            std::vector<uint8_t> bytes(sizeof(hdr) + n);
            std::memcpy(bytes.data(), &hdr, sizeof(hdr));
            if (n)
                std::memcpy(bytes.data() + sizeof(hdr), payload, n);
            if (!send_all(bytes, send_fds))
                return drop();

            // What holdfastd's vhost-user loop does with it.
            vhost::MsgHeader got;
            std::vector<uint8_t> p;
            std::vector<int> fds;
            std::string err;
            int r = vhost::read_message(back_.get(), got, p, fds, err);
            if (r <= 0) {
                note("read_message", err);
                if (!fds.empty())
                    return "read_message failed and kept fds";
                return drop();
            }
            if (std::memcmp(&got, &hdr, sizeof(hdr)) != 0 || p.size() != n)
                return "read_message returned another message than was sent";
            vhost::Message m;
            err = vhost::parse(got, p, fds, be_->max_queues(), m);
            vhost::Response resp;
            if (err.empty())
                err = be_->handle(m, resp);
            for (int fd : m.fds)
                if (fd >= 0)
                    close(fd);
            if (!err.empty()) {
                note(vhost::request_name(hdr.request), err);
                return drop();
            }
            if (std::string e = check_reply(m, resp); !e.empty())
                return e;
            if (!resp.bytes.empty()) {
                if (!vhost::send_message(back_.get(), resp.bytes, resp.fd, err))
                    return "send_message: " + err;
                return receive_reply(resp.bytes.size());
            }
            return "";
        }

        // Why the connection was dropped (HOLDFAST_FUZZ_LOG=1).
        static void note(const char *what, const std::string &err)
        {
            static const bool on = getenv("HOLDFAST_FUZZ_LOG");
            if (on)
                fprintf(stderr, "fuzz_vhost_msg: %s: %s: connection dropped\n", what, err.c_str());
        }

        std::string check_reply(const vhost::Message &m, const vhost::Response &resp)
        {
            bool own = false;
            switch (m.request) {
            case vhost::kGetFeatures:
            case vhost::kGetProtocolFeatures:
            case vhost::kGetVringBase:
            case vhost::kGetQueueNum:
            case vhost::kGetInflightFd:
            case vhost::kGetMaxMemSlots:
            case vhost::kGetStatus:
                own = true;
                break;
            }
            bool ack = (be_->acked_protocol_features() & vhost::kPReplyAck) && m.need_reply();
            if (resp.bytes.empty()) {
                if (own || ack)
                    return std::string(vhost::request_name(m.request)) + " got no reply";
                return "";
            }
            if (!own && !ack)
                return std::string(vhost::request_name(m.request)) +
                       " got a reply it did not ask for";
            if (resp.bytes.size() < sizeof(vhost::MsgHeader))
                return "reply shorter than a header";
            vhost::MsgHeader h;
            std::memcpy(&h, resp.bytes.data(), sizeof(h));
            if (h.request != m.request || h.flags != (vhost::kVersion | vhost::kReplyFlag) ||
                h.size != resp.bytes.size() - sizeof(h) || h.size > vhost::kMaxPayload)
                return std::string("malformed reply to ") + vhost::request_name(m.request);
            if (resp.fd >= 0 && m.request != vhost::kGetInflightFd)
                return std::string(vhost::request_name(m.request)) + " replied with an fd";
            return "";
        }

        bool send_all(const std::vector<uint8_t> &bytes, const std::vector<int> &fds)
        {
            alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * 16)];
            iovec iov{const_cast<uint8_t *>(bytes.data()), bytes.size()};
            msghdr mh{};
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            if (!fds.empty()) {
                std::memset(ctrl, 0, sizeof(ctrl));
                mh.msg_control = ctrl;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
                cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
                std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
            }
            ssize_t k = sendmsg(front_.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
            return k == ssize_t(bytes.size());
        }

        // The front-end's side: the reply, and the fd it may carry, which
        // goes into the pool for a later SET_INFLIGHT_FD.
        std::string receive_reply(size_t len)
        {
            std::vector<uint8_t> buf(len + 1);
            alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * 4)];
            iovec iov{buf.data(), buf.size()};
            msghdr mh{};
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            mh.msg_control = ctrl;
            mh.msg_controllen = sizeof(ctrl);
            ssize_t k = recvmsg(front_.get(), &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
            for (cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                    continue;
                size_t nf = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < nf; i++) {
                    int fd;
                    std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                    pool_[6].reset(fd);
                }
            }
            if (k != ssize_t(len))
                return "reply of " + std::to_string(len) + " bytes arrived as " + std::to_string(k);
            return "";
        }

        void guest_write()
        {
            uint16_t off = in_.u16();
            const uint8_t *p;
            size_t n = in_.bytes(in_.u8(), p);
            off %= kGuestBytes;
            if (n > kGuestBytes - off)
                n = kGuestBytes - off;
            (void)!pwrite(pool_[0].get(), p, n, off);
        }

        // Whatever a worker gets must lie inside the table it came with.
        std::string check_chain(const vhost::Chain &c, unsigned q)
        {
            if (!c.mem)
                return "chain without its memory table";
            return fuzz::check_chain(c, *c.mem, be_->queue(q).limits);
        }

        std::string serve(unsigned q)
        {
            q %= be_->max_queues();
            uint8_t k = in_.u8();
            uint16_t len = (k & 8) ? 0 : in_.u16();
            vhost::Virtqueue &vq = be_->queue(q);
            for (unsigned i = 0; i < (k & 7u); i++) {
                vhost::Chain c;
                if (vq.try_pop(c) != 1)
                    break;
                if (std::string e = check_chain(c, q); !e.empty())
                    return e;
                // The reply goes into the writable part, as a worker's would.
                size_t left = len;
                for (const iovec &io : c.out) {
                    size_t w = std::min(left, io.iov_len);
                    std::memset(io.iov_base, 0xa5, w);
                    left -= w;
                }
                if ((k & 8) && held_.size() < 16)
                    held_.push_back({q, std::move(c)});
                else
                    vq.complete(c, len);
            }
            if (!(k & 8) && !held_.empty()) {
                // Late completions: after a stop, a new memory table or a
                // new inflight buffer.
                auto h = std::move(held_.front());
                held_.erase(held_.begin());
                if (std::string e = check_chain(h.chain, h.queue); !e.empty())
                    return e;
                be_->queue(h.queue).complete(h.chain, len);
            }
            return "";
        }

        struct Held {
            unsigned queue;
            vhost::Chain chain;
        };

        Input in_;
        vhost::BackendConfig cfg_;
        Fd pool_[kPool];
        Fd front_, back_;
        std::unique_ptr<vhost::Backend> be_;
        std::vector<Held> held_;
    };
};

} // namespace holdfast::fuzz
