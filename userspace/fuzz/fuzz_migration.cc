// SPDX-License-Identifier: GPL-2.0
// libFuzzer target: a migration state stream (state/migration.h) as a
// hostile or corrupted source would send it.  decode() must refuse what is
// wrong with a reason and never read outside the input; what it accepts
// must install into a fresh destination region serving the same root, land
// every record at its slot, and survive an encode/decode round trip
// unchanged.
#include "state/inode_table.h"
#include "state/migration.h"
#include "state/region.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/stat.h>

using namespace holdfast::state;

namespace {

constexpr uint64_t kCap = 256;

[[noreturn]] void fail(const char *what)
{
    fprintf(stderr, "fuzz_migration: %s\n", what);
    abort();
}

bool same(const MigrationState &a, const MigrationState &b)
{
    if (a.root_dev != b.root_dev || a.root_ino != b.root_ino || a.boot_id != b.boot_id ||
        a.inodes.size() != b.inodes.size() || a.handles.size() != b.handles.size() ||
        a.init.live != b.init.live || a.init.flags != b.init.flags)
        return false;
    for (size_t i = 0; i < a.inodes.size(); i++)
        if (a.inodes[i].nodeid != b.inodes[i].nodeid || a.inodes[i].handle != b.inodes[i].handle ||
            a.inodes[i].nlookup != b.inodes[i].nlookup)
            return false;
    for (size_t i = 0; i < a.handles.size(); i++)
        if (a.handles[i].fh != b.handles[i].fh || a.handles[i].nodeid != b.handles[i].nodeid)
            return false;
    return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    MigrationState s;
    std::string e = decode({data, size}, {kCap, kCap}, s);
    if (!e.empty())
        return 0;

    MigrationState again;
    if (!decode(encode(s), {kCap, kCap}, again).empty() || !same(s, again))
        fail("an accepted stream does not survive encode/decode");

    Region::Geometry g;
    g.inode_capacity = kCap;
    g.handle_capacity = kCap;
    Region r = Region::create(g);
    InodeRecord &root = r.inodes()[kRootNodeId];
    root.dev = s.root_dev;
    root.ino = s.root_ino;
    root.mode = S_IFDIR;
    root.nlookup.store(1);
    root.state.store(kLive);
    if (!install(s, r).empty())
        fail("a decoded stream for this root was not installed");
    for (const MigratedInode &n : s.inodes) {
        const InodeRecord &rec = r.inodes()[n.nodeid];
        if (rec.state.load() != kLive || rec.ino != n.ino || rec.handle_bytes != n.handle.size() ||
            (!n.handle.empty() && std::memcmp(rec.handle, n.handle.data(), n.handle.size()) != 0))
            fail("an inode record did not land at its slot");
    }
    for (const MigratedHandle &h : s.handles)
        if (r.handles()[h.fh].state.load() != kLive || r.handles()[h.fh].nodeid != h.nodeid)
            fail("a handle record did not land at its slot");
    return 0;
}
