// SPDX-License-Identifier: GPL-2.0
// READDIRPLUS after a crash.  Every entry with a node id in its reply is a
// kernel reference (nlookup), counted before the reply goes out.  The kernel
// resends only a request whose reply it never took (fuse_resend() moves the
// requests still on the processing list; a parked virtio-fs connection
// delivers what the device answered first), so a resend must leave the
// table counting exactly the entries of the reply it gets: the references
// the first attempt counted are given back (fs/dir.cc, the journal's
// reference lists in state/journal.h).
//
// The tests play server, crash (only the region survives) and kernel; the
// kernel's references are LOOKUPs and READDIRPLUS replies it "took".
#include "fs/passthrough.h"
#include "quiet_log.h"
#include "state/handle_table.h"
#include "state/inode_table.h"
#include "state/journal.h"
#include "state/region.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace holdfast;
using state::kRefsPerList;

namespace {

struct Listing {
    int err = 0;
    std::map<std::string, uint64_t> ids; // name -> node id (0: no entry_out)
    uint64_t last_off = 0;
    size_t entries = 0;
};

class ReaddirplusReplay : public ::testing::Test {
  protected:
    std::string dir;
    fs::Options o;
    std::optional<state::Region> region;
    std::unique_ptr<state::InodeTable> inodes;
    std::unique_ptr<state::HandleTable> handles;
    std::unique_ptr<state::Journal> journal;
    std::unique_ptr<fs::Passthrough> pfs;
    uint64_t root_fh = 0;
    test::QuietLog quiet;

    void SetUp() override
    {
        char t[] = "/tmp/holdfast-rdplus-test.XXXXXX";
        ASSERT_NE(mkdtemp(t), nullptr);
        dir = t;
        for (const char *f : {"a", "b", "c"})
            touch(f);
        ASSERT_EQ(mkdir((dir + "/d").c_str(), 0755), 0);
        state::Region::Geometry g;
        g.inode_capacity = 1024;
        g.handle_capacity = 16;
        g.journal_capacity = 8;
        region.emplace(state::Region::create(g));
        o.shared_dir = dir;
        o.switch_creds = false;
        build(false);
        root_fh = opendir(1);
    }
    void TearDown() override
    {
        stop();
        std::filesystem::remove_all(dir);
    }

    void touch(const std::string &name)
    {
        int fd = ::open((dir + "/" + name).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0) << name;
        close(fd);
    }
    void stop()
    {
        pfs.reset();
        journal.reset();
        handles.reset();
        inodes.reset();
    }
    void build(bool recover)
    {
        inodes = std::make_unique<state::InodeTable>(*region);
        handles = std::make_unique<state::HandleTable>(*region);
        journal = std::make_unique<state::Journal>(*region);
        pfs = std::make_unique<fs::Passthrough>(o, *inodes, *handles,
                                                fs::Recovery{journal.get(), nullptr});
        if (recover) {
            journal->load_previous();
            pfs->recover({});
        } else {
            pfs->start_fresh();
        }
    }
    // The server dies: only the region survives, and a new one attaches it.
    void crash()
    {
        Fd fd(dup(region->memfd()));
        ASSERT_TRUE(fd);
        stop();
        region.emplace(state::Region::attach(std::move(fd)));
        build(true);
    }

    uint64_t opendir(uint64_t node)
    {
        fuse_open_in in{};
        fuse_open_out out{};
        fuse::Ctx c{next_unique(), node, FUSE_OPENDIR, 0, 0, 0, false};
        EXPECT_EQ(pfs->opendir(c, in, out), 0);
        return out.fh;
    }
    // LOOKUP whose reply the kernel takes: one reference it holds.
    uint64_t lookup(const char *name, uint64_t parent = 1)
    {
        fuse_entry_out e{};
        fuse::Ctx c{next_unique(), parent, FUSE_LOOKUP, 0, 0, 0, false};
        EXPECT_EQ(pfs->lookup(c, name, e), 0) << name;
        return e.nodeid;
    }
    Listing readdirplus(uint64_t unique, bool resent, uint64_t fh, uint64_t off = 0,
                        uint32_t size = 4096)
    {
        Listing l;
        std::vector<std::byte> area(size);
        fuse::Reply reply(area);
        reply.reset(unique);
        reply.limit_payload(size);
        fuse_read_in in{};
        in.fh = fh;
        in.offset = off;
        in.size = size;
        fuse::Ctx c{unique, 1, FUSE_READDIRPLUS, 0, 0, 0, resent};
        l.err = pfs->readdir(c, in, true, reply);
        auto p = reply.payload();
        for (size_t at = 0; at + sizeof(fuse_direntplus) <= p.size();) {
            fuse_direntplus d;
            memcpy(&d, p.data() + at, sizeof(d));
            std::string name(reinterpret_cast<const char *>(p.data()) + at + sizeof(d),
                             d.dirent.namelen);
            l.ids[name] = d.entry_out.nodeid;
            l.last_off = d.dirent.off;
            l.entries++;
            at += FUSE_DIRENTPLUS_SIZE(&d);
        }
        return l;
    }
    uint64_t next_unique() { return unique_ += 2; }

