// SPDX-License-Identifier: GPL-2.0
#include "state/dax_table.h"

#include <stdexcept>
#include <string>

namespace holdfast::state {

DaxTable::DaxTable(Region &r) : area_(r.dax_area())
{
    if (area_)
        rec_ = reinterpret_cast<DaxRecord *>(reinterpret_cast<char *>(area_) + sizeof(DaxArea));
}

DaxMapping DaxTable::load(uint64_t slot) const
{
    const DaxRecord &r = rec_[slot];
    DaxMapping m;
    m.slot = slot;
    m.state = r.state.load(std::memory_order_acquire);
    m.writable = r.flags & kDaxWritable;
    m.win_offset = r.win_offset;
    m.len = r.len;
    m.nodeid = r.nodeid;
    m.file_offset = r.file_offset;
    return m;
}

void DaxTable::recover(uint64_t inode_capacity)
{
    index_.clear();
    free_.clear();
    const uint64_t high = area_->high.load(std::memory_order_acquire);
    const uint64_t window = area_->window_size;
    const uint64_t page = uint64_t(1) << area_->page_shift;
    auto bad = [](uint64_t slot, const std::string &why) {
        return std::runtime_error("refusing state region: DAX record " + std::to_string(slot) +
                                  " " + why);
    };
    for (uint64_t s = 0; s < high; s++) {
        const DaxRecord &r = rec_[s];
        uint32_t st = r.state.load(std::memory_order_acquire);
        if (st == kDaxFree) {
            free_.push_back(s);
            continue;
        }
        if (st > kDaxUnmapping)
            throw bad(s, "has an unknown state " + std::to_string(st));
        if (r.flags & ~uint32_t(kDaxWritable))
            throw bad(s, "has unknown flags");
        if (r.len == 0 || (r.win_offset | r.len | r.file_offset) & (page - 1))
            throw bad(s, "is empty or not page aligned");
        if (r.win_offset > window || r.len > window - r.win_offset)
            throw bad(s, "is not inside the window");
        if (r.file_offset > uint64_t(INT64_MAX) || r.len > uint64_t(INT64_MAX) - r.file_offset)
            throw bad(s, "has a file range that overflows");
        if (r.nodeid == 0 || r.nodeid >= inode_capacity)
            throw bad(s, "names node " + std::to_string(r.nodeid) + ", outside the inode table");
        auto next = index_.lower_bound(r.win_offset);
        if (next != index_.end() && next->first < r.win_offset + r.len)
            throw bad(s, "overlaps record " + std::to_string(next->second));
        if (next != index_.begin()) {
            auto prev = std::prev(next);
            if (rec_[prev->second].win_offset + rec_[prev->second].len > r.win_offset)
                throw bad(s, "overlaps record " + std::to_string(prev->second));
        }
        index_.emplace(r.win_offset, s);
    }
}

std::vector<DaxMapping> DaxTable::overlapping(uint64_t off, uint64_t len) const
{
    std::vector<DaxMapping> out;
    if (len == 0)
        return out;
    const uint64_t end = off + len < off ? UINT64_MAX : off + len;
    // Records do not overlap each other: at most one starts before `off`
    // and reaches into the range.
    auto it = index_.lower_bound(off);
    if (it != index_.begin()) {
        auto prev = std::prev(it);
        DaxMapping m = load(prev->second);
        if (m.end() > off)
            out.push_back(m);
    }
    for (; it != index_.end() && it->first < end; ++it)
        out.push_back(load(it->second));
    return out;
}

int64_t DaxTable::begin_map(uint64_t win_offset, uint64_t len, uint64_t nodeid,
                            uint64_t file_offset, bool writable)
{
    uint64_t slot;
    if (!free_.empty()) {
        slot = free_.back();
        free_.pop_back();
    } else {
        uint64_t high = area_->high.load(std::memory_order_relaxed);
        if (high >= area_->capacity)
            return -1;
        slot = high;
        // Raised before the record is written: a scan up to the mark sees
        // every record that can be used.
        area_->high.store(high + 1, std::memory_order_release);
    }
    DaxRecord &r = rec_[slot];
    r.flags = writable ? uint32_t(kDaxWritable) : 0u;
    r.win_offset = win_offset;
    r.len = len;
    r.nodeid = nodeid;
    r.file_offset = file_offset;
    r.state.store(kDaxPending, std::memory_order_release);
    index_.emplace(win_offset, slot);
    return int64_t(slot);
}

void DaxTable::publish(uint64_t slot)
{
    rec_[slot].state.store(kDaxLive, std::memory_order_release);
}

void DaxTable::begin_unmap(uint64_t slot)
{
    rec_[slot].state.store(kDaxUnmapping, std::memory_order_release);
}

void DaxTable::release(uint64_t slot)
{
    index_.erase(rec_[slot].win_offset);
    rec_[slot].state.store(kDaxFree, std::memory_order_release);
    free_.push_back(slot);
}

void DaxTable::clear()
{
    for (auto [off, slot] : index_) {
        (void)off;
        rec_[slot].state.store(kDaxFree, std::memory_order_release);
        free_.push_back(slot);
    }
    index_.clear();
}

} // namespace holdfast::state
