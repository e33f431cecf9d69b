// SPDX-License-Identifier: GPL-2.0
#include "state/journal.h"

namespace holdfast::state {

namespace {
struct ThreadSlot {
    uint64_t owner = 0; // Journal::id_, never reused (an address may be)
    JournalRecord *rec = nullptr;
};
thread_local ThreadSlot t_slot;
std::atomic<uint64_t> g_next_id{1};
} // namespace

Journal::Journal(Region &r)
    : region_(r), rec_(r.journal()), refs_area_(r.ref_area()), refs_(r.ref_lists()),
      cap_(r.header().journal_capacity), id_(g_next_id.fetch_add(1, std::memory_order_relaxed))
{
}

JournalRecord &Journal::mine()
{
    if (t_slot.owner != id_) {
        uint64_t n = region_.header().journal_next.fetch_add(1, std::memory_order_acq_rel);
        t_slot.owner = id_;
        t_slot.rec = &rec_[n % cap_];
    }
    return *t_slot.rec;
}

RefList *Journal::my_refs()
{
    return refs_ ? &refs_[&mine() - rec_] : nullptr;
}

JournalRecord &Journal::open_record(uint32_t opcode, uint64_t unique, uint64_t u64)
{
    JournalRecord &r = mine();
    // Empty first, so a half-written record is never read as complete.
    r.phase.store(kJournalEmpty, std::memory_order_release);
    r.opcode = opcode;
    r.unique = unique;
    r.error = 0;
    r.u32 = 0;
    r.nodeid = 0;
    r.fh = 0;
    r.u64 = u64;
    // No reference list unless begin_refs() starts one: seq 0 says so.
    if (RefList *l = my_refs()) {
        l->seq = 0;
        l->count.store(0, std::memory_order_relaxed);
    }
    return r;
}

void Journal::begin(uint32_t opcode, uint64_t unique, uint64_t u64)
{
    open_record(opcode, unique, u64).phase.store(kJournalStarted, std::memory_order_release);
}

bool Journal::begin_refs(uint32_t opcode, uint64_t unique, std::span<const uint64_t> carried)
{
    if (!refs_ || carried.size() > kRefsPerList)
        return false;
    JournalRecord &r = open_record(opcode, unique, 0);
    RefList &l = *my_refs();
    l.seq = refs_area_->next_seq.fetch_add(1, std::memory_order_relaxed);
    for (size_t i = 0; i < carried.size(); i++)
        l.ids[i].store(carried[i], std::memory_order_relaxed);
    l.count.store(uint32_t(carried.size()), std::memory_order_relaxed);
    r.phase.store(kJournalStarted, std::memory_order_release);
    return true;
}

bool Journal::add_ref(uint64_t unique, uint64_t nodeid)
{
    RefList *l = my_refs();
    JournalRecord &r = mine();
    if (!l || r.phase.load(std::memory_order_acquire) != kJournalStarted || r.unique != unique ||
        !l->seq)
        return false;
    uint32_t n = l->count.load(std::memory_order_relaxed);
    if (n >= kRefsPerList)
        return false;
    l->ids[n].store(nodeid, std::memory_order_relaxed);
    l->count.store(n + 1, std::memory_order_release);
    return true;
}

size_t Journal::ref_room()
{
    RefList *l = my_refs();
    if (!l || !l->seq)
        return 0;
    uint32_t n = l->count.load(std::memory_order_relaxed);
    return n >= kRefsPerList ? 0 : kRefsPerList - n;
}

void Journal::drop_ref(size_t i)
{
    if (RefList *l = my_refs(); l && i < kRefsPerList)
        l->ids[i].store(0, std::memory_order_release);
}

void Journal::clear_refs()
{
    if (RefList *l = my_refs())
        l->count.store(0, std::memory_order_release);
}

void Journal::note(uint64_t unique, uint32_t u32)
{
    JournalRecord &r = mine();
    if (r.phase.load(std::memory_order_acquire) != kJournalStarted || r.unique != unique)
        return;
    std::atomic_ref<uint32_t>(r.u32).store(u32, std::memory_order_release);
}

void Journal::done(int error, uint64_t nodeid, uint64_t fh, uint32_t u32)
{
    JournalRecord &r = mine();
    r.error = error;
    r.nodeid = nodeid;
    r.fh = fh;
    r.u32 = u32;
    r.phase.store(kJournalDone, std::memory_order_release);
}

size_t Journal::load_previous()
{
    std::lock_guard g(mu_);
    previous_.clear();
    for (uint64_t i = 0; i < cap_; i++) {
        const JournalRecord &r = rec_[i];
        uint32_t phase = r.phase.load(std::memory_order_acquire);
        if (phase != kJournalStarted && phase != kJournalDone)
            continue;
        JournalEntry e{phase, r.opcode, r.unique, r.error, r.u32, r.nodeid, r.fh, r.u64};
        if (refs_ && refs_[i].seq) {
            // The region may be corrupt: never past the list's end.
            const RefList &l = refs_[i];
            e.seq = l.seq;
            uint32_t n = l.count.load(std::memory_order_acquire);
            for (uint32_t k = 0; k < n && k < kRefsPerList; k++)
                if (uint64_t id = l.ids[k].load(std::memory_order_relaxed))
                    e.refs.push_back(id);
        }
        // The same unique can be in two records when a resent READDIRPLUS
        // was begun again (the later list carries the earlier's references:
        // it wins), or when one is stale from before: the later (done)
        // state wins.
        auto it = previous_.find(e.unique);
        if (it == previous_.end() ||
            ((e.seq || it->second.seq) ? e.seq > it->second.seq : e.phase > it->second.phase))
            previous_[e.unique] = std::move(e);
    }
    return previous_.size();
}

std::optional<JournalEntry> Journal::take(uint64_t unique)
{
    std::lock_guard g(mu_);
    auto it = previous_.find(unique);
    if (it == previous_.end())
        return std::nullopt;
    JournalEntry e = it->second;
    previous_.erase(it);
    return e;
}

size_t Journal::pending() const
{
    std::lock_guard g(mu_);
    return previous_.size();
}

void Journal::clear()
{
    std::lock_guard g(mu_);
    previous_.clear();
    for (uint64_t i = 0; i < cap_; i++)
        if (rec_[i].phase.load(std::memory_order_relaxed) != kJournalEmpty)
            rec_[i].phase.store(kJournalEmpty, std::memory_order_release);
}

} // namespace holdfast::state
