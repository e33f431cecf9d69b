// SPDX-License-Identifier: GPL-2.0
#include "state/handle_table.h"

namespace holdfast::state {

HandleTable::HandleTable(Region &r)
    : rec_(r.handles()), cap_(r.header().handle_capacity),
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
        } else {
            return 0;
        }
        live_++;
    }
    HandleRecord &r = rec_[slot];
    r.kind = h->dir ? kDir : kFile;
    r.nodeid = h->inode ? h->inode->nodeid : 0;
    r.open_flags = static_cast<uint32_t>(h->flags);
    h->fh = slot;
    {
        std::lock_guard s(stripes_[slot % kStripes]);
        objs_[slot] = std::move(h);
    }
    r.state.store(kLive, std::memory_order_release);
    return slot;
}

std::shared_ptr<Handle> HandleTable::get(uint64_t fh) const
{
    if (fh == 0 || fh >= cap_)
        return nullptr;
    std::lock_guard s(stripes_[fh % kStripes]);
    return objs_[fh];
}

std::shared_ptr<Handle> HandleTable::remove(uint64_t fh)
{
    if (fh == 0 || fh >= cap_)
        return nullptr;
    std::shared_ptr<Handle> h;
    {
        std::lock_guard s(stripes_[fh % kStripes]);
        h = std::move(objs_[fh]);
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
