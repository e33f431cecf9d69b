// SPDX-License-Identifier: GPL-2.0
// Which kernel passthrough backing id each inode uses, and how many open
// handles use it.  The kernel refuses (EBUSY) a passthrough open whose
// backing file differs from the one the inode's other open files use, so
// all handles of an inode share one id, registered at the first open and
// unregistered at the last release.  The counts are not persisted: the
// handle records hold each handle's id, and a restarted server rebuilds
// this map from them (adopt()).  Pure bookkeeping: the caller does the
// registering and unregistering.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>

namespace holdfast::fs {

class BackingIds {
  public:
    // The id for one more handle on `nodeid`: the inode's id if it has one,
    // else what `reg` returns (a new id > 0, or -errno, or 0 for "do not
    // pass through").  `reg` runs under the lock, so concurrent opens of
    // one inode cannot register two ids.
    int acquire(uint64_t nodeid, const std::function<int()> &reg)
    {
        std::lock_guard g(mu_);
        auto it = map_.find(nodeid);
        if (it != map_.end()) {
            it->second.users++;
            return it->second.id;
        }
        int id = reg();
        if (id > 0)
            map_[nodeid] = {id, 1};
        return id;
    }

    // A handle that used `id` on `nodeid` is gone.  Returns the id to
    // unregister now (the last user went), or 0.  An id that does not match
    // the inode's was registered for that handle alone (see adopt()): it
    // goes with it.
    int32_t release(uint64_t nodeid, int32_t id)
    {
        if (id <= 0)
            return 0;
        std::lock_guard g(mu_);
        auto it = map_.find(nodeid);
        if (it == map_.end() || it->second.id != id)
            return in_use_locked(id) ? 0 : id;
        if (--it->second.users)
            return 0;
        map_.erase(it);
        return id;
    }

    // Rebuild: a live handle record of `nodeid` names `id`.  The first id
    // seen for an inode becomes its id; a different one (which our own
    // opens never make) is only counted by the handle that holds it.
    void adopt(uint64_t nodeid, int32_t id)
    {
        if (id <= 0)
            return;
        std::lock_guard g(mu_);
        auto [it, fresh] = map_.try_emplace(nodeid, Entry{id, 0});
        if (it->second.id == id)
            it->second.users++;
    }

    // Whether some live handle uses `id` (a crashed op's id is closed only
    // if not).
    bool in_use(int32_t id) const
    {
        std::lock_guard g(mu_);
        return in_use_locked(id);
    }

    // The kernel dropped every id (the connection's session ended).
    void clear()
    {
        std::lock_guard g(mu_);
        map_.clear();
    }

    size_t size() const
    {
        std::lock_guard g(mu_);
        return map_.size();
    }
    uint32_t users(uint64_t nodeid) const
    {
        std::lock_guard g(mu_);
        auto it = map_.find(nodeid);
        return it == map_.end() ? 0 : it->second.users;
    }

  private:
    struct Entry {
        int32_t id;
        uint32_t users;
    };
    bool in_use_locked(int32_t id) const
    {
        for (const auto &[n, e] : map_)
            if (e.id == id)
                return true;
        return false;
    }
    mutable std::mutex mu_;
    std::unordered_map<uint64_t, Entry> map_;
};

} // namespace holdfast::fs
