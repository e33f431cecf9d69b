// SPDX-License-Identifier: GPL-2.0
// The replay journal (records in the state region, see layout.h).
#pragma once

#include "state/region.h"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace holdfast::state {

// A plain copy of a record a previous server left.
struct JournalEntry {
    uint32_t phase;
    uint32_t opcode;
    uint64_t unique;
    int32_t error;
    uint32_t u32;
    uint64_t nodeid;
    uint64_t fh;
    uint64_t u64;
    // A READDIRPLUS record's reference list (regions that have them): the
    // node ids it counted and had not given back, one per reference.
    uint64_t seq = 0;
    std::vector<uint64_t> refs;
};

class Journal {
  public:
    explicit Journal(Region &r);

    // This thread's record, taken from the region on first use.  Threads of
    // a restarted server take fresh records, so what a crashed server left
    // stays readable while its resent requests are answered.
    JournalRecord &mine();

    // Marks the start of a non-idempotent op, before it touches the host.
    void begin(uint32_t opcode, uint64_t unique, uint64_t u64 = 0);
    // Records `u32` in this thread's record before the result is known (a
    // kernel object the op made, that a crash would leak), if the record
    // is the started one of request `unique`: a request replayed without
    // a record of its own must not write into another's.
    void note(uint64_t unique, uint32_t u32);
    // Publishes its result.
    void done(int error, uint64_t nodeid = 0, uint64_t fh = 0, uint32_t u32 = 0);

    // READDIRPLUS reference lists (layout.h, RefList), if the region has
    // them: without, READDIRPLUS is not journaled.
    bool has_refs() const { return refs_ != nullptr; }
    // begin() for a READDIRPLUS: its list starts as `carried` (the
    // references earlier attempts of the request left, ids[0, n)), all
    // written before the record is published as started.  False, and no
    // record, when the region has no lists or `carried` does not fit.
    bool begin_refs(uint32_t opcode, uint64_t unique, std::span<const uint64_t> carried);
    // Records one counted reference in this thread's list (call right
    // after counting it: a crash in between leaks the reference, never
    // gives back one the kernel holds).  False if the list is full or not
    // the started list of `unique`.
    bool add_ref(uint64_t unique, uint64_t nodeid);
    // Room left in this thread's list.
    size_t ref_room();
    // Marks carried reference `i` as given back (call before giving it
    // back, for the same reason), and, once all are, empties the list.
    void drop_ref(size_t i);
    void clear_refs();

    // Copies every started/done record out of the region (at attach).
    size_t load_previous();
    // The previous server's record for `unique`, consumed on return.
    std::optional<JournalEntry> take(uint64_t unique);
    size_t pending() const;
    // Forgets every record, the region's and the copies: a new FUSE
    // session (DESTROY, or INIT again) numbers its requests from the start,
    // so the old session's records would answer the new one's requests.
    void clear();

  private:
    // mine(), emptied and filled in for a new request; not yet started.
    JournalRecord &open_record(uint32_t opcode, uint64_t unique, uint64_t u64);
    RefList *my_refs();

    Region &region_;
    JournalRecord *rec_;
    RefArea *refs_area_;
    RefList *refs_;
    uint64_t cap_;
    const uint64_t id_;
    mutable std::mutex mu_;
    std::unordered_map<uint64_t, JournalEntry> previous_;
};

} // namespace holdfast::state
