// SPDX-License-Identifier: GPL-2.0
// (dev, ino) -> node id, the index a LOOKUP consults to give an inode the
// node id it already has.  Open addressing with linear probing in one flat
// array: a restart rebuilds it from the region at memory speed (no node per
// entry, no rehash when sized up front), which is most of the attach time
// when a million inodes are known.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace holdfast::state {

class InodeIndex {
  public:
    static constexpr uint64_t kNone = 0;

    void reserve(size_t n);
    // Returns the node id of (dev, ino), or kNone.
    uint64_t find(uint64_t dev, uint64_t ino) const;
    // Inserts; returns false if (dev, ino) is already there.
    bool insert(uint64_t dev, uint64_t ino, uint64_t id);
    void erase(uint64_t dev, uint64_t ino);
    // Starts loading the cache line a later insert/find of (dev, ino) needs:
    // a bulk rebuild is bound by cache misses, not by work.
    void prefetch(uint64_t dev, uint64_t ino) const
    {
        if (!slots_.empty())
            __builtin_prefetch(&slots_[hash(dev, ino) & (slots_.size() - 1)], 1);
    }
    void clear();
    size_t size() const { return size_; }

  private:
    struct Slot {
        uint64_t dev;
        uint64_t ino;
        uint64_t id; // kNone: empty; kTomb: erased
    };
    static constexpr uint64_t kTomb = ~uint64_t(0);

    static uint64_t hash(uint64_t dev, uint64_t ino)
    {
        uint64_t h = ino * 0x9e3779b97f4a7c15ULL ^ (dev + 0x632be59bd9b4e019ULL);
        h ^= h >> 29;
        h *= 0xbf58476d1ce4e5b9ULL;
        return h ^ (h >> 32);
    }
    void grow();
    void rehash(size_t cap);

    std::vector<Slot> slots_;
    size_t size_ = 0;
    size_t used_ = 0; // live + tombstones: what probing has to walk past
};

} // namespace holdfast::state
