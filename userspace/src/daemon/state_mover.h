// SPDX-License-Identifier: GPL-2.0
// Back-end state migration for the vhost-user server: the front-end hands
// us a channel (SET_DEVICE_STATE_FD), we stream the state region's
// snapshot into it (source) or read one from it and take it over
// (destination), and CHECK_DEVICE_STATE asks how that went.  The wire
// format is state/migration.h's; Documentation/migration.rst tells the
// whole story.
#pragma once

#include "fs/passthrough.h"
#include "fuse/engine.h"
#include "state/region.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace holdfast::daemon {

class StateMover {
  public:
    // `strict`: a migrated inode that does not resolve fails the load.
    // `fast_path`: lend our fds to a destination on this host (saving) and
    // take a source's (loading) instead of opening everything by handle.
    // `find_paths`: also send every inode's path, for a destination whose
    // file handles mean nothing (another host or file system).
    StateMover(state::Region &region, fs::Passthrough &pfs, fuse::Engine &engine, bool strict,
               bool fast_path = true, bool find_paths = false)
        : region_(region), pfs_(pfs), engine_(engine), strict_(strict), fast_path_(fast_path),
          find_paths_(find_paths)
    {
    }
    ~StateMover();
    StateMover(const StateMover &) = delete;
    StateMover &operator=(const StateMover &) = delete;

    // Starts a transfer over `fd` (taken): vhost::kStateSave or kStateLoad.
    // The copy runs in a thread, since the front-end reads (or writes) the
    // channel only after our reply.  Returns "" or why it cannot start.
    std::string transfer(uint32_t direction, int fd);
    // Waits for the transfer; loading, validates and installs the state.
    // Returns "" or what went wrong (the migration then fails).
    std::string check();

  private:
    void join();

    state::Region &region_;
    fs::Passthrough &pfs_;
    fuse::Engine &engine_;
    const bool strict_;
    const bool fast_path_;
    const bool find_paths_;
    // What keeps the fds we lent open until the next transfer.
    std::vector<std::shared_ptr<const void>> lent_;
    std::mutex mu_;
    std::thread copier_;
    uint32_t direction_ = 0;
    std::string copy_error_;
    std::vector<uint8_t> bytes_;
    bool pending_ = false;
};

} // namespace holdfast::daemon
