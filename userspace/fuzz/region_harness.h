// SPDX-License-Identifier: GPL-2.0
// fuzz_region's harness: a real state region, corrupted, then attached and
// recovered the way a restarted holdfastd does.  Attach must refuse it with
// std::runtime_error or hand back tables that are consistent and stay
// inside the mapping; nothing may crash or read out of bounds.
//
// The template region is made once per process by a real Passthrough over
// a small directory (inside the sandbox): a root, looked-up files and
// directories with real file handles, a freed slot, open file and directory
// handles, journal records (one with a READDIRPLUS reference list) and a
// settled INIT record.  Its io_uring entry table is small, so that every
// table, the DAX area and the reference lists included, lies within the
// first 64 KiB the corruptions reach.
//
// Input format:
//   byte 0   memfd size: the template's size + int8(byte 0) * 64
//   byte 1   bit0: recover through Passthrough::recover (file handles are
//            opened for real) instead of bare InodeTable/HandleTable::recover
//   then 11-byte corruptions: u16le offset (mod size), u8 kind, u64le value
//            kind%4: 0 xor a byte, 1 store a u64, 2 store a u32, 3 xor a u64
// Shared by the libFuzzer target and the GoogleTest regression test.
#pragma once

#include "sandbox.h"

#include "fs/passthrough.h"
#include "state/dax_table.h"
#include "state/handle_table.h"
#include "state/inode_table.h"
#include "state/journal.h"
#include "state/region.h"
#include "util/log.h"

#include <dirent.h>
#include <stdexcept>
#include <string>
#include <sys/mman.h>
#include <vector>

namespace holdfast::fuzz {

class RegionHarness {
  public:
    // Outside jail/ and outside/ (scratch.h leaves this name alone).
    static constexpr const char *kDir = "/region";

    RegionHarness() : sb_(Sandbox::get())
    {
        log::set_level(getenv("HOLDFAST_FUZZ_LOG") ? log::Level::debug
                                                   : static_cast<log::Level>(-1));
        std::string err;
        sb_.run([&] { err = make_template(); });
        if (!err.empty()) {
            fprintf(stderr, "fuzz_region: cannot build the template region: %s\n", err.c_str());
            abort();
        }
    }

    size_t template_size() const { return tmpl_.size(); }

    std::string run(const uint8_t *data, size_t size)
    {
        std::string err;
        sb_.run([&] { err = run_in_sandbox(data, size); });
        return err;
    }

  private:
    std::string make_template()
    {
        std::string dir = sb_.path(kDir);
        mkdir(dir.c_str(), 0755);
        int d = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d < 0)
            return "open " + dir + ": " + strerror(errno);
        for (const char *f : {"a", "b", "c"}) {
            int fd = openat(d, f, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd >= 0)
                close(fd);
        }
        mkdirat(d, "sub", 0755);
        symlinkat("a", d, "lnk");
        close(d);

