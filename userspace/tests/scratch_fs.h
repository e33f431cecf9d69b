// SPDX-License-Identifier: GPL-2.0
// A passthrough filesystem over an existing directory, with fresh tables
// in a region of its own, for tests that call it directly (no engine, no
// transport, the caller's own credentials).
#pragma once

#include "fs/passthrough.h"
#include "state/region.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace holdfast::test {

struct ScratchFs {
    std::string dir;
    std::optional<state::Region> region;
    std::unique_ptr<state::InodeTable> inodes;
    std::unique_ptr<state::HandleTable> handles;
    std::unique_ptr<fs::Passthrough> pfs;
    uint64_t next = 10; // the unique of the next request

    // `o`: options but the directory and credentials.
    explicit ScratchFs(std::string d, fs::Options o = {}) : dir(std::move(d))
    {
        region.emplace(state::Region::create({64, 16, 4}));
        inodes = std::make_unique<state::InodeTable>(*region);
        handles = std::make_unique<state::HandleTable>(*region);
        o.shared_dir = dir;
        o.switch_creds = false;
        pfs = std::make_unique<fs::Passthrough>(o, *inodes, *handles);
        pfs->start_fresh();
    }
    // LOOKUP `name` in `parent`: 0 and `e`, or the error.
    int lookup(uint64_t parent, const char *name, fuse_entry_out &e)
    {
        e = {};
        fuse::Ctx c{next++, parent, FUSE_LOOKUP, 0, 0, 0, false};
        return pfs->lookup(c, name, e);
    }
    // OPEN `node` with `flags`: 0 and `out`, or the error.
    int open(uint64_t node, int flags, fuse_open_out &out)
    {
        fuse_open_in in{};
        in.flags = uint32_t(flags);
        out = {};
        fuse::Ctx c{next++, node, FUSE_OPEN, 0, 0, 0, false};
        return pfs->open(c, in, out);
    }
};

} // namespace holdfast::test
