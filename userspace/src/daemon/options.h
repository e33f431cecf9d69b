// SPDX-License-Identifier: GPL-2.0
// holdfastd's command line, virtiofsd-style long options.
#pragma once

#include "fs/passthrough.h"
#include "util/log.h"

#include <cstdint>
#include <string>

namespace holdfast::daemon {

struct Options {
    fs::Options fs;
    std::string mountpoint;
    unsigned threads = 0; // 0: one per CPU, at least 2
    // Mount: workers started while every worker is busy, up to this many.
    unsigned max_threads = 0; // 0: 10, or `threads` if more
    bool allow_other = true;
    bool allow_other_set = false;
    bool passthrough_set = false; // --passthrough given (fs.passthrough)
    bool default_permissions = false;
    int ready_fd = -1;
    log::Level log_level = log::Level::info;
    uint64_t max_inodes = 1u << 20;
    uint64_t max_handles = 1u << 18;
    // Crash recovery: run under the fd store (holdfast-fdstore, or systemd's
    // when $NOTIFY_SOCKET is set) and keep the journal.
    bool recovery = true;
    bool fault_injection = false;
    // Transport: /dev/fuse reads (dev), FUSE-over-io_uring queues next to
    // them (uring: fail if impossible), or uring when the kernel offers it
    // (auto).  See Documentation/io-uring.rst.
    enum class Transport { dev, uring, automatic };
    Transport transport = Transport::dev;
    unsigned uring_queue_depth = 8; // ring entries per queue (per CPU)
    // With the io_uring transport: READ, WRITE, FSYNC and FALLOCATE of open
    // files go to the backing file through each queue's ring (many in
    // flight per queue) rather than by blocking calls, one at a time.
    bool uring_backend_io = true;
    // The mount's readahead in KiB, set on its bdi (read_ahead_kb) before
    // INIT is answered; 0 leaves the kernel's (128 KiB).  The default is one
    // READ of the largest size we negotiate (max_pages), so a sequential
    // reader costs one request per MiB instead of eight.
    unsigned readahead_kib = 1024;
    bool readahead_set = false;
    // vhost-user-fs mode (a VM's virtio-fs device): serve the vhost-user
    // socket at socket_path (or the listening socket passed as listen_fd)
    // instead of mounting.
    std::string socket_path;
    int listen_fd = -1;
    std::string sandbox = "namespace"; // namespace | chroot | none
    std::string seccomp = "kill";      // kill | log | trap | none
    std::string tag;                   // virtio-fs tag (GET_CONFIG), optional
    unsigned max_request_queues = 16;
    // After the front-end disconnects, keep everything and serve the next
    // one (the guest re-sends what it had in flight, without a new INIT).
    bool reconnect = false;
    // The VM's QMP socket and our device's id in it: holdfastd re-plugs the
    // device itself after a restart or a disconnect (Documentation/vhost-user.rst).
    std::string qmp_socket;
    std::string qmp_device;
    // A migration destination where a migrated inode does not resolve:
    // fail the migration (the source keeps the guest), or take the state
    // and answer ESTALE for that inode.
    bool migration_abort = true;
    // Same-host migration: lend our fds to the destination / take the
    // source's (Documentation/migration.rst, "Same-host fast path").
    bool migration_fast_path = true;
    // --migration-mode find-paths: send every inode's path too, for a
    // destination whose file handles mean nothing (another host).
    bool migration_find_paths = false;
    // virtio-fs DAX window in bytes (a multiple of 2 MiB): offer the
    // back-end request channel and SHMEM, serve SETUPMAPPING/REMOVEMAPPING.
    // 0: no DAX.
    uint64_t dax_window = 0;
    bool dax_inode_set = false; // --dax-inode given (fs.dax_inode)
    bool print_capabilities = false;
    bool vhost() const { return !socket_path.empty() || listen_fd >= 0; }
    bool help = false;
    bool version = false;
};

// Parses argv into `out`.  Returns an empty string on success, or what is
// wrong, phrased for the user.
std::string parse(int argc, char **argv, Options &out);

const char *usage();
const char *transport_name(Options::Transport t);

} // namespace holdfast::daemon
