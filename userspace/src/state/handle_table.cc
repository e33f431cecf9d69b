// SPDX-License-Identifier: GPL-2.0
#include "state/handle_table.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace holdfast::state {

HandleTable::HandleTable(Region &r)
    : hdr_(&r.header()), rec_(r.handles()), cap_(r.header().handle_capacity),
      objs_(std::make_unique<std::shared_ptr<Handle>[]>(cap_))
{
}

uint64_t HandleTable::add(std::shared_ptr<Handle> h)
{
    uint64_t slot;
    {
        std::lock_guard g(alloc_mu_);
        if (!free_.empty()) {
            slot = free_.back();
            free_.pop_back();
        } else if (next_ < cap_) {
            slot = next_++;
            hdr_->handle_high.store(next_, std::memory_order_release);
        } else {
            return 0;
        }
        live_++;
    }
    HandleRecord &r = rec_[slot];
    r.kind = h->dir ? kDir : kFile;
    r.nodeid = h->inode ? h->inode->nodeid : 0;
    r.open_flags = static_cast<uint32_t>(h->flags);
    r.opened_by = h->opened_by;
    r.backing_id = h->backing_id;
    r.reserved = 0;
    r.flags.store(0, std::memory_order_relaxed);
    h->fh = slot;
    {
        std::lock_guard s(stripes_[slot % kStripes]);
        objs_[slot] = std::move(h);
    }
    r.state.store(kLive, std::memory_order_release);
    return slot;
}

std::shared_ptr<Handle> HandleTable::peek(uint64_t fh) const
{
    if (fh == 0 || fh >= cap_)
        return nullptr;
    std::lock_guard s(stripes_[fh % kStripes]);
    return objs_[fh];
}

std::shared_ptr<Handle> HandleTable::get(uint64_t fh) const
{
    if (fh == 0 || fh >= cap_)
        return nullptr;
    std::lock_guard s(stripes_[fh % kStripes]);
    auto &o = objs_[fh];
    if (o || !lazy_)
        return o;
    if (fh >= hdr_->handle_high.load(std::memory_order_acquire) ||
        rec_[fh].state.load(std::memory_order_acquire) != kLive)
        return nullptr;
    o = resolver_(fh, rec_[fh]);
    if (o)
        o->fh = fh;
    return o;
}

void HandleTable::recover(Resolver resolver, uint64_t inode_capacity)
{
    std::lock_guard g(alloc_mu_);
    resolver_ = std::move(resolver);
    const uint64_t high = hdr_->handle_high.load(std::memory_order_acquire);
    free_.clear();
    live_ = 0;
    for (uint64_t fh = 1; fh < high; fh++) {
        const HandleRecord &r = rec_[fh];
        uint32_t st = r.state.load(std::memory_order_acquire);
        if (st == kFree) {
            free_.push_back(fh);
            continue;
        }
        if (st != kLive || (r.kind != kFile && r.kind != kDir) || r.nodeid == 0 ||
            r.nodeid >= inode_capacity)
            throw std::runtime_error("refusing state region: handle record " +
                                     std::to_string(fh) + " is corrupt");
        live_++;
    }
    next_ = high;
    std::reverse(free_.begin(), free_.end());
    lazy_ = true;
}

std::shared_ptr<Handle> HandleTable::remove(uint64_t fh)
{
    if (fh == 0 || fh >= cap_)
        return nullptr;
    std::shared_ptr<Handle> h;
    {
        std::lock_guard s(stripes_[fh % kStripes]);
        h = std::move(objs_[fh]);
        // After a restart a live handle may never have been reopened here:
        // it is released all the same (resolve it first so the caller can
        // undo what it holds).
        if (!h && lazy_ && fh < hdr_->handle_high.load(std::memory_order_acquire) &&
            rec_[fh].state.load(std::memory_order_acquire) == kLive) {
            h = resolver_(fh, rec_[fh]);
            if (!h) {
                h = std::make_shared<Handle>();
                h->dir = rec_[fh].kind == kDir;
            }
            h->fh = fh;
        }
    }
    if (!h)
        return nullptr;
    rec_[fh].state.store(kFree, std::memory_order_release);
    std::lock_guard g(alloc_mu_);
    free_.push_back(fh);
    live_--;
    return h;
}

size_t HandleTable::live() const
{
    std::lock_guard g(alloc_mu_);
    return live_;
}

} // namespace holdfast::state