        state::Region::Geometry g;
        g.inode_capacity = 16;
        g.handle_capacity = 8;
        g.journal_capacity = 4;
        g.uring_capacity = 16;
        g.dax_window = 4ull << 20; // after every other table but the reference lists
        state::Region region = state::Region::create(g);
        {
            // DAX mappings: live, pending (a crash before the ack), freed.
            state::DaxTable dax(region);
            dax.publish(uint64_t(dax.begin_map(0, 2 << 20, 2, 0, false)));
            dax.begin_map(2 << 20, 4096, 3, 1 << 20, true);
            dax.release(uint64_t(dax.begin_map(3 << 20, 8192, 2, 0, false)));
        }
        {
            state::InodeTable inodes(region);
            state::HandleTable handles(region);
            state::Journal journal(region);
            fs::Options o;
            o.shared_dir = dir;
            o.switch_creds = false;
            fs::Passthrough pfs(o, inodes, handles, {&journal, nullptr});
            pfs.start_fresh();
            fuse::Ctx ctx{100, 1, FUSE_LOOKUP, 0, 0, 0, false};
            fuse_entry_out e{};
            uint64_t ids[5] = {};
            const char *names[5] = {"a", "b", "c", "sub", "lnk"};
            for (int i = 0; i < 5; i++) {
                ctx.unique++;
                if (pfs.lookup(ctx, names[i], e) != 0)
                    return std::string("lookup ") + names[i] + " failed";
                ids[i] = e.nodeid;
            }
            pfs.lookup(ctx, "a", e); // nlookup 2
            pfs.forget(ids[1], 1);   // a free slot between live ones
            fuse_open_in oi{};
            fuse_open_out oo{};
            oi.flags = O_RDWR;
            ctx = {200, ids[0], FUSE_OPEN, 0, 0, 0, false};
            if (pfs.open(ctx, oi, oo) != 0)
                return "open a failed";
            ctx = {201, ids[2], FUSE_OPEN, 0, 0, 0, false};
            pfs.open(ctx, oi, oo);
            fuse_release_in ri{};
            ri.fh = oo.fh;
            ctx = {202, ids[2], FUSE_RELEASE, 0, 0, 0, false};
            pfs.release(ctx, ri, false); // a free handle slot
            ctx = {203, ids[3], FUSE_OPENDIR, 0, 0, 0, false};
            if (pfs.opendir(ctx, oi, oo) != 0)
                return "opendir sub failed";
            journal.begin(FUSE_MKDIR, 300); // started, never finished
            // A READDIRPLUS that counted two entries, one given back since
            // (another Journal: this thread takes a second record).
            state::Journal rdplus(region);
            const uint64_t carried[] = {ids[0], ids[2]};
            if (!rdplus.begin_refs(FUSE_READDIRPLUS, 301, carried))
                return "the template region has no READDIRPLUS reference lists";
            rdplus.drop_ref(0);
            rdplus.add_ref(301, ids[3]);
            auto &init = region.header().init;
            init.major = 7;
            init.minor = 40;
            init.max_write = 1 << 20;
            init.flags = FUSE_ASYNC_READ | FUSE_POSIX_LOCKS;
            init.kernel_flags = init.flags | (1ull << 39);
            init.max_pages = 256;
            init.state.store(state::kLive);
        }
        tmpl_.resize(region.size());
        memcpy(tmpl_.data(), &region.header(), region.size());
        return "";
    }

    static int count_fds()
    {
        int n = 0;
        if (DIR *d = opendir("/proc/self/fd")) {
            while (readdir(d))
                n++;
            closedir(d);
        }
        return n;
    }

    std::string run_in_sandbox(const uint8_t *data, size_t size)
    {
        std::vector<uint8_t> img = tmpl_;
        long want = long(tmpl_.size()) + (size ? long(int8_t(data[0])) * 64 : 0);
        img.resize(size_t(want < 0 ? 0 : want), 0);
        const bool via_fs = size > 1 && (data[1] & 1);
        for (size_t pos = 2; pos + 11 <= size && !img.empty(); pos += 11) {
            size_t off = (size_t(data[pos]) | size_t(data[pos + 1]) << 8) % img.size();
            uint8_t kind = data[pos + 2] % 4;
            uint64_t v;
            memcpy(&v, data + pos + 3, 8);
            size_t w = kind == 0 ? 1 : kind == 2 ? 4 : 8;
            if (off + w > img.size())
                off = img.size() - std::min(w, img.size());
            w = std::min(w, img.size());
            uint8_t cur[8];
            memcpy(cur, img.data() + off, w);
            for (size_t i = 0; i < w; i++) {
                uint8_t b = uint8_t(v >> (8 * i));
                cur[i] = (kind == 0 || kind == 3) ? cur[i] ^ b : b;
            }
            memcpy(img.data() + off, cur, w);
        }

        const int fds_before = count_fds();
        std::string err = attach_and_recover(img, via_fs);
        if (!err.empty())
            return err;
        int fds_after = count_fds();
        if (fds_after != fds_before)
            return "fd leak: " + std::to_string(fds_before) + " fds before, " +
                   std::to_string(fds_after) + " after";
        return "";
    }

    std::string attach_and_recover(const std::vector<uint8_t> &img, bool via_fs)
    {
        Fd memfd(memfd_create("holdfast-fuzz-region", MFD_CLOEXEC));
        if (!memfd)
            return std::string("memfd_create: ") + strerror(errno);
        if (ftruncate(memfd.get(), off_t(img.size())) < 0 ||
            (img.size() && pwrite(memfd.get(), img.data(), img.size(), 0) != ssize_t(img.size())))
            return std::string("fill memfd: ") + strerror(errno);
        try {
            state::Region r = state::Region::attach(std::move(memfd));
            std::string err = check_layout(r);
            if (err.empty())
                err = check_dax(r);
            if (!err.empty())
                return err;
            return recover(r, via_fs);
        } catch (const std::runtime_error &) {
            return ""; // refused, with a message: what a corrupt region must get
        }
    }

