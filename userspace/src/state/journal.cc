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
    : region_(r), rec_(r.journal()), cap_(r.header().journal_capacity),
      id_(g_next_id.fetch_add(1, std::memory_order_relaxed))
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

void Journal::begin(uint32_t opcode, uint64_t unique, uint64_t u64)
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
    r.phase.store(kJournalStarted, std::memory_order_release);
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
        // The same unique can't be in two records unless one is stale from
        // before: the later (done) state wins.
        auto it = previous_.find(e.unique);
        if (it == previous_.end() || e.phase > it->second.phase)
            previous_[e.unique] = e;
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

} // namespace holdfast::state
