// SPDX-License-Identifier: GPL-2.0
#include "state/inode_index.h"

namespace holdfast::state {

void InodeIndex::reserve(size_t n)
{
    // Keep the load factor at or below 1/2.
    size_t cap = 16;
    while (cap < n * 2)
        cap <<= 1;
    if (cap > slots_.size())
        rehash(cap);
}

void InodeIndex::rehash(size_t cap)
{
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(cap, Slot{0, 0, kNone});
    size_ = used_ = 0;
    for (const Slot &s : old)
        if (s.id != kNone && s.id != kTomb)
            insert(s.dev, s.ino, s.id);
}

void InodeIndex::grow()
{
    // Tombstones count against the load: rebuild to twice the live entries'
    // needs, which drops them, and grows only if the live set grew.
    size_t cap = 16;
    while (cap < (size_ + 1) * 4)
        cap <<= 1;
    rehash(cap);
}

uint64_t InodeIndex::find(uint64_t dev, uint64_t ino) const
{
    if (slots_.empty())
        return kNone;
    size_t mask = slots_.size() - 1;
    for (size_t i = hash(dev, ino) & mask;; i = (i + 1) & mask) {
        const Slot &s = slots_[i];
        if (s.id == kNone)
            return kNone;
        if (s.id != kTomb && s.dev == dev && s.ino == ino)
            return s.id;
    }
}

bool InodeIndex::insert(uint64_t dev, uint64_t ino, uint64_t id)
{
    if ((used_ + 1) * 2 > slots_.size())
        grow();
    size_t mask = slots_.size() - 1;
    Slot *tomb = nullptr;
    for (size_t i = hash(dev, ino) & mask;; i = (i + 1) & mask) {
        Slot &s = slots_[i];
        if (s.id == kNone) {
            Slot &dst = tomb ? *tomb : s;
            if (!tomb)
                used_++;
            dst = {dev, ino, id};
            size_++;
            return true;
        }
        if (s.id == kTomb) {
            if (!tomb)
                tomb = &s;
        } else if (s.dev == dev && s.ino == ino) {
            return false;
        }
    }
}

void InodeIndex::erase(uint64_t dev, uint64_t ino)
{
    if (slots_.empty())
        return;
    size_t mask = slots_.size() - 1;
    for (size_t i = hash(dev, ino) & mask;; i = (i + 1) & mask) {
        Slot &s = slots_[i];
        if (s.id == kNone)
            return;
        if (s.id != kTomb && s.dev == dev && s.ino == ino) {
            s.id = kTomb;
            size_--;
            return;
        }
    }
}

void InodeIndex::clear()
{
    slots_.clear();
    size_ = used_ = 0;
}

} // namespace holdfast::state
