// SPDX-License-Identifier: GPL-2.0
// Node ids are slots in the region's inode table (+ a generation), never
// pointers: a node id from the kernel or a guest is an untrusted index, and
// it must keep meaning the same inode in the next server process.
#pragma once

#include "state/inode_index.h"
#include "state/region.h"
#include "util/fd.h"

#include <atomic>
#include <climits>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <sys/stat.h>
#include <unordered_map>
#include <vector>

namespace holdfast::state {

constexpr uint64_t kRootNodeId = 1; // FUSE_ROOT_ID

// Process-side view of one live inode: the O_PATH fd and what only this
// process needs.  Rebuildable from the InodeRecord.
struct Inode {
    uint64_t nodeid = 0;
    uint32_t generation = 0;
    uint32_t mode = 0; // S_IFMT bits
    uint64_t dev = 0;
    uint64_t ino = 0;
    Fd fd; // O_PATH, O_NOFOLLOW

    // POSIX and OFD record locks: one host fd per lock owner (fs/locks.cc).
    struct LockOwner {
        Fd fd;
        uint32_t pid = 0; // the owner's pid, reported to F_GETLK callers
        uint64_t fh = 0;  // the handle it locked through (OFD: its owner)
    };
    std::mutex lock_mu;
    std::unordered_map<uint64_t, LockOwner> lock_fds;
    // Open handles in this process; an unlinked inode with none needs no
    // help to survive a crash (nobody can reach it).
    std::atomic<uint32_t> open_count{0};

    bool is_dir() const { return S_ISDIR(mode); }
    bool is_reg() const { return S_ISREG(mode); }
    bool is_lnk() const { return S_ISLNK(mode); }
};

struct FileHandleBlob {
    int type = 0;
    uint32_t bytes = 0; // 0 when the host fs gives no handle
    uint8_t data[kMaxFileHandle];
};

class InodeTable {
  public:
    // Brings back the O_PATH fd of a live slot after a restart (by file
    // handle, or from the fd store).  An invalid Fd means: gone (ESTALE).
    using Resolver = std::function<Fd(uint64_t nodeid, const InodeRecord &)>;

    explicit InodeTable(Region &r);

    // Rebuilds the process-side index from the region a previous server
    // left; inodes are reopened lazily, on first use, through `resolver`.
    // Throws std::runtime_error on a corrupt record.
    void recover(Fd root_fd, Resolver resolver);
    const InodeRecord &record(uint64_t nodeid) const { return rec_[nodeid]; }
    void set_record_flags(uint64_t nodeid, uint32_t flags);
    // Before recover(): a migrated record (state/migration.h, find-paths)
    // names the source's file; make it name `st` here, with its handle.
    void rebind(uint64_t nodeid, const struct stat &st, const FileHandleBlob *fh);

    // Open O_PATH fds are a budget (RLIMIT_NOFILE), not one per inode: past
    // `max_open` resolved inodes, idle ones that can be reopened by file
    // handle give their fd back and are resolved again on next use.
    void set_resolver(Resolver r, size_t max_open);
    size_t open_fds() const { return resolved_.load(std::memory_order_relaxed); }

    // Installs the shared directory as node 1.
    void set_root(Fd fd, const struct stat &st);

    // The live inode for a node id, or null for anything else.
    std::shared_ptr<Inode> get(uint64_t nodeid) const;
    // The object only if it is open in this process now: never resolves.
    std::shared_ptr<Inode> peek(uint64_t nodeid) const;

    // Counts one kernel reference (nlookup) on the inode `st` describes,
    // creating its slot if it has none.  Takes the fd if a slot is created.
    // Returns null when the table is full.
    std::shared_ptr<Inode> ref(Fd fd, const struct stat &st, const FileHandleBlob *fh);
    // ref() without a file handle, for an inode this process holds open:
    // our fd pins the object, so no other one can have its (dev, ino) and
    // the handle would prove nothing.  Null (nothing counted) otherwise.
    std::shared_ptr<Inode> ref_open(const struct stat &st);

    // The live inode with this identity, if the table has one.
    std::shared_ptr<Inode> find(uint64_t dev, uint64_t ino) const;

    // Gives back `n` kernel references; frees the slot at zero.
    // Returns true if the slot was freed.
    bool forget(uint64_t nodeid, uint64_t n);

    size_t live() const;
    // Slots below this were used at some point (the region's inode_high).
    uint64_t high() const { return hdr_->inode_high.load(std::memory_order_acquire); }
    uint64_t capacity() const { return cap_; }
    uint64_t nlookup(uint64_t nodeid) const;

  private:
    static constexpr size_t kStripes = 64;

    void publish(uint64_t slot, std::shared_ptr<Inode> obj);
    std::shared_ptr<Inode> make_obj(uint64_t slot, Fd fd) const;
    bool evictable(uint64_t slot) const;
    static bool same_object(const InodeRecord &r, const struct stat &st,
                            const FileHandleBlob *fh);
    void evict_some() const;

    RegionHeader *hdr_;
    InodeRecord *rec_;
    Resolver resolver_;
    bool lazy_ = false;
    size_t max_open_ = SIZE_MAX;
    mutable std::atomic<size_t> resolved_{0};
    mutable std::mutex evict_mu_;
    mutable uint64_t clock_hand_ = kRootNodeId + 1;
    uint64_t cap_;
    std::unique_ptr<std::shared_ptr<Inode>[]> objs_;
    mutable std::mutex stripes_[kStripes];

    mutable std::mutex index_mu_; // index_, free_, next_, nlookup updates
    InodeIndex index_;
    std::vector<uint64_t> free_;
    uint64_t next_ = kRootNodeId + 1;
    size_t live_ = 0;
};

} // namespace holdfast::state
