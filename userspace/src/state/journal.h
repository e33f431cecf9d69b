// SPDX-License-Identifier: GPL-2.0
// The replay journal (records in the state region, see layout.h).
#pragma once

#include "state/region.h"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

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

    // Copies every started/done record out of the region (at attach).
    size_t load_previous();
    // The previous server's record for `unique`, consumed on return.
    std::optional<JournalEntry> take(uint64_t unique);
    size_t pending() const;

  private:
    Region &region_;
    JournalRecord *rec_;
    uint64_t cap_;
    const uint64_t id_;
    mutable std::mutex mu_;
    std::unordered_map<uint64_t, JournalEntry> previous_;
};

} // namespace holdfast::state
