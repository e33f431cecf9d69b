// SPDX-License-Identifier: GPL-2.0
// The guest memory table: the regions a front-end shared with SET_MEM_TABLE
// (or ADD_MEM_REG), mapped into this process.  Every guest-physical or
// front-end-virtual address the guest or the front-end gives us is
// translated here, and only here: a range that is not entirely inside the
// table translates to nothing, so no later code can read or write outside
// what was shared.
//
// A table is immutable once built and shared by reference count: a queue
// worker holding a request keeps the table it translated with alive, so a
// new SET_MEM_TABLE never unmaps memory under a request being served.
#pragma once

#include "transport/vhost_user/protocol.h"
#include "util/fd.h"

#include <cstdint>
#include <memory>
#include <string>
#include <sys/uio.h>
#include <vector>

namespace holdfast::vhost {

class MemoryTable {
  public:
    struct Region {
        uint64_t gpa = 0;  // guest physical address of the first byte
        uint64_t size = 0; // bytes
        uint64_t uva = 0;  // front-end's virtual address of the first byte
        uint8_t *host = nullptr; // where the first byte is mapped here
        void *map_base = nullptr; // what munmap gets (nullptr: not ours)
        size_t map_len = 0;
    };

    // Maps `descs` from `fds` (one per region, same order).  The fds are
    // not needed after mapping and are closed by the caller.  Validates
    // every region: non-empty, no address overflow, no two regions
    // overlapping in guest-physical or front-end space, the fd large
    // enough (a mapping past the end of a file would SIGBUS on access).
    // Returns nullptr and sets `err` on failure.
    static std::shared_ptr<MemoryTable> map(const std::vector<MemRegionDesc> &descs,
                                            const std::vector<int> &fds, std::string &err);

    // A table over memory the caller owns (tests): region i's bytes are at
    // hosts[i].  Same validation, nothing is mapped or unmapped.
    static std::shared_ptr<MemoryTable> over(const std::vector<MemRegionDesc> &descs,
                                             const std::vector<uint8_t *> &hosts,
                                             std::string &err);

    // This table plus one region / minus the region matching `gpa` and
    // `size` (ADD_MEM_REG / REM_MEM_REG).  The regions stay mapped by
    // whichever tables still hold them.
    std::shared_ptr<MemoryTable> with_added(const MemRegionDesc &d, int fd,
                                            std::string &err) const;
    std::shared_ptr<MemoryTable> with_removed(const MemRegionDesc &d, std::string &err) const;

    ~MemoryTable();
    MemoryTable(const MemoryTable &) = delete;
    MemoryTable &operator=(const MemoryTable &) = delete;

    // [gpa, gpa + len) as host memory, contiguous and inside one region,
    // or nullptr.  For rings and indirect tables, which must be contiguous.
    uint8_t *gpa_ptr(uint64_t gpa, uint64_t len) const;
    // The same for a front-end virtual address (SET_VRING_ADDR).
    uint8_t *uva_ptr(uint64_t uva, uint64_t len) const;

    // Appends the host iovecs covering [gpa, gpa + len), which may cross
    // from one region into an adjacent one.  Fails (appending nothing) if
    // a byte is outside the table or more than `max_iov` iovecs would be
    // needed in total.
    bool gpa_to_iov(uint64_t gpa, uint64_t len, std::vector<iovec> &out, size_t max_iov) const;

    size_t regions() const { return regions_.size(); }
    const Region &region(size_t i) const { return regions_[i]; }
    // Total bytes mapped (what the status line reports).
    uint64_t bytes() const;

  private:
    MemoryTable() = default;
    static std::string validate(const std::vector<Region> &r);
    const Region *find_gpa(uint64_t gpa) const;

    // Shared ownership of mappings so with_added/with_removed can reuse them.
    struct Mapping {
        void *base = nullptr;
        size_t len = 0;
        ~Mapping();
    };
    std::vector<Region> regions_;
    std::vector<std::shared_ptr<Mapping>> maps_; // parallel to regions_
};

} // namespace holdfast::vhost
