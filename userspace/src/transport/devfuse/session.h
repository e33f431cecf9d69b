// SPDX-License-Identifier: GPL-2.0
// The /dev/fuse transport: N worker threads, each reading requests from its
// own FUSE_DEV_IOC_CLONE of the connection's fd and writing the replies
// back.  It knows buffers, not filesystems.
#pragma once

#include "fuse/engine.h"
#include "util/fd.h"

#include <atomic>
#include <mutex>
#include <pthread.h>
#include <thread>
#include <vector>

namespace holdfast::devfuse {

class Session {
  public:
    // `clones` are clone fds a previous server made (and the fd store kept):
    // they are reused first, since requests may sit in their queues.
    Session(fuse::Engine &engine, int devfd, unsigned threads, std::vector<Fd> clones = {});
    ~Session();

    // Starts the workers, cloning the main fd as needed.  Returns the fds of
    // the clones made here (the caller keeps them in the fd store).
    std::vector<int> start();
    // Waits until every worker has stopped (the connection went away).
    void join();
    // Asks workers to stop taking requests (handover); returns once they
    // all stopped or `timeout_ms` passed.  Returns the number still busy.
    unsigned stop(int timeout_ms);
    unsigned threads() const { return nthreads_; }
    // FUSE_NOTIFY_RESEND: the kernel re-queues every request a dead server
    // had read.  Returns 0 or -errno.
    int notify_resend();

  private:
    void worker(int fd);
    static bool is_blocking_lock(const std::byte *req, size_t n);
    bool offload(int fd, const std::byte *req, size_t n);

    static constexpr unsigned kMaxWaiters = 256;
    std::atomic<unsigned> waiters_{0};

    fuse::Engine &engine_;
    int devfd_;
    unsigned nthreads_;
    std::vector<Fd> clones_;
    std::vector<std::thread> workers_;
    std::vector<pthread_t> handles_;
    std::mutex mu_;
    std::atomic<bool> stopping_{false};
    std::atomic<unsigned> running_{0};
};

} // namespace holdfast::devfuse
