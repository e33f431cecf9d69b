// SPDX-License-Identifier: GPL-2.0
// The /dev/fuse transport: worker threads, each reading requests from its
// own FUSE_DEV_IOC_CLONE of the connection's fd and writing the replies
// back, and spare workers on the main fd for while they wait on a device.
// It knows buffers, not filesystems.
#pragma once

#include "fuse/engine.h"
#include "util/fd.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <pthread.h>
#include <thread>
#include <vector>

namespace holdfast::devfuse {

class Session {
  public:
    // `clones` are clone fds a previous server made (and the fd store kept):
    // they are reused first, since requests may sit in their queues.
    // `threads` workers start and always read.  A worker about to wait for a
    // device while no other reads wakes a spare, started on first need, up
    // to `max_threads` in all: the queue is never left unread while there
    // is work the CPUs could do.  Spares read only while no worker does, so
    // work that never waits keeps to the `threads` workers and their caches.
    Session(fuse::Engine &engine, int devfd, unsigned threads, std::vector<Fd> clones = {},
            unsigned max_threads = 0);
    ~Session();

    // Starts the workers, cloning the main fd as needed.  Returns the fds of
    // the clones made here (the caller keeps them in the fd store).
    std::vector<int> start();
    // Waits until every worker has stopped (the connection went away).
    void join();
    // Asks workers to stop taking requests (handover); returns once they
    // all stopped or `timeout_ms` passed.  Returns the number still busy.
    unsigned stop(int timeout_ms);
    // Workers started at start().
    unsigned threads() const { return nthreads_; }
    unsigned max_threads() const { return max_threads_; }
    // Workers now, those started on demand included.
    unsigned workers() const { return total_.load(std::memory_order_relaxed); }
    // FUSE_NOTIFY_RESEND: the kernel re-queues every request a dead server
    // had read.  Returns 0 or -errno.
    int notify_resend();

  private:
    void worker(int fd, bool spare);
    // Starts a worker on `fd`; false when the pool is full or stopping.
    bool spawn(int fd, bool spare);
    // Before an operation that may wait for a device: if no worker is left
    // reading, wake a spare (or start one).
    void may_block();
    // A spare with nothing to do waits here; false: stop.
    bool park();
    // Wakes every parked spare for good (stopping, or the connection gone).
    void unpark_all();
    static fuse::IoPath path_of(const fuse::BackendIo &io);
    static bool is_blocking_lock(const std::byte *req, size_t n);
    bool offload(int fd, const std::byte *req, size_t n);

    static constexpr unsigned kMaxWaiters = 256;
    std::atomic<unsigned> waiters_{0};

    fuse::Engine &engine_;
    int devfd_;
    unsigned nthreads_;
    unsigned max_threads_;
    std::vector<Fd> clones_;
    std::vector<std::thread> workers_;
    std::vector<pthread_t> handles_;
    std::mutex mu_;
    std::atomic<bool> stopping_{false};
    std::atomic<unsigned> running_{0};
    // Workers started (spares stay, parked, once started), those in read(2)
    // and the parked spares.
    std::atomic<unsigned> total_{0};
    std::atomic<unsigned> reading_{0};
    std::atomic<unsigned> parked_{0};
    std::atomic<bool> gone_{false};
    std::mutex park_mu_;
    std::condition_variable park_cv_;
};

} // namespace holdfast::devfuse
