// SPDX-License-Identifier: GPL-2.0
// A memfd-backed shared mapping holding the state tables (see layout.h).
#pragma once

#include "state/layout.h"
#include "util/fd.h"

#include <cstddef>
#include <string>

namespace holdfast::state {

class Region {
  public:
    struct Geometry {
        uint64_t inode_capacity = 1u << 20;
        uint64_t handle_capacity = 1u << 18;
        uint64_t journal_capacity = 1024;
        // FUSE-over-io_uring entry records: queues x depth of them are
        // used (2 CPUs x 8 by default); 0 makes a region without the table.
        uint64_t uring_capacity = 4096;
        // virtio-fs DAX window in bytes (a multiple of 2 MiB): a mapping
        // table for it (DaxTable); 0 makes a region without one.
        uint64_t dax_window = 0;
    };
    // DAX mapping records for a window of `window` bytes: one per 64 KiB
    // (the Linux guest maps 2 MiB at a time), at least 32.
    static uint64_t dax_capacity(uint64_t window);
    // Bytes of the READDIRPLUS reference area for a journal of this size.
    static uint64_t refs_bytes(uint64_t journal_capacity);

    // A new, empty region.  Pages are only touched as slots are used, so a
    // large capacity costs address space, not memory.
    static Region create(const Geometry &g);

    // Maps a region a previous server left behind and validates it: magic,
    // layout version, sizes, offsets and the root record.  Throws
    // std::runtime_error saying what is wrong; never guesses.
    static Region attach(Fd memfd);

    Region(Region &&o) noexcept;
    Region &operator=(Region &&) = delete;
    Region(const Region &) = delete;
    ~Region();

    RegionHeader &header() { return *static_cast<RegionHeader *>(base_); }
    InodeRecord *inodes();
    HandleRecord *handles();
    JournalRecord *journal();
    // The ring entry table, or nullptr in a region made without one.
    UringEntryRecord *uring_entries();
    // The DAX area (records follow it), or nullptr in a region without one.
    DaxArea *dax_area();
    // The READDIRPLUS reference area and its lists (one per journal
    // record), or nullptr in a region made without them.
    RefArea *ref_area();
    RefList *ref_lists();
    int memfd() const { return fd_.get(); }
    size_t size() const { return size_; }

  private:
    Region(Fd fd, void *base, size_t size) : fd_(std::move(fd)), base_(base), size_(size) {}
    Fd fd_;
    void *base_ = nullptr;
    size_t size_ = 0;
};

} // namespace holdfast::state
