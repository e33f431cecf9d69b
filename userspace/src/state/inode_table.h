// SPDX-License-Identifier: GPL-2.0
// Node ids are slots in the region's inode table (+ a generation), never
// pointers: a node id from the kernel or a guest is an untrusted index, and
// it must keep meaning the same inode in the next server process.
#pragma once

#include "state/region.h"
#include "util/fd.h"

#include <cstdint>
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

    // POSIX record locks: one host fd per lock owner (see fs/locks.cc).
    std::mutex lock_mu;
    std::unordered_map<uint64_t, Fd> lock_fds;

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
    explicit InodeTable(Region &r);

    // Installs the shared directory as node 1.
    void set_root(Fd fd, const struct stat &st);

    // The live inode for a node id, or null for anything else.
    std::shared_ptr<Inode> get(uint64_t nodeid) const;

    // Counts one kernel reference (nlookup) on the inode `st` describes,
    // creating its slot if it has none.  Takes the fd if a slot is created.
    // Returns null when the table is full.
    std::shared_ptr<Inode> ref(Fd fd, const struct stat &st, const FileHandleBlob *fh);

    // Gives back `n` kernel references; frees the slot at zero.
    void forget(uint64_t nodeid, uint64_t n);

    size_t live() const;
    uint64_t capacity() const { return cap_; }
    uint64_t nlookup(uint64_t nodeid) const;

  private:
    struct Key {
        uint64_t dev, ino;
        bool operator==(const Key &) const = default;
    };
    struct KeyHash {
        size_t operator()(const Key &k) const { return k.ino * 0x9e3779b97f4a7c15ULL ^ k.dev; }
    };
    static constexpr size_t kStripes = 64;

    void publish(uint64_t slot, std::shared_ptr<Inode> obj);

    InodeRecord *rec_;
    uint64_t cap_;
    std::unique_ptr<std::shared_ptr<Inode>[]> objs_;
    mutable std::mutex stripes_[kStripes];

    mutable std::mutex index_mu_; // index_, free_, next_, nlookup updates
    std::unordered_map<Key, uint64_t, KeyHash> index_;
    std::vector<uint64_t> free_;
    uint64_t next_ = kRootNodeId + 1;
    size_t live_ = 0;
};

} // namespace holdfast::state
