// SPDX-License-Identifier: GPL-2.0
// The /dev/fuse transport: N worker threads, each reading requests from its
// own FUSE_DEV_IOC_CLONE of the connection's fd and writing the replies
// back.  It knows buffers, not filesystems.
#pragma once

#include "fuse/engine.h"
#include "util/fd.h"

#include <atomic>
#include <thread>
#include <vector>

namespace holdfast::devfuse {

class Session {
  public:
    Session(fuse::Engine &engine, int devfd, unsigned threads);
    ~Session();

    // Starts the workers; returns how many run on their own clone fd.
    unsigned start();
    // Waits until every worker has stopped (the connection went away).
    void join();
    unsigned threads() const { return nthreads_; }

  private:
    void worker(int fd);

    fuse::Engine &engine_;
    int devfd_;
    unsigned nthreads_;
    std::vector<Fd> clones_;
    std::vector<std::thread> workers_;
};

} // namespace holdfast::devfuse
