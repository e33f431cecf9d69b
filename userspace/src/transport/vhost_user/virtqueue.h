// SPDX-License-Identifier: GPL-2.0
// Split virtqueues (virtio 1.x, 2.7) served from the device side: the
// descriptor-chain walker, and one queue's state with the operations its
// workers and the vhost-user control loop need.
//
// The rings live in guest memory, which the guest can change at any time.
// Every index read from it is checked against the ring size, every
// descriptor is copied out once before it is looked at, every address is
// translated through the memory table (see memory.h), and a chain is
// bounded in length, so loops, out-of-table addresses, overflowing lengths
// and nested or malformed indirect tables are all caught.  A bad chain
// fails only its own request; a ring whose indices are broken is stopped.
#pragma once

#include "transport/vhost_user/inflight.h"
#include "transport/vhost_user/dirty_log.h"
#include "transport/vhost_user/memory.h"
#include "transport/vhost_user/protocol.h"
#include "util/fd.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <sys/uio.h>
#include <vector>

namespace holdfast::vhost {

// Descriptor flags and layout (virtio 1.x 2.7.5).
constexpr uint16_t kDescNext = 1;
constexpr uint16_t kDescWrite = 2;
constexpr uint16_t kDescIndirect = 4;
constexpr uint16_t kAvailNoInterrupt = 1;

#pragma pack(push, 1)
struct Desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
#pragma pack(pop)
static_assert(sizeof(Desc) == 16);

// One request as the guest laid it out: the bytes the device reads, then
// the buffers it writes, as host iovecs into guest memory.
struct Chain {
    uint16_t head = 0;
    std::vector<iovec> in;  // device-readable (the request)
    std::vector<iovec> out; // device-writable (room for the reply)
    uint64_t in_bytes = 0;
    uint64_t out_bytes = 0;
    // The device-writable descriptors in guest-physical terms: what the
    // dirty log must mark once the reply is written.
    std::vector<std::pair<uint64_t, uint32_t>> out_gpa;
    // Keeps the mappings the iovecs point into alive.
    std::shared_ptr<const MemoryTable> mem;
    uint64_t gen = 0; // which start of the ring this came from
    // Handed back by the inflight region: a predecessor took it and may
    // have run it.
    bool resubmitted = false;

    void clear()
    {
        in.clear();
        out.clear();
        out_gpa.clear();
        in_bytes = out_bytes = 0;
        mem.reset();
        resubmitted = false;
    }
};

enum class ChainError {
    ok,
    head_out_of_range,
    next_out_of_range,
    too_long, // a loop, or more descriptors than the table has
    out_of_table,
    too_many_segments,
    too_large,
    readable_after_writable,
    indirect_not_negotiated,
    indirect_bad_size,
    indirect_nested,
    indirect_with_next,
};
const char *chain_error_str(ChainError e);

struct WalkLimits {
    size_t max_iov = 2048;           // host segments per chain
    uint32_t max_indirect = 1024;    // entries in one indirect table
    uint64_t max_bytes = 0xffffffffu; // per direction (used.len is 32 bits)
};

// Walks the chain starting at `head` in the descriptor table `table`
// (`num` entries, already translated and bounds-checked by the caller).
// Fills `out.in` / `out.out`; on error `out` holds nothing useful.
ChainError walk_chain(const MemoryTable &mem, const uint8_t *table, uint16_t num, uint16_t head,
                      bool indirect_ok, const WalkLimits &lim, Chain &out);

class Virtqueue {
  public:
    explicit Virtqueue(unsigned index);
    ~Virtqueue();
    Virtqueue(const Virtqueue &) = delete;
    Virtqueue &operator=(const Virtqueue &) = delete;

    unsigned index() const { return index_; }