    // The validator's promise, rechecked without overflow: every table the
    // server will index lies inside the mapping, in order.
    static std::string check_layout(state::Region &r)
    {
        const auto &h = r.header();
        using u128 = unsigned __int128;
        u128 size = r.size();
        u128 iend = u128(h.inode_offset) + u128(h.inode_capacity) * sizeof(state::InodeRecord);
        u128 hend = u128(h.handle_offset) + u128(h.handle_capacity) * sizeof(state::HandleRecord);
        u128 jend =
            u128(h.journal_offset) + u128(h.journal_capacity) * sizeof(state::JournalRecord);
        if (iend > size || hend > size || jend > size)
            return "Region::attach accepted tables that end past the region (inode end " +
                   std::to_string(uint64_t(iend)) + ", handle end " +
                   std::to_string(uint64_t(hend)) + ", journal end " +
                   std::to_string(uint64_t(jend)) + ", size " + std::to_string(r.size()) + ")";
        if (h.inode_offset < sizeof(state::RegionHeader) || u128(h.handle_offset) < iend ||
            u128(h.journal_offset) < hend)
            return "Region::attach accepted overlapping tables";
        if (h.inode_capacity < 2 || h.inode_high.load() > h.inode_capacity ||
            h.handle_high.load() > h.handle_capacity || h.journal_capacity == 0)
            return "Region::attach accepted capacities or high-water marks out of range";
        if (h.refs_offset) {
            u128 rend = u128(h.refs_offset) + sizeof(state::RefArea) +
                        u128(h.journal_capacity) * sizeof(state::RefList);
            if (rend > size || u128(h.refs_offset) < jend ||
                r.ref_area()->capacity != h.journal_capacity)
                return "Region::attach accepted READDIRPLUS reference lists that do not fit";
        }
        return "";
    }

    // The DAX area Region::attach accepted lies inside the region; the
    // records DaxTable::recover() accepts (it throws for the rest) are
    // inside the window and do not overlap; the table then still works.
    static std::string check_dax(state::Region &r)
    {
        const auto &h = r.header();
        if (!h.dax_offset)
            return "";
        using u128 = unsigned __int128;
        state::DaxTable t(r);
        if (!t.valid())
            return "a region with a DAX offset has no DAX table";
        const u128 end = u128(h.dax_offset) + sizeof(state::DaxArea) +
                         u128(t.capacity()) * sizeof(state::DaxRecord);
        if (end > r.size() || h.dax_offset + h.dax_bytes > r.size())
            return "Region::attach accepted a DAX table that ends past the region";
        t.recover(h.inode_capacity);
        uint64_t prev_end = 0;
        for (const auto &m : t.all()) {
            if (m.win_offset < prev_end || m.len == 0 || m.win_offset + m.len > t.window() ||
                m.nodeid == 0 || m.nodeid >= h.inode_capacity)
                return "DaxTable::recover accepted record " + std::to_string(m.slot);
            prev_end = m.win_offset + m.len;
        }
        for (const auto &m : t.overlapping(0, 4096))
            t.release(m.slot);
        int64_t s = t.begin_map(0, 4096, 1, 0, false);
        if (s >= 0)
            t.release(uint64_t(s));
        return "";
    }

