// SPDX-License-Identifier: GPL-2.0
#include "state/inode_table.h"

#include <algorithm>
#include <sys/mman.h>
#include <cstring>
#include <stdexcept>
#include <string>

namespace holdfast::state {

InodeTable::InodeTable(Region &r)
    : hdr_(&r.header()), rec_(r.inodes()), cap_(r.header().inode_capacity),
      objs_(std::make_unique<std::shared_ptr<Inode>[]>(cap_))
{
}

void InodeTable::publish(uint64_t slot, std::shared_ptr<Inode> obj)
{
    {
        std::lock_guard g(stripes_[slot % kStripes]);
        if (!objs_[slot] && obj)
            resolved_.fetch_add(1, std::memory_order_relaxed);
        objs_[slot] = std::move(obj);
    }
    if (resolved_.load(std::memory_order_relaxed) > max_open_)
        evict_some();
}

void InodeTable::set_resolver(Resolver r, size_t max_open)
{
    std::lock_guard g(index_mu_);
    resolver_ = std::move(r);
    max_open_ = max_open < 64 ? 64 : max_open;
    lazy_ = true;
}

bool InodeTable::evictable(uint64_t slot) const
{
    const auto &o = objs_[slot];
    if (!o || o.use_count() != 1)
        return false;
    const InodeRecord &r = rec_[slot];
    if (!r.handle_bytes || (r.flags & kInodeFdStored))
        return false; // nothing else could bring it back
    if (o->open_count.load(std::memory_order_relaxed))
        return false;
    std::unique_lock l(o->lock_mu, std::try_to_lock);
    return l.owns_lock() && o->lock_fds.empty();
}

void InodeTable::evict_some() const
{
    std::unique_lock e(evict_mu_, std::try_to_lock);
    if (!e.owns_lock())
        return; // someone else is at it
    uint64_t high = hdr_->inode_high.load(std::memory_order_acquire);
    size_t target = max_open_ - max_open_ / 8; // leave room before the next round
    for (uint64_t scanned = 0; scanned < high && resolved_.load() > target; scanned++) {
        if (++clock_hand_ >= high)
            clock_hand_ = kRootNodeId + 1;
        uint64_t s = clock_hand_;
        std::shared_ptr<Inode> dropped;
        {
            std::lock_guard g(stripes_[s % kStripes]);
            if (!evictable(s))
                continue;
            dropped = std::move(objs_[s]);
            resolved_.fetch_sub(1, std::memory_order_relaxed);
        }
    }
}

void InodeTable::set_root(Fd fd, const struct stat &st)
{
    auto obj = std::make_shared<Inode>();
    obj->nodeid = kRootNodeId;
    obj->mode = st.st_mode & S_IFMT;
    obj->dev = st.st_dev;
    obj->ino = st.st_ino;
    obj->fd = std::move(fd);

    std::lock_guard g(index_mu_);
    InodeRecord &r = rec_[kRootNodeId];
    r.generation = 0;
    r.dev = st.st_dev;
    r.ino = st.st_ino;
    r.mode = obj->mode;
    r.handle_bytes = 0;
    // The kernel never forgets the root; its count only documents that.
    r.nlookup.store(1, std::memory_order_relaxed);
    r.state.store(kLive, std::memory_order_release);
    index_.insert(obj->dev, obj->ino, kRootNodeId);
    live_++;
    publish(kRootNodeId, std::move(obj));
}

bool InodeTable::same_object(const InodeRecord &r, const struct stat &st,
                             const FileHandleBlob *fh)
{
    if ((r.mode & S_IFMT) != (st.st_mode & S_IFMT))
        return false;
    // A file handle carries a generation number: it tells a reused inode
    // number from the object we knew, where (dev, ino) cannot.
    if (fh && fh->bytes && r.handle_bytes)
        return r.handle_type == fh->type && r.handle_bytes == fh->bytes &&
               memcmp(r.handle, fh->data, fh->bytes) == 0;
    return true;
}

std::shared_ptr<Inode> InodeTable::make_obj(uint64_t slot, Fd fd) const
{
    const InodeRecord &r = rec_[slot];
    auto obj = std::make_shared<Inode>();
    obj->nodeid = slot;
    obj->generation = r.generation;
    obj->mode = r.mode;
    obj->dev = r.dev;
    obj->ino = r.ino;
    obj->fd = std::move(fd);
    return obj;
}

std::shared_ptr<Inode> InodeTable::peek(uint64_t nodeid) const
{
    if (nodeid == 0 || nodeid >= cap_)
        return nullptr;
    std::lock_guard g(stripes_[nodeid % kStripes]);
    return objs_[nodeid];
}

std::shared_ptr<Inode> InodeTable::get(uint64_t nodeid) const
{
    if (nodeid == 0 || nodeid >= cap_)
        return nullptr;
    std::shared_ptr<Inode> obj;
    bool over;
    {
        std::lock_guard g(stripes_[nodeid % kStripes]);
        auto &o = objs_[nodeid];
        if (o || !lazy_)
            return o;
        // Not open in this process: after a restart, or evicted to stay
        // within the fd budget.  The record says whether it is still live;
        // past the high-water mark no record was ever validated (recover()
        // checks only below it), so none is trusted there.
        if (nodeid >= hdr_->inode_high.load(std::memory_order_acquire) ||
            rec_[nodeid].state.load(std::memory_order_acquire) != kLive)
            return nullptr;
        Fd fd = resolver_(nodeid, rec_[nodeid]);
        if (!fd)
            return nullptr;
        o = make_obj(nodeid, std::move(fd));
        obj = o;
        over = resolved_.fetch_add(1, std::memory_order_relaxed) + 1 > max_open_;
    }
    if (over)
        evict_some();
    return obj;
}

void InodeTable::set_record_flags(uint64_t nodeid, uint32_t flags)
{
    if (nodeid > 0 && nodeid < cap_)
        __atomic_store_n(&rec_[nodeid].flags, flags, __ATOMIC_RELAXED);
}

void InodeTable::rebind(uint64_t nodeid, const struct stat &st, const FileHandleBlob *fh)
{
    if (nodeid <= kRootNodeId || nodeid >= cap_)
        return;
    InodeRecord &r = rec_[nodeid];
    r.dev = uint64_t(st.st_dev);
    r.ino = uint64_t(st.st_ino);
    r.mnt_id = 0;
    r.handle_type = fh ? fh->type : 0;
    r.handle_bytes = fh ? fh->bytes : 0;
    if (fh && fh->bytes)
        memcpy(r.handle, fh->data, fh->bytes);
}

void InodeTable::recover(Fd root_fd, Resolver resolver)
{
    std::lock_guard g(index_mu_);
    resolver_ = std::move(resolver);
    const uint64_t high = hdr_->inode_high.load(std::memory_order_acquire);
    index_.clear();
    index_.reserve(high);
    // Fault the used part of the table in with one call rather than one
    // page fault per 21 records.
    madvise(reinterpret_cast<char *>(rec_) - (reinterpret_cast<uintptr_t>(rec_) & 4095),
            high * sizeof(InodeRecord) + (reinterpret_cast<uintptr_t>(rec_) & 4095),
            MADV_POPULATE_READ);
    free_.clear();
    live_ = 0;
    constexpr uint64_t kAhead = 16;
    for (uint64_t slot = kRootNodeId; slot < high; slot++) {
        if (slot + kAhead < high) {
            const InodeRecord &ahead = rec_[slot + kAhead];
            index_.prefetch(ahead.dev, ahead.ino);
        }
        InodeRecord &r = rec_[slot];
        uint32_t st = r.state.load(std::memory_order_acquire);
        if (st == kFree) {
            if (slot != kRootNodeId)
                free_.push_back(slot);
            continue;
        }
        if (st != kLive || r.handle_bytes > kMaxFileHandle || (r.mode & ~uint32_t(S_IFMT)) ||
            !r.mode)
            throw std::runtime_error("refusing state region: inode record " +
                                     std::to_string(slot) + " is corrupt");
        // Two live slots with one identity: the host reused an inode number
        // while the kernel still held the old node id.  The newer slot is
        // indexed; a lookup that finds the wrong object corrects it (ref()).
        uint64_t prev = index_.find(r.dev, r.ino);
        if (prev != InodeIndex::kNone && rec_[prev].generation <= r.generation)
            index_.erase(r.dev, r.ino);
        index_.insert(r.dev, r.ino, slot);
        live_++;
    }
    next_ = high;
    // Hand out low slots first, like a fresh table would.
    std::reverse(free_.begin(), free_.end());
    lazy_ = true;
    publish(kRootNodeId, make_obj(kRootNodeId, std::move(root_fd)));
}

std::shared_ptr<Inode> InodeTable::ref(Fd fd, const struct stat &st, const FileHandleBlob *fh)
{
    std::lock_guard g(index_mu_);
    uint64_t slot = index_.find(st.st_dev, st.st_ino);
    if (slot != InodeIndex::kNone && !same_object(rec_[slot], st, fh)) {
        // The host reused the inode number of an object we still have a
        // (stale) slot for: the kernel may still name that slot, so it
        // stays live, but the identity now belongs to a new slot.
        index_.erase(st.st_dev, st.st_ino);
        slot = InodeIndex::kNone;
    }
    if (slot != InodeIndex::kNone) {
        rec_[slot].nlookup.fetch_add(1, std::memory_order_release);
        std::lock_guard s(stripes_[slot % kStripes]);
        // After a restart the slot may not be open here yet: the fd the
        // caller just opened is as good as any.
        if (!objs_[slot]) {
            objs_[slot] = make_obj(slot, std::move(fd));
            resolved_.fetch_add(1, std::memory_order_relaxed);
        }
        return objs_[slot];
    }

    if (!free_.empty()) {
        slot = free_.back();
        free_.pop_back();
    } else if (next_ < cap_) {
        slot = next_++;
        hdr_->inode_high.store(next_, std::memory_order_release);
    } else {
        return nullptr;
    }

    InodeRecord &r = rec_[slot];
    // forget() of the slot's previous inode may read them without the lock.
    __atomic_store_n(&r.flags, 0u, __ATOMIC_RELAXED);
    uint32_t gen = r.generation + 1;
    r.generation = gen;
    r.dev = st.st_dev;
    r.ino = st.st_ino;
    r.mnt_id = 0;
    r.mode = st.st_mode & S_IFMT;
    if (fh && fh->bytes && fh->bytes <= kMaxFileHandle) {
        r.handle_type = fh->type;
        r.handle_bytes = fh->bytes;
        std::memcpy(r.handle, fh->data, fh->bytes);
    } else {
        r.handle_bytes = 0;
    }
    r.nlookup.store(1, std::memory_order_relaxed);
    r.state.store(kLive, std::memory_order_release);

    auto obj = make_obj(slot, std::move(fd));
    index_.insert(r.dev, r.ino, slot);
    live_++;
    publish(slot, obj);
    return obj;
}

std::shared_ptr<Inode> InodeTable::ref_open(const struct stat &st)
{
    std::lock_guard g(index_mu_);
    uint64_t slot = index_.find(st.st_dev, st.st_ino);
    if (slot == InodeIndex::kNone || (rec_[slot].mode & S_IFMT) != (st.st_mode & S_IFMT))
        return nullptr;
    std::lock_guard s(stripes_[slot % kStripes]);
    if (!objs_[slot])
        return nullptr; // after a restart or an eviction: only a handle tells
    rec_[slot].nlookup.fetch_add(1, std::memory_order_release);
    return objs_[slot];
}

std::shared_ptr<Inode> InodeTable::find(uint64_t dev, uint64_t ino) const
{
    uint64_t slot;
    {
        std::lock_guard g(index_mu_);
        slot = index_.find(dev, ino);
        if (slot == InodeIndex::kNone)
            return nullptr;
    }
    return get(slot);
}

bool InodeTable::forget(uint64_t nodeid, uint64_t n)
{
    if (nodeid <= kRootNodeId || nodeid >= cap_)
        return false;
    std::shared_ptr<Inode> dropped;
    {
        std::lock_guard g(index_mu_);
        InodeRecord &r = rec_[nodeid];
        if (r.state.load(std::memory_order_acquire) != kLive)
            return false;
        uint64_t cur = r.nlookup.load(std::memory_order_relaxed);
        uint64_t left = n >= cur ? 0 : cur - n;
        r.nlookup.store(left, std::memory_order_release);
        if (left)
            return false;
        r.state.store(kFree, std::memory_order_release);
        // Only our own entry: a reused inode number may map to a newer slot.
        if (index_.find(r.dev, r.ino) == nodeid)
            index_.erase(r.dev, r.ino);
        free_.push_back(nodeid);
        live_--;
        std::lock_guard s(stripes_[nodeid % kStripes]);
        dropped = std::move(objs_[nodeid]);
        if (dropped)
            resolved_.fetch_sub(1, std::memory_order_relaxed);
    }
    // The fd closes when the last in-flight user lets go, outside the locks.
    return true;
}

size_t InodeTable::live() const
{
    std::lock_guard g(index_mu_);
    return live_;
}

uint64_t InodeTable::nlookup(uint64_t nodeid) const
{
    if (nodeid == 0 || nodeid >= cap_)
        return 0;
    return rec_[nodeid].nlookup.load(std::memory_order_acquire);
}

} // namespace holdfast::state