    // ---- control side: one call per front-end message ----
    void set_features(uint64_t features);
    std::string set_num(uint32_t num);
    std::string set_addr(const VringAddr &a);
    std::string set_base(uint32_t base);
    void set_kick(Fd fd); // an empty Fd: no notifications, poll instead
    void set_call(Fd fd);
    void set_err(Fd fd);
    void set_enabled(bool on);
    std::string set_memory(std::shared_ptr<const MemoryTable> mem);
    // The migration dirty log; written pages are marked while the
    // negotiated features include VHOST_F_LOG_ALL (nullptr: none).
    void set_log(std::shared_ptr<DirtyLog> log);
    // Tracks inflight heads in `r`, which has room for `capacity`
    // descriptors, from the next start of the ring on (nullptr: stop
    // tracking).  A ring larger than `capacity` is not tracked.
    std::string set_inflight(QueueRegionSplit *r, uint16_t capacity);
    // GET_VRING_BASE: stops the ring, waits up to `timeout_ms` for the
    // requests being served to complete, and returns the next avail index.
    uint16_t stop(int timeout_ms);
    // Back to the initial state (RESET_DEVICE / RESET_OWNER / disconnect).
    void reset();
    // Makes every wait_pop() return false from now on.
    void shutdown();

    // ---- worker side ----
    // Blocks until a request is available (true) or shutdown (false).  A
    // chain the walker refuses is completed with length 0 here and never
    // returned.
    bool wait_pop(Chain &c);
    // Puts c.head on the used ring with `len` bytes written and signals
    // the guest if it asked for it.  Dropped if the ring was stopped since.
    void complete(const Chain &c, uint32_t len);

    // ---- for tests and status ----
    // One non-blocking pop: 1 got a chain, 0 nothing pending, -1 broken.
    int try_pop(Chain &c);
    bool running() const;
    bool broken() const;
    uint64_t served() const { return completed_.load(std::memory_order_relaxed); }
    uint64_t bad_chains() const { return bad_chains_.load(std::memory_order_relaxed); }
    uint64_t notifications() const { return notifies_.load(std::memory_order_relaxed); }

    WalkLimits limits;

  private:
    bool runnable_locked() const;
    std::string translate_locked();
    int pop_locked(Chain &c);
    void push_locked(uint16_t head, uint32_t len);
    void log_used_locked();
    bool need_notify_locked();
    void notify_locked();
    // Re-arms guest notifications; true if more work arrived meanwhile.
    bool arm_notify_locked();
    void wake();
    void mark_broken_locked(const std::string &why);

    const unsigned index_;
    mutable std::mutex mu_;
    std::condition_variable cv_;      // workers waiting for work or a turn to poll
    std::condition_variable stop_cv_; // stop() waiting for busy_ to drain
    bool stopping_ = false;

    // Configuration.
    uint64_t features_ = 0;
    bool event_idx_ = false;
    bool indirect_ = false;
    uint16_t num_ = 0;
    VringAddr addr_{};
    bool addr_set_ = false;
    std::shared_ptr<const MemoryTable> mem_;
    std::shared_ptr<DirtyLog> log_;
    std::shared_ptr<Fd> kick_;
    bool kick_set_ = false;
    Fd call_, err_;
    bool enabled_ = false;
    bool started_ = false;
    bool broken_ = false;
    bool shutdown_ = false;

    // Translated ring pointers (valid while mem_ is).
    uint8_t *desc_ = nullptr;
    uint8_t *avail_ = nullptr;
    uint8_t *used_ = nullptr;

    // Ring progress.
    uint16_t last_avail_ = 0;
    uint16_t used_idx_ = 0;
    uint16_t signalled_used_ = 0;
    bool signalled_valid_ = false;
    uint64_t gen_ = 1;
    unsigned busy_ = 0; // chains handed out and not completed
    bool poller_ = false;
    std::deque<uint16_t> resubmit_;

    InflightQueue inflight_;
    QueueRegionSplit *inflight_region_ = nullptr;
    uint16_t inflight_capacity_ = 0;

    Fd wake_; // eventfd: interrupts a worker waiting for a kick

    std::atomic<uint64_t> completed_{0};
    std::atomic<uint64_t> bad_chains_{0};
    std::atomic<uint64_t> notifies_{0};
};

} // namespace holdfast::vhost
