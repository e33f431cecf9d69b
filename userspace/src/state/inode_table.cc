// SPDX-License-Identifier: GPL-2.0
#include "state/inode_table.h"

#include <cstring>

namespace holdfast::state {

InodeTable::InodeTable(Region &r)
    : rec_(r.inodes()), cap_(r.header().inode_capacity),
      objs_(std::make_unique<std::shared_ptr<Inode>[]>(cap_))
{
}

void InodeTable::publish(uint64_t slot, std::shared_ptr<Inode> obj)
{
    std::lock_guard g(stripes_[slot % kStripes]);
    objs_[slot] = std::move(obj);
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
    index_[{obj->dev, obj->ino}] = kRootNodeId;
    live_++;
    publish(kRootNodeId, std::move(obj));
}

std::shared_ptr<Inode> InodeTable::get(uint64_t nodeid) const
{
    if (nodeid == 0 || nodeid >= cap_)
        return nullptr;
    std::lock_guard g(stripes_[nodeid % kStripes]);
    return objs_[nodeid];
}

std::shared_ptr<Inode> InodeTable::ref(Fd fd, const struct stat &st, const FileHandleBlob *fh)
{
    std::lock_guard g(index_mu_);
    auto it = index_.find({st.st_dev, st.st_ino});
    if (it != index_.end()) {
        uint64_t slot = it->second;
        rec_[slot].nlookup.fetch_add(1, std::memory_order_release);
        std::lock_guard s(stripes_[slot % kStripes]);
        return objs_[slot];
    }

    uint64_t slot;
    if (!free_.empty()) {
        slot = free_.back();
        free_.pop_back();
    } else if (next_ < cap_) {
        slot = next_++;
    } else {
        return nullptr;
    }

    InodeRecord &r = rec_[slot];
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

    auto obj = std::make_shared<Inode>();
    obj->nodeid = slot;
    obj->generation = gen;
    obj->mode = r.mode;
    obj->dev = r.dev;
    obj->ino = r.ino;
    obj->fd = std::move(fd);
    index_[{r.dev, r.ino}] = slot;
    live_++;
    publish(slot, obj);
    return obj;
}

void InodeTable::forget(uint64_t nodeid, uint64_t n)
{
    if (nodeid <= kRootNodeId || nodeid >= cap_)
        return;
    std::shared_ptr<Inode> dropped;
    {
        std::lock_guard g(index_mu_);
        InodeRecord &r = rec_[nodeid];
        if (r.state.load(std::memory_order_acquire) != kLive)
            return;
        uint64_t cur = r.nlookup.load(std::memory_order_relaxed);
        uint64_t left = n >= cur ? 0 : cur - n;
        r.nlookup.store(left, std::memory_order_release);
        if (left)
            return;
        r.state.store(kFree, std::memory_order_release);
        index_.erase({r.dev, r.ino});
        free_.push_back(nodeid);
        live_--;
        std::lock_guard s(stripes_[nodeid % kStripes]);
        dropped = std::move(objs_[nodeid]);
    }
    // The fd closes when the last in-flight user lets go, outside the locks.
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
