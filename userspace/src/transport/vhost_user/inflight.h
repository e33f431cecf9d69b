// SPDX-License-Identifier: GPL-2.0
// Inflight I/O tracking (vhost-user INFLIGHT_SHMFD, split rings): a shared
// buffer, one region per queue, recording which descriptor heads were
// taken off the available ring and not yet put on the used ring.  The
// front-end keeps the buffer across a back-end crash and hands it to the
// successor (SET_INFLIGHT_FD), which resubmits those heads in the order
// they were taken.
//
// The buffer comes back from the front-end, so it is hostile input like
// guest memory: sizes, indices and the batch list are bounds-checked.
#pragma once

#include "util/fd.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace holdfast::vhost {

#pragma pack(push, 1)
struct DescStateSplit {
    uint8_t inflight;
    uint8_t padding[5];
    uint16_t next;
    uint64_t counter;
};
struct QueueRegionSplit {
    uint64_t features;
    uint16_t version; // 1; 0 = never initialized
    uint16_t desc_num;
    uint16_t last_batch_head;
    uint16_t used_idx;
    DescStateSplit desc[];
};
#pragma pack(pop)
static_assert(sizeof(DescStateSplit) == 16);
static_assert(sizeof(QueueRegionSplit) == 16);

// Bytes of one queue's region for a ring of `queue_size` entries.
size_t inflight_queue_bytes(uint16_t queue_size);

// The whole shared buffer: `num_queues` regions back to back.
class InflightArea {
  public:
    InflightArea() = default;
    InflightArea(InflightArea &&o) noexcept;
    InflightArea &operator=(InflightArea &&o) noexcept;
    ~InflightArea();

    // A fresh, zeroed buffer in a new memfd (GET_INFLIGHT_FD).
    static InflightArea create(uint16_t num_queues, uint16_t queue_size, std::string &err);
    // Maps a buffer the front-end handed back (SET_INFLIGHT_FD); checks the
    // fd really holds `mmap_size` bytes from `offset` and that they cover
    // every queue.  The fd is dup'ed; the caller keeps its own.
    static InflightArea attach(int fd, uint64_t mmap_size, uint64_t offset, uint16_t num_queues,
                               uint16_t queue_size, std::string &err);
    // Over caller-owned memory (tests).
    static InflightArea over(uint8_t *mem, size_t size, uint16_t num_queues, uint16_t queue_size);

    bool valid() const { return base_ != nullptr; }
    int fd() const { return fd_.get(); }
    uint64_t size() const { return size_; }
    uint16_t num_queues() const { return num_queues_; }
    uint16_t queue_size() const { return queue_size_; }
    // Queue `i`'s region, or nullptr.
    QueueRegionSplit *queue(uint16_t i) const;

  private:
    Fd fd_;
    uint8_t *base_ = nullptr;
    size_t map_len_ = 0;
    bool owned_ = false;
    uint64_t size_ = 0;
    uint16_t num_queues_ = 0;
    uint16_t queue_size_ = 0;
};

// One queue's view of its region.  Not thread-safe: the queue's lock
// serializes every call.
class InflightQueue {
  public:
    // Attaches to `r` for a ring of `num` entries.  A region never used
    // (version 0) is initialized; one a predecessor used is kept as is.
    // Returns "" or why the region can not be used.
    std::string attach(QueueRegionSplit *r, uint16_t num, uint16_t ring_used_idx);
    void detach() { r_ = nullptr; }
    bool active() const { return r_ != nullptr; }

    // A head was taken off the available ring.
    void popped(uint16_t head);
    // `head` is about to go on the used ring (before used->idx moves)...
    void pushing(uint16_t head);
    // ...and used->idx is now `new_used_idx`.
    void pushed(uint16_t head, uint16_t new_used_idx);

    // After a reconnect: heads recorded in flight, oldest first, after
    // fixing up the last batch if the predecessor died between moving
    // used->idx and clearing the batch's flags.  Heads out of range or
    // duplicated are dropped.  Also restores the counter.
    std::vector<uint16_t> resubmit(uint16_t ring_used_idx);

  private:
    QueueRegionSplit *r_ = nullptr;
    uint16_t num_ = 0;
    uint64_t counter_ = 1;
};

} // namespace holdfast::vhost
