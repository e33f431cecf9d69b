// SPDX-License-Identifier: GPL-2.0
// File handles (fh) are slots in the region's handle table: untrusted
// indexes from the kernel, validated on every use.
#pragma once

#include "state/inode_table.h"
#include "state/region.h"
#include "util/fd.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace holdfast::state {

struct Handle {
    uint64_t fh = 0;
    std::shared_ptr<Inode> inode;
    Fd fd;
    int flags = 0; // host open flags
    bool dir = false;
    uint64_t opened_by = 0; // unique of the request that opened it
    int32_t backing_id = 0; // kernel passthrough id its OPEN reply named
    // How the backing file takes reads [0] and writes [1], a fuse::IoPath
    // the data path learns on first use (0: not known yet).
    std::atomic<uint8_t> io_path[2] = {};
    // An O_DIRECT handle (--direct-io, fs/data.cc): the alignment its host
    // fs needs for direct I/O, memory << 32 | offset and length (0: not
    // learnt yet), and a second fd of the file without O_DIRECT for
    // transfers that are not aligned so, with its own IoPaths.
    std::atomic<uint64_t> dio_align{0};
    std::mutex dio_mu; // guards opening dio_plain
    Fd dio_plain;
    std::atomic<uint8_t> dio_plain_path[2] = {};

    // Directory streams: one reader at a time, resumes at a d_off cookie.
    std::mutex mu;
};

class HandleTable {
  public:
    // Reopens a live handle after a restart; null means it cannot be.
    using Resolver = std::function<std::shared_ptr<Handle>(uint64_t fh, const HandleRecord &)>;

    explicit HandleTable(Region &r);

    // Rebuilds allocation state from the region; handles reopen lazily.
    // Throws std::runtime_error on a corrupt record.
    void recover(Resolver resolver, uint64_t inode_capacity);
    HandleRecord &record(uint64_t fh) { return rec_[fh]; }

    // Returns the new fh, or 0 when the table is full.
    uint64_t add(std::shared_ptr<Handle> h);
    std::shared_ptr<Handle> get(uint64_t fh) const;
    // The object only if it is open in this process now: never resolves.
    std::shared_ptr<Handle> peek(uint64_t fh) const;
    // Removes and returns the handle (null if fh was not live).
    std::shared_ptr<Handle> remove(uint64_t fh);
    size_t live() const;
    uint64_t capacity() const { return cap_; }
    // Slots below this were used at some point (the region's handle_high).
    uint64_t high() const { return hdr_->handle_high.load(std::memory_order_acquire); }

  private:
    static constexpr size_t kStripes = 64;
    RegionHeader *hdr_;
    HandleRecord *rec_;
    Resolver resolver_;
    bool lazy_ = false;
    uint64_t cap_;
    std::unique_ptr<std::shared_ptr<Handle>[]> objs_;
    mutable std::mutex stripes_[kStripes];
    mutable std::mutex alloc_mu_;
    std::vector<uint64_t> free_;
    uint64_t next_ = 1; // fh 0 stays unused so a zeroed fh is never valid
    size_t live_ = 0;
};

} // namespace holdfast::state
