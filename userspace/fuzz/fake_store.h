// SPDX-License-Identifier: GPL-2.0
// An fd store for the fuzz harness: the daemon side is the real
// fdstore::Notifier, connected (through $NOTIFY_SOCKET, abstract namespace)
// to a socket a thread of ours reads, as holdfast-fdstore does.  FDSTORE=1
// keeps the fds under FDNAME, FDSTOREREMOVE=1 drops them; at a simulated
// restart the server gets copies back, as with LISTEN_FDS.
#pragma once

#include "fdstore/client.h"
#include "util/fd.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace holdfast::fuzz {

class FakeStore {
  public:
    FakeStore()
    {
        static std::atomic<int> n{0};
        std::string name = "holdfast-fuzz-store-" + std::to_string(getpid()) + "-" +
                           std::to_string(n.fetch_add(1));
        sock_.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        memcpy(a.sun_path + 1, name.data(), name.size()); // abstract
        if (!sock_ || bind(sock_.get(), reinterpret_cast<sockaddr *>(&a),
                           socklen_t(offsetof(sockaddr_un, sun_path) + 1 + name.size())) < 0) {
            perror("holdfast-fuzz: fd store socket");
            abort();
        }
        std::string env = "@" + name;
        setenv("NOTIFY_SOCKET", env.c_str(), 1);
        notifier_ = std::make_unique<fdstore::Notifier>();
        unsetenv("NOTIFY_SOCKET");
        if (!notifier_->available()) {
            fprintf(stderr, "holdfast-fuzz: cannot connect to the fake fd store\n");
            abort();
        }
        std::thread([this] { loop(); }).detach();
    }

    fdstore::Notifier *notifier() { return notifier_.get(); }

    // Copies of everything stored, named, as a restarted server receives them.
    std::vector<fdstore::NamedFd> copies()
    {
        sync();
        std::lock_guard g(mu_);
        std::vector<fdstore::NamedFd> out;
        for (auto &[name, fds] : fds_)
            for (auto &fd : fds)
                out.push_back({name, Fd(fcntl(fd.get(), F_DUPFD_CLOEXEC, 0))});
        return out;
    }

    size_t size()
    {
        sync();
        std::lock_guard g(mu_);
        return fds_.size();
    }

    // Forgets everything (the mount went away).
    void clear()
    {
        sync();
        std::lock_guard g(mu_);
        fds_.clear();
    }

  private:
    // Everything the server sent before this call has been taken in.
    void sync()
    {
        uint64_t n;
        {
            std::lock_guard g(mu_);
            n = ++sync_req_;
        }
        notifier_->send("HOLDFAST_FUZZ_SYNC=" + std::to_string(n) + "\n");
        std::unique_lock l(mu_);
        cv_.wait(l, [&] { return synced_ >= n; });
    }

    void loop()
    {
        alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 253)];
        char text[4096];
        for (;;) {
            iovec iov{text, sizeof(text) - 1};
            msghdr msg{};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf;
            msg.msg_controllen = sizeof(cbuf);
            ssize_t n = recvmsg(sock_.get(), &msg, MSG_CMSG_CLOEXEC);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                perror("holdfast-fuzz: fd store recvmsg");
                abort();
            }
            text[n] = 0;
            std::vector<Fd> fds;
            for (cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                    continue;
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                    fds.emplace_back(fd);
                }
            }
            std::string t(text), name;
            if (auto p = t.find("FDNAME="); p != t.npos)
                name = t.substr(p + 7, t.find('\n', p) - p - 7);
            std::lock_guard g(mu_);
            if (auto p = t.find("HOLDFAST_FUZZ_SYNC="); p != t.npos) {
                synced_ = std::stoull(t.substr(p + 19));
                cv_.notify_all();
            } else if (t.find("FDSTOREREMOVE=1") != t.npos) {
                fds_.erase(name);
            } else if (t.find("FDSTORE=1") != t.npos && !name.empty()) {
                // Like holdfast-fdstore: a name may hold several fds.
                for (auto &f : fds)
                    fds_[name].push_back(std::move(f));
            }
        }
    }

    Fd sock_;
    std::unique_ptr<fdstore::Notifier> notifier_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::map<std::string, std::vector<Fd>> fds_;
    uint64_t sync_req_ = 0, synced_ = 0;
};

} // namespace holdfast::fuzz
