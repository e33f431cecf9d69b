// SPDX-License-Identifier: GPL-2.0
// The DAX mapping table: what the guest mapped into its virtio-fs DAX
// window through us, one DaxRecord per SHMEM_MAP the front-end was sent
// (layout.h, Documentation/state-format.rst).  A successor reads it to
// unmap what a REMOVEMAPPING names, and to clean up after a crash.
//
// Not thread-safe: the filesystem serializes every use (one mapping
// request at a time; each waits for the front-end anyway).
#pragma once

#include "state/region.h"

#include <cstdint>
#include <map>
#include <vector>

namespace holdfast::state {

struct DaxMapping {
    uint64_t slot = 0;
    uint32_t state = kDaxFree; // DaxState
    bool writable = false;
    uint64_t win_offset = 0;
    uint64_t len = 0;
    uint64_t nodeid = 0;
    uint64_t file_offset = 0;

    bool uncertain() const { return state == kDaxPending || state == kDaxUnmapping; }
    uint64_t end() const { return win_offset + len; }
};

class DaxTable {
  public:
    // A table over the region's DAX area; without one, valid() is false
    // and nothing else may be called.
    explicit DaxTable(Region &r);

    bool valid() const { return area_ != nullptr; }
    uint64_t window() const { return area_->window_size; }
    uint64_t capacity() const { return area_->capacity; }

    // Checks every record a predecessor used and rebuilds the index.
    // Throws std::runtime_error ("refusing state region: ...") for a record
    // with an unknown state or flags, a range that is not page aligned or
    // not inside the window, a file range that overflows, a node id
    // outside [1, inode_capacity), or two records that overlap.
    void recover(uint64_t inode_capacity);

    // Records (not free) that overlap [off, off + len), by window offset.
    std::vector<DaxMapping> overlapping(uint64_t off, uint64_t len) const;
    std::vector<DaxMapping> all() const { return overlapping(0, area_->window_size); }
    size_t used() const { return index_.size(); }

    // Takes a free record for a mapping about to be sent to the front-end
    // and stores it as pending.  The range must not overlap another
    // record.  Returns the slot, or -1 when the table is full.
    int64_t begin_map(uint64_t win_offset, uint64_t len, uint64_t nodeid, uint64_t file_offset,
                      bool writable);
    // The front-end acknowledged the map: live.
    void publish(uint64_t slot);
    // An unmap of this record is about to be sent.
    void begin_unmap(uint64_t slot);
    // The range is known not to be mapped (any more): free the record.
    void release(uint64_t slot);
    // Forgets every record (a new window: nothing in it is ours).
    void clear();

  private:
    DaxMapping load(uint64_t slot) const;

    DaxArea *area_ = nullptr;
    DaxRecord *rec_ = nullptr;
    std::map<uint64_t, uint64_t> index_; // win_offset -> slot, every non-free record
    std::vector<uint64_t> free_;         // free slots below the high-water mark
};

} // namespace holdfast::state