    // The kernel looks up every file of the directory: references a
    // reference given back twice would show on.
    void lookup_all()
    {
        for (const char *n : kNames)
            lookup(n);
    }
    void expect_all(uint64_t nlookup)
    {
        for (const char *n : kNames)
            EXPECT_EQ(nlookup_of(n), nlookup) << n;
    }
    static constexpr const char *kNames[] = {"a", "b", "c", "d"};

    // What the table counts for a name: 0 if it has no live slot.
    uint64_t nlookup_of(const std::string &name)
    {
        struct stat st;
        if (lstat((dir + "/" + name).c_str(), &st) < 0)
            return 0;
        auto ino = inodes->find(st.st_dev, st.st_ino);
        return ino ? inodes->nlookup(ino->nodeid) : 0;
    }
    bool live(uint64_t id)
    {
        return inodes->record(id).state.load(std::memory_order_acquire) == state::kLive;
    }
    // The region's journal record of `unique`, and its reference list.
    std::pair<state::JournalRecord *, state::RefList *> record_of(uint64_t unique)
    {
        for (uint64_t i = 0; i < region->header().journal_capacity; i++)
            if (region->journal()[i].unique == unique &&
                region->journal()[i].phase.load() != state::kJournalEmpty)
                return {&region->journal()[i], &region->ref_lists()[i]};
        return {nullptr, nullptr};
    }

