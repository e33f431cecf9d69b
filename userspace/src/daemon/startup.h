// SPDX-License-Identifier: GPL-2.0
// Start-up pieces both servers share: the /dev/fuse one (server.cc) and
// the vhost-user one (vhost_server.cc).  Each takes its fds back from the
// fd store, attaches its predecessor's state region and rebuilds the
// tables from it the same way; only where the FUSE connection comes from
// differs.
#pragma once

#include "fdstore/client.h"
#include "fs/passthrough.h"
#include "fuse/engine.h"
#include "state/region.h"
#include "util/fd.h"

#include <optional>
#include <string>
#include <vector>

namespace holdfast::daemon {

long long mono_ns();

// Every inode the client knows holds an O_PATH fd: lift the fd limit as
// far as we may.
void raise_fd_limit();

// True if `dir` is a directory; else prints why (for --shared-dir).
bool check_shared_dir(const std::string &dir);

// Removes the fd stored under `name` from `fds` and returns it (empty Fd
// if there is none).
Fd take_named(std::vector<fdstore::NamedFd> &fds, const std::string &name);

// Attaches the region a predecessor left in `memfd` into `region`.  On
// failure prints why and returns false: the caller exits with fdstore::kExitNoRestart,
// since serving from a region we cannot trust would answer with wrong
// files and no restart makes it trustworthy.  `generation` gets this
// server's attach generation.
bool attach_region(Fd memfd, std::optional<state::Region> &region, uint64_t &generation);

// Rebuilds the filesystem's tables from the attached region and the
// stored fds that remain in `stored` (the inode, handle and lock fds the
// predecessor kept), and makes the engine adopt what INIT settled, if it
// was settled.  Returns false (after printing why) if the region does not
// describe this shared directory.
bool recover_tables(fs::Passthrough &pfs, fuse::Engine &engine, state::Region &region,
                    std::vector<fdstore::NamedFd> stored);

} // namespace holdfast::daemon