    std::string recover(state::Region &r, bool via_fs)
    {
        auto &h = r.header();
        const uint64_t icap = h.inode_capacity, hcap = h.handle_capacity;
        if (avoid_known_bug("unchecked-slots")) {
            // Steer around a known bug: what the fix should amount to.
            for (uint64_t id = h.inode_high.load(); id < icap; id++)
                r.inodes()[id].state.store(state::kFree);
            for (uint64_t fh = h.handle_high.load(); fh < hcap; fh++)
                r.handles()[fh].state.store(state::kFree);
        }
        state::InodeTable inodes(r);
        state::HandleTable handles(r);
        state::Journal journal(r);
        std::optional<fs::Passthrough> pfs;
        journal.load_previous();
        if (via_fs) {
            fs::Options o;
            o.shared_dir = sb_.path(kDir);
            o.switch_creds = false;
            pfs.emplace(o, inodes, handles, fs::Recovery{&journal, nullptr});
            pfs->recover({});
        } else {
            Fd root(open(sb_.path(kDir).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
            inodes.recover(std::move(root), [this](uint64_t id, const state::InodeRecord &) {
                // Every third inode comes back, the rest are stale.
                return id % 3 ? Fd() : Fd(open(sb_.path(kDir).c_str(), O_PATH | O_CLOEXEC));
            });
            handles.recover(
                [&inodes](uint64_t, const state::HandleRecord &hr) {
                    std::shared_ptr<state::Handle> out;
                    if (auto ino = inodes.get(hr.nodeid)) {
                        out = std::make_shared<state::Handle>();
                        out->inode = ino;
                        out->dir = hr.kind == state::kDir;
                    }
                    return out;
                },
                icap);
        }

        // What recover() accepted must agree with the records.
        size_t live = 0;
        for (uint64_t id = 1; id < h.inode_high.load(); id++)
            live += r.inodes()[id].state.load() == state::kLive;
        if (inodes.live() != live)
            return "InodeTable::recover counts " + std::to_string(inodes.live()) +
                   " live inodes, the records hold " + std::to_string(live);
        if (!inodes.get(state::kRootNodeId))
            return "recovered table has no root";
        size_t hlive = 0;
        for (uint64_t fh = 1; fh < h.handle_high.load(); fh++) {
            auto &rec = r.handles()[fh];
            if (rec.state.load() != state::kLive)
                continue;
            hlive++;
            if (rec.nodeid == 0 || rec.nodeid >= icap)
                return "HandleTable::recover accepted handle " + std::to_string(fh) +
                       " of node " + std::to_string(rec.nodeid);
        }
        if (handles.live() != hlive)
            return "HandleTable::recover counts " + std::to_string(handles.live()) +
                   " live handles, the records hold " + std::to_string(hlive);
        if (journal.pending() > h.journal_capacity)
            return "journal holds more records than it has slots";

        // Slots at or past the high-water marks were never handed out, so
        // recover() never looked at them: whatever their records say, they
        // must not come back to life.
        const uint64_t ihigh = h.inode_high.load(), hhigh = h.handle_high.load();
        const bool skip_past_high = avoid_known_bug("unchecked-slots");
        for (uint64_t id = ihigh; id < icap && !skip_past_high; id++)
            if (inodes.get(id))
                return "InodeTable::get resolved node " + std::to_string(id) +
                       " at or past inode_high " + std::to_string(ihigh) +
                       " (a record recover() never checked)";
        for (uint64_t fh = hhigh; fh < hcap && !skip_past_high; fh++)
            if (handles.get(fh))
                return "HandleTable::get resolved fh " + std::to_string(fh) +
                       " at or past handle_high " + std::to_string(hhigh) +
                       " (a record recover() never checked)";

        // Then serve a little: every id, new references, new handles.
        for (uint64_t id = 0; id < icap + 2; id++) {
            inodes.get(id);
            inodes.nlookup(id);
        }
        for (uint64_t fh = 0; fh < hcap + 2; fh++)
            handles.get(fh);
        struct stat st {};
        st.st_dev = ~0ull;
        st.st_mode = S_IFREG;
        for (uint64_t i = 0; i < 3; i++) {
            st.st_ino = 1000 + i;
            Fd fd(open("/", O_PATH | O_CLOEXEC));
            auto ino = inodes.ref(std::move(fd), st, nullptr);
            if (!ino)
                break;
            if (ino->nodeid == 0 || ino->nodeid >= icap || ino->nodeid == state::kRootNodeId)
                return "InodeTable::ref handed out node " + std::to_string(ino->nodeid);
            if (inodes.nlookup(ino->nodeid) != 1)
                return "a new inode does not start with one reference";
            auto hd = std::make_shared<state::Handle>();
            hd->inode = ino;
            uint64_t fh = handles.add(hd);
            if (fh >= hcap)
                return "HandleTable::add handed out fh " + std::to_string(fh);
            if (fh && !handles.remove(fh))
                return "a handle just added cannot be removed";
            if (!inodes.forget(ino->nodeid, 1))
                return "forgetting the only reference did not free the slot";
        }
        for (uint64_t fh = 0; fh < hcap + 2; fh++)
            handles.remove(fh);
        for (uint64_t id = 0; id < icap + 2; id++)
            inodes.forget(id, 1);
        journal.begin(FUSE_CREATE, 77);
        journal.done(0, 1, 1);
        for (uint64_t i = 0; i < h.journal_capacity; i++)
            if (auto e = journal.take(r.journal()[i].unique);
                e && e->refs.size() > state::kRefsPerList)
                return "a journal record came back with " + std::to_string(e->refs.size()) +
                       " references, more than a list holds";
        if (journal.has_refs()) {
            // A READDIRPLUS list, on whatever the lists' corruption left.
            const uint64_t ids[] = {2, 3};
            if (!journal.begin_refs(FUSE_READDIRPLUS, 79, ids))
                return "begin_refs refused a list that fits";
            journal.drop_ref(0);
            journal.add_ref(79, 4);
            journal.done(0);
        }
        return "";
    }

    Sandbox &sb_;
    std::vector<uint8_t> tmpl_;
};

} // namespace holdfast::fuzz
