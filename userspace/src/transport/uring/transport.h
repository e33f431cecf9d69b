// SPDX-License-Identifier: GPL-2.0
// The FUSE-over-io_uring transport (Linux 6.14+): once INIT negotiated
// FUSE_OVER_IO_URING, one queue per possible CPU (the kernel's queue count),
// each with `depth` entries registered on the connection's /dev/fuse fd.
// The kernel then sends every request there, except FORGET and INTERRUPT
// (and notifications, which go the other way), which keep coming through
// /dev/fuse: the /dev/fuse readers keep running next to the queues.
//
// It knows buffers, not filesystems: requests go to the engine as one
// contiguous buffer, replies come back from the engine's Reply.
#pragma once

#include "fuse/engine.h"
#include "transport/uring/queue.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

namespace holdfast::uring {

// Why FUSE-over-io_uring cannot work here, as far as can be told before a
// mount: no kernel support, the fuse module's enable_uring is N, io_uring is
// disabled or lacks IORING_OP_URING_CMD.  "" if it looks usable.
std::string unavailable_reason();

// The kernel's number of queues: the number of possible CPUs.
unsigned possible_cpus();

// After INIT negotiated the ring, requests wait until every queue has an
// entry.  If ours cannot get there, this makes the kernel give up on the
// ring (one deliberately malformed REGISTER) so requests flow through
// /dev/fuse instead.  Only valid before any queue registered an entry.
// Returns "" on success.
std::string refuse(int devfd);

struct QueueInfo {
    unsigned qid;
    int cpu; // pinned to, or -1
    unsigned live;
    uint64_t requests, errors, malformed, offloaded, reregistered, adopted;
    uint64_t backend_ops; // backing-file operations carried out on the ring
    unsigned backend_max; // most of them in flight at once
};

// Where the entries live, for crash recovery: `base` holds queues x depth
// slots of Entry::slot_size(payload) bytes (queue q's at q * depth), and
// `records` as many records in the state region.  Empty: private buffers.
struct Persist {
    std::byte *base = nullptr;
    state::UringEntryRecord *records = nullptr;
    bool adopt = false; // a dead predecessor's: answer what it left there
};

class Transport {
  public:
    // `devfd`: the connection's /dev/fuse fd (any clone would do).  The
    // engine must have negotiated INIT: buffer sizes follow max_write and
    // max_pages.
    // `payload`: bytes of payload buffer per entry; 0 takes payload_for().
    // `backend_io`: see Queue.
    Transport(fuse::Engine &engine, int devfd, unsigned depth, size_t payload = 0,
              bool backend_io = true);
    // The payload buffer an entry needs for what INIT settled.
    static size_t payload_for(const fuse::Engine &engine);
    Transport(const Transport &) = delete;
    Transport &operator=(const Transport &) = delete;
    ~Transport();

    // Starts every queue and registers its entries.  Returns "" once every
    // queue has entries in the kernel; otherwise why not, with every queue
    // stopped again.  (A refused REGISTER makes the kernel fall back to
    // /dev/fuse for the connection, so that is then where requests go.)
    // `fresh`: INIT was just answered (the kernel may still be processing
    // the reply, and refuse REGISTERs with EAGAIN for a moment).
    std::string start(bool fresh, const Persist &mem = {}, int timeout_ms = 10000);
    // Asks the queues to leave; returns at once.  Requests the kernel queues
    // for the ring afterwards wait for a successor's entries.
    void stop();
    // Handover to a successor that adopts our entries: see Queue::park().
    void park();
    // Waits for the queues, which leave on their own when the connection
    // ends (their entries complete with ENOTCONN).
    void join();
    // For a server that took over a connection, once start() returned.
    // Requests the kernel queued for a queue while it had no entries (after
    // a dead predecessor's were cancelled, before ours were registered)
    // wait in the kernel's queue: a REGISTER does not look there, only the
    // commit of a request on the same queue does, fetching the next one.
    // So this makes one request per queue: a statfs of `mountpoint` from a
    // thread on that queue's CPU, in the background (a thread of its own,
    // never waited for: a queue parked for a successor answers nothing).
    void kick(const std::string &mountpoint);
    uint64_t kicked() const { return kicked_->load(std::memory_order_relaxed); }

    unsigned queues() const { return unsigned(queues_.size()); }
    unsigned depth() const { return depth_; }
    size_t payload_size() const { return payload_; }
    bool backend_io() const { return backend_io_; }
    std::string setup() const; // ring setup flags, for the log
    std::vector<QueueInfo> snapshot() const;
    uint64_t adopted() const; // a predecessor's requests answered, all queues

  private:
    fuse::Engine &engine_;
    int devfd_;
    unsigned depth_;
    size_t payload_;
    bool backend_io_;
    std::vector<std::unique_ptr<Queue>> queues_;
    // Queues kicked; shared with the kicking thread, which may outlive us.
    std::shared_ptr<std::atomic<uint64_t>> kicked_ = std::make_shared<std::atomic<uint64_t>>(0);
};

} // namespace holdfast::uring