    uint64_t unique_ = 10;
};

// The fuzzer's case: a crash after the lookups, before the reply.  The
// kernel already held "a" (a LOOKUP); after the resend it holds one more
// reference on every entry, and so does the table.
TEST_F(ReaddirplusReplay, ResendAfterACrashBeforeTheReplyCountsEachEntryOnce)
{
    lookup("a");
    Listing first = readdirplus(100, false, root_fh); // never reaches the kernel
    ASSERT_EQ(first.err, 0);
    EXPECT_EQ(nlookup_of("a"), 2u);
    EXPECT_EQ(nlookup_of("b"), 1u);
    crash();
    Listing again = readdirplus(100, true, root_fh);
    ASSERT_EQ(again.err, 0);
    EXPECT_EQ(pfs->replayed(), 1u);
    EXPECT_EQ(nlookup_of("a"), 2u);
    for (const char *n : {"b", "c", "d"}) {
        EXPECT_EQ(nlookup_of(n), 1u) << n;
        EXPECT_NE(again.ids[n], 0u) << n;
    }
    EXPECT_EQ(again.ids["."], 0u);
    EXPECT_EQ(again.ids[".."], 0u);
}

// A resend without a crash in between (a virtio-fs device re-plugged to the
// same process) is the same: the record is in the region either way.
TEST_F(ReaddirplusReplay, ResendWithinTheSameProcessCountsEachEntryOnce)
{
    readdirplus(100, false, root_fh);
    journal->load_previous();
    ASSERT_EQ(readdirplus(100, true, root_fh).err, 0);
    expect_all(1);
}

// The crash came in the middle of the listing: the record is started and
// lists the references counted so far, and only those are given back.
TEST_F(ReaddirplusReplay, ResendAfterACrashMidListingGivesBackWhatWasCounted)
{
    lookup_all();
    Listing first = readdirplus(100, false, root_fh);
    auto [rec, list] = record_of(100);
    ASSERT_TRUE(rec && list);
    ASSERT_EQ(list->count.load(), 4u);
    // As if the server had died after counting two entries.
    rec->phase.store(state::kJournalStarted);
    for (uint32_t k = 2; k < 4; k++)
        pfs->forget(list->ids[k].load(), 1);
    list->count.store(2);
    crash();
    ASSERT_EQ(readdirplus(100, true, root_fh).err, 0);
    expect_all(2);
}

// The server that answers the resend dies too, while it gives the first
// attempt's references back: the next one gives back only the rest.
TEST_F(ReaddirplusReplay, CrashWhileGivingBackLeavesTheRestToTheNextServer)
{
    lookup_all();
    readdirplus(100, false, root_fh);
    crash();
    // What the second server's readdir() does, cut short after one.
    auto e = journal->take(100);
    ASSERT_TRUE(e);
    ASSERT_EQ(e->refs.size(), 4u);
    ASSERT_TRUE(journal->begin_refs(FUSE_READDIRPLUS, 100, e->refs));
    journal->drop_ref(0);
    pfs->forget(e->refs[0], 1);
    crash();
    ASSERT_EQ(readdirplus(100, true, root_fh).err, 0);
    expect_all(2);
}

// The second server answers the resend completely and dies before its
// reply goes out; the directory changed in between.  The third server must
// give back what the second counted, not what the first did.
TEST_F(ReaddirplusReplay, SecondCrashGivesBackTheLatestAttempt)
{
    lookup_all();
    readdirplus(100, false, root_fh);
    crash();
    touch("e");
    ASSERT_EQ(readdirplus(100, true, root_fh).err, 0);
    EXPECT_EQ(nlookup_of("e"), 1u);
    crash();
    Listing last = readdirplus(100, true, root_fh);
    ASSERT_EQ(last.err, 0);
    ASSERT_NE(last.ids["e"], 0u);
    expect_all(2);
    EXPECT_EQ(nlookup_of("e"), 1u);
}

// Between the crash and the resend an entry went away and another came:
// the resent reply names the new one, and the gone one keeps only what the
// kernel holds (nothing: its slot is freed).
TEST_F(ReaddirplusReplay, ResendSeesTheDirectoryAsItIsNow)
{
    lookup("a");
    Listing first = readdirplus(100, false, root_fh);
    uint64_t c = first.ids["c"];
    ASSERT_NE(c, 0u);
    const uint64_t c_ino = inodes->record(c).ino;
    const uint32_t c_gen = inodes->record(c).generation;
    crash();
    touch("f"); // first: it must not get c's inode number
    ASSERT_EQ(unlink((dir + "/c").c_str()), 0);
    ASSERT_EQ(unlink((dir + "/a").c_str()), 0);
    Listing again = readdirplus(100, true, root_fh);
    ASSERT_EQ(again.err, 0);
    EXPECT_EQ(again.ids.count("c"), 0u);
    EXPECT_NE(again.ids["f"], 0u);
    // Its slot was freed (and may have been taken for f since).
    EXPECT_TRUE(!live(c) ||
                (inodes->record(c).generation != c_gen && inodes->record(c).ino != c_ino))
        << "the slot of c still counts a reference nobody holds";
    EXPECT_EQ(inodes->nlookup(first.ids["a"]), 1u); // the kernel's LOOKUP
    EXPECT_EQ(nlookup_of("f"), 1u);
    EXPECT_EQ(nlookup_of("b"), 1u);
}

// The resend fails (its directory cannot be reopened after the restart):
// the kernel takes no entry from an error, so the first attempt's
// references are given back all the same.
TEST_F(ReaddirplusReplay, FailedResendStillGivesBack)
{
    ASSERT_EQ(mkdir((dir + "/d/sub").c_str(), 0755), 0);
    uint64_t d = lookup("d");
    uint64_t fh = opendir(d);
    Listing first = readdirplus(100, false, fh);
    uint64_t sub = first.ids["sub"];
    ASSERT_NE(sub, 0u);
    crash();
    std::filesystem::remove_all(dir + "/d");
    Listing again = readdirplus(100, true, fh);
    EXPECT_NE(again.err, 0);
    EXPECT_FALSE(live(sub));
}

// A reply the kernel took is never given back: another request's resend
// uses its own record only.
TEST_F(ReaddirplusReplay, ResendLeavesOtherRequestsReferencesAlone)
{
    // On another thread: its own journal record, left in the region.
    std::thread([&] { EXPECT_EQ(readdirplus(100, false, root_fh).err, 0); }).join();
    readdirplus(102, false, root_fh); // this one is lost with the crash
    crash();
    ASSERT_EQ(readdirplus(102, true, root_fh).err, 0);
    expect_all(2);
}

// A big reply buffer (Linux 6.16+ asks for up to max_pages): the reply ends
// after kRefsPerList entries with a node id, so one journal list holds them
// all; the listing goes on from there and misses nothing.
TEST_F(ReaddirplusReplay, LongDirectoryIsListedInRepliesTheJournalCanHold)
{
    const size_t files = kRefsPerList * 2 + 30;
    for (size_t i = 0; i < files; i++)
        touch("n" + std::to_string(i));
    std::map<std::string, uint64_t> all;
    uint64_t off = 0;
    size_t replies = 0;
    for (;;) {
        Listing l = readdirplus(200 + 2 * replies, false, root_fh, off, 1 << 20);
        ASSERT_EQ(l.err, 0);
        if (!l.entries)
            break;
        size_t counted = 0;
        for (auto &[n, id] : l.ids)
            counted += id != 0;
        EXPECT_LE(counted, size_t(kRefsPerList));
        all.insert(l.ids.begin(), l.ids.end());
        off = l.last_off;
        ASSERT_LT(++replies, 20u);
    }
    EXPECT_GE(replies, 3u);
    EXPECT_EQ(all.size(), files + 4 + 2); // + a b c d, . and ..
    for (size_t i = 0; i < files; i++)
        ASSERT_EQ(nlookup_of("n" + std::to_string(i)), 1u) << i;
    // A full reply lost with a crash: its resend gives all of them back.
    ASSERT_EQ(readdirplus(300, false, root_fh, 0, 1 << 20).err, 0);
    crash();
    Listing resent = readdirplus(300, true, root_fh, 0, 1 << 20);
    ASSERT_EQ(resent.err, 0);
    for (size_t i = 0; i < files; i++) {
        std::string n = "n" + std::to_string(i);
        // The kernel holds one from the listing above, and one more for
        // each entry of the resent reply.
        ASSERT_EQ(nlookup_of(n), 1u + (resent.ids.count(n) && resent.ids[n])) << n;
    }
}

// DESTROY ends the session; the next one numbers its requests from the
// start again, so an old record must not meet a new request's resend.
TEST_F(ReaddirplusReplay, NewSessionDoesNotUseTheOldSessionsRecords)
{
    // On another thread: a record the new session's requests do not overwrite.
    std::thread([&] { readdirplus(100, false, root_fh); }).join();
    pfs->destroy();
    uint64_t fh = opendir(1);
    lookup("a");
    crash();
    // The new session's request 100, resent: nothing of the old one's.
    ASSERT_EQ(readdirplus(100, true, fh).err, 0);
    EXPECT_EQ(pfs->replayed(), 0u);
    EXPECT_EQ(nlookup_of("a"), 2u);
    EXPECT_EQ(nlookup_of("b"), 1u);
}

// A region from a server that predates the lists (the header field was
// reserved and zero): READDIRPLUS is not journaled, and works.
TEST_F(ReaddirplusReplay, RegionWithoutListsStillLists)
{
    region->header().refs_offset = 0;
    crash();
    EXPECT_FALSE(journal->has_refs());
    Listing l = readdirplus(100, false, root_fh);
    ASSERT_EQ(l.err, 0);
    EXPECT_NE(l.ids["a"], 0u);
    EXPECT_EQ(nlookup_of("a"), 1u);
}

// ---------------------------------------------------------------------------
// The lists in the region

state::Region small_region(uint64_t journal_cap = 4)
{
    state::Region::Geometry g;
    g.inode_capacity = 16;
    g.handle_capacity = 8;
    g.journal_capacity = journal_cap;
    state::Region r = state::Region::create(g);
    r.inodes()[1].mode = S_IFDIR;
    r.inodes()[1].state.store(state::kLive);
    return r;
}

std::string attach_error(state::Region &r)
{
    try {
        state::Region::attach(Fd(dup(r.memfd())));
    } catch (const std::runtime_error &e) {
        return e.what();
    }
    return "";
}

TEST(RefLists, AreTheLastAreaOneListPerJournalRecord)
{
    state::Region r = small_region(6);
    const auto &h = r.header();
    ASSERT_NE(h.refs_offset, 0u);
    EXPECT_EQ(h.refs_offset % 4096, 0u);
    EXPECT_GE(h.refs_offset, h.uring_offset + h.uring_capacity * sizeof(state::UringEntryRecord));
    EXPECT_LE(h.refs_offset + state::Region::refs_bytes(6), h.region_size);
    const state::RefArea &a = *r.ref_area();
    EXPECT_EQ(a.magic, state::kRefsMagic);
    EXPECT_EQ(a.capacity, 6u);
    EXPECT_EQ(a.per_list, kRefsPerList);
    EXPECT_EQ(a.record_size, sizeof(state::RefList));
    EXPECT_EQ(attach_error(r), "");
}

TEST(RefLists, AttachRefusesACorruptArea)
{
    auto refused = [](auto corrupt) {
        state::Region r = small_region();
        corrupt(r);
        return attach_error(r);
    };
    EXPECT_NE(refused([](state::Region &r) { r.ref_area()->magic ^= 1; }).find("magic"),
              std::string::npos);
    EXPECT_NE(refused([](state::Region &r) { r.ref_area()->per_list = 64; }), "");
    EXPECT_NE(refused([](state::Region &r) { r.ref_area()->record_size = 8; }), "");
    EXPECT_NE(refused([](state::Region &r) { r.ref_area()->capacity = 5; }), "");
    EXPECT_NE(refused([](state::Region &r) { r.header().refs_offset += 8; }), "");
    EXPECT_NE(refused([](state::Region &r) { r.header().refs_offset = r.header().journal_offset; }),
              "");
    EXPECT_NE(refused([](state::Region &r) { r.header().refs_offset = r.header().region_size; }),
              "");
    EXPECT_NE(refused([](state::Region &r) { r.header().refs_offset = ~0ull & ~4095ull; }), "");
}

TEST(RefLists, LaterAttemptOfARequestWinsAndCountsAreClamped)
{
    state::Region r = small_region();
    {
        state::Journal first(r);
        std::thread([&] {
            const uint64_t ids[] = {5, 6, 7};
            ASSERT_TRUE(first.begin_refs(FUSE_READDIRPLUS, 0x40, ids));
            first.done(0);
        }).join();
        // The resend's attempt, on another thread (record): 6 given back.
        std::thread([&] {
            const uint64_t ids[] = {5, 6, 7};
            ASSERT_TRUE(first.begin_refs(FUSE_READDIRPLUS, 0x40, ids));
            first.drop_ref(1);
            EXPECT_TRUE(first.add_ref(0x40, 9));
            EXPECT_FALSE(first.add_ref(0x42, 9)) << "another request's list";
        }).join();
        // A list whose count a crash or a corruption made too large.
        std::thread([&] {
            ASSERT_TRUE(first.begin_refs(FUSE_READDIRPLUS, 0x44, {}));
            EXPECT_EQ(first.ref_room(), size_t(kRefsPerList));
            for (uint32_t i = 0; i < kRefsPerList; i++)
                EXPECT_TRUE(first.add_ref(0x44, 100 + i));
            EXPECT_EQ(first.ref_room(), 0u);
            EXPECT_FALSE(first.add_ref(0x44, 1));
        }).join();
    }
    for (uint64_t i = 0; i < r.header().journal_capacity; i++)
        if (r.journal()[i].unique == 0x44)
            r.ref_lists()[i].count.store(100000);
    state::Journal next(r);
    ASSERT_EQ(next.load_previous(), 2u);
    auto e = next.take(0x40);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->phase, uint32_t(state::kJournalStarted));
    EXPECT_EQ(e->refs, (std::vector<uint64_t>{5, 7, 9}));
    auto full = next.take(0x44);
    ASSERT_TRUE(full);
    EXPECT_EQ(full->refs.size(), size_t(kRefsPerList));
}

TEST(RefLists, PlainRecordsHaveNoList)
{
    state::Region r = small_region();
    {
        state::Journal j(r);
        std::thread([&] {
            const uint64_t ids[] = {5};
            ASSERT_TRUE(j.begin_refs(FUSE_READDIRPLUS, 0x40, ids));
            j.done(0);
            // The thread's next request reuses the record: no list now.
            j.begin(FUSE_LOOKUP, 0x42);
            EXPECT_EQ(j.ref_room(), 0u);
            EXPECT_FALSE(j.add_ref(0x42, 3));
            j.done(0, 3);
        }).join();
    }
    state::Journal next(r);
    ASSERT_EQ(next.load_previous(), 1u);
    auto e = next.take(0x42);
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->refs.empty());
    EXPECT_EQ(e->seq, 0u);
}

TEST(RefLists, ClearEmptiesEveryRecord)
{
    state::Region r = small_region();
    state::Journal j(r);
    std::thread([&] {
        j.begin(FUSE_MKDIR, 0x50);
        j.done(0, 4);
    }).join();
    j.load_previous();
    j.clear();
    EXPECT_EQ(j.pending(), 0u);
    state::Journal next(r);
    EXPECT_EQ(next.load_previous(), 0u);
}

} // namespace
