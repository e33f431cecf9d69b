// SPDX-License-Identifier: GPL-2.0
// One FUSE-over-io_uring queue: a thread pinned to one CPU, its own ring,
// `depth` entries registered with the kernel for queue `qid`, and the
// serving loop: completion -> request -> engine -> reply -> COMMIT_AND_FETCH.
//
// The kernel picks the queue of the CPU the calling task runs on, so the
// thread that serves a request usually runs where it was made.  Requests are
// served inline, except two kinds.  Data ops on open files (READ, WRITE,
// FSYNC, FALLOCATE) go to the backing file as io_uring operations on the same
// ring (fuse/backend_io.h): the queue goes on with the next request, and the
// reply is committed when the operation completes, so every entry can have
// one in flight.  Requests that may block indefinitely (SETLKW waits for
// another process's unlock, which may be queued behind it on this very
// queue) are served by a helper thread, which hands the entry back through
// the queue's eventfd; only the queue thread submits to its ring.
#pragma once

#include "fuse/engine.h"
#include "state/layout.h"
#include "transport/uring/entry.h"
#include "util/fd.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace holdfast::uring {

class Ring;

struct QueueStats {
    std::atomic<uint64_t> requests{0};     // requests served off this queue's ring
    std::atomic<uint64_t> errors{0};       // of those, answered with an error
    std::atomic<uint64_t> malformed{0};    // entries whose buffers made no sense
    std::atomic<uint64_t> offloaded{0};    // served by a helper thread (may block)
    std::atomic<uint64_t> reregistered{0}; // entries registered again (commit refused)
    std::atomic<uint64_t> adopted{0};      // a predecessor's requests this queue answered
    std::atomic<uint64_t> backend_ops{0};  // backing-file operations submitted on the ring
    std::atomic<unsigned> backend_max{0};  // most of them in flight at once
    std::atomic<unsigned> live{0};         // entries the kernel holds or we serve
};

// Where a queue's entries live, for crash recovery (see buffers.h).
struct QueueMemory {
    // `depth` slots of Entry::slot_size(payload_cap) bytes, or nullptr: the
    // queue allocates private buffers (and nothing survives it).
    std::byte *base = nullptr;
    // `depth` records in the state region, or nullptr.
    state::UringEntryRecord *records = nullptr;
    // The slots are a dead predecessor's: answer what it left in them
    // before registering them again.
    bool adopt = false;
};

class Queue {
  public:
    // `settle_ms`: see wait_armed().  `backend_io`: carry out data ops on
    // the ring (else by blocking calls in the queue thread).
    Queue(fuse::Engine &engine, int devfd, unsigned qid, unsigned depth, size_t payload_cap,
          int settle_ms, QueueMemory mem = {}, bool backend_io = true);
    Queue(const Queue &) = delete;
    Queue &operator=(const Queue &) = delete;
    ~Queue();

    void start();
    // Waits until the queue's REGISTERs went through (or failed): the kernel
    // does not answer a REGISTER that worked, so that is when none was
    // refused within `settle_ms` of submitting them.  Refusals come at once,
    // except EAGAIN (INIT reply not processed yet), which io_uring sends from
    // a worker: a new connection needs a few ms, an initialized one none.
    // Returns
    // "" if at least one entry is registered, else why not.  Entries that
    // failed while others worked are logged.
    std::string wait_armed(int timeout_ms);
    // Asks the thread to leave; returns at once.
    void stop();
    // Handover: stop serving, but keep the ring and keep taking what the
    // kernel hands our entries (leaving it in their buffers, for the
    // successor to adopt) until the process exits.  A ring whose owner
    // thread is gone makes the kernel fail new requests with ECANCELED
    // (lab-uringcrash.md, U3), and a thread that never enters the ring
    // again would leave their delivery pending until exit, when it fails
    // the same way.
    void park();
    // Waits for the thread.  Returns false if helper threads are still
    // blocked in a request (the queue must then not be destroyed).
    bool join(int helper_timeout_ms = 1000);

    unsigned qid() const { return qid_; }
    unsigned depth() const { return depth_; }
    int cpu() const { return cpu_.load(std::memory_order_relaxed); }
    const QueueStats &stats() const { return stats_; }
    std::string setup() const;

  private:
    enum class Cmd : uint8_t { none, reg, commit };
    enum class State { starting, armed, failed, exited };

    void run();
    void set_state(State s, const std::string &why = {});
    void on_completion(uint64_t user_data, int res);
    bool adopt(unsigned idx);
    void serve(unsigned idx);
    void dispatch(unsigned idx, std::span<const std::byte> req);
    // Returns false if the request waits for backing-file I/O.
    bool handle(unsigned idx, std::span<const std::byte> req, fuse::BackendIo *io = nullptr);
    void finish(unsigned idx);
    void submit_io(unsigned idx);
    void on_io(unsigned idx, int res);
    void mark_serving(unsigned idx, std::span<const std::byte> req);
    void mark_submitted();
    void commit(unsigned idx);
    void retire(unsigned idx, int res);
    void take_done();
    void wake();

    fuse::Engine &engine_;
    const int devfd_;
    const unsigned qid_;
    const unsigned depth_;
    const size_t payload_cap_;
    const int settle_ms_;
    const QueueMemory mem_;
    const bool backend_io_;
    std::atomic<int> cpu_{-1};
    Fd evfd_;
    std::thread thread_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> parking_{false};
    std::atomic<unsigned> helpers_{0};
    QueueStats stats_;

    // Owned by the queue thread.
    struct Slot {
        std::unique_ptr<Entry> entry;
        state::UringEntryRecord *rec = nullptr;
        Cmd cmd = Cmd::none;
        bool dead = false;
        fuse::BackendIo io; // pending while its operation is on the ring
    };
    std::vector<Slot> slots_;
    std::vector<unsigned> committing_; // commits prepared, not yet known submitted
    Ring *ring_ = nullptr;
    std::vector<unsigned> retry_; // REGISTERs refused with EAGAIN (INIT not processed yet)
    unsigned io_inflight_ = 0;
    bool armed_ = false;
    bool woken_ = false;
    std::string first_error_;

    std::mutex done_mu_;
    std::vector<unsigned> done_; // entries a helper finished

    mutable std::mutex mu_;
    std::condition_variable cv_;
    State state_ = State::starting;
    std::string why_;
    std::string setup_;
};

} // namespace holdfast::uring
