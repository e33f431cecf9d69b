// SPDX-License-Identifier: GPL-2.0
// What INIT settled, to and from the state region's InitRecord: a server
// persists it once, and a successor (or a fuzz harness simulating one)
// adopts it instead of waiting for an INIT the kernel never sends again.
#pragma once

#include "fuse/filesystem.h"
#include "state/layout.h"

namespace holdfast::daemon {

inline void persist_init(state::RegionHeader &h, const fuse::Negotiated &n)
{
    state::InitRecord &r = h.init;
    r.major = n.major;
    r.minor = n.minor;
    r.max_write = n.max_write;
    r.kernel_flags = n.kernel_flags;
    r.flags = n.flags;
    r.max_readahead = n.max_readahead;
    r.max_pages = n.max_pages;
    r.state.store(state::kLive, std::memory_order_release);
}

// Only meaningful when h.init.state is kLive.
inline fuse::Negotiated load_init(const state::RegionHeader &h)
{
    fuse::Negotiated n;
    const state::InitRecord &r = h.init;
    n.major = r.major;
    n.minor = r.minor;
    n.max_write = r.max_write;
    n.kernel_flags = r.kernel_flags;
    n.flags = r.flags;
    n.max_readahead = r.max_readahead;
    n.max_pages = r.max_pages;
    n.done = true;
    return n;
}

} // namespace holdfast::daemon
