// SPDX-License-Identifier: GPL-2.0
// What the fuzzers found, kept found.  Every input in
// userspace/fuzz/corpus/<target>/ (the seeds recorded from real traffic and
// the regressions/ reproducers) is replayed through the same harness the
// libFuzzer target uses (userspace/fuzz/*_harness.h), so a crash input fails
// here too, under ASan in `make check-asan`.  Each bug also has a test of
// its own that says what was wrong in plain terms.
//
// Reproducers of bugs not fixed yet are listed in regressions/UNFIXED: the
// replay skips them and their own tests are DISABLED_ until the fix lands
// (then: delete the line from UNFIXED and the DISABLED_ prefix).
#include "../fuzz/engine_harness.h"
#include "../fuzz/region_harness.h"
#include "../fuzz/request_harness.h"

#include "fs/passthrough.h"
#include "scratch_fs.h"
#include "state/region.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <thread>
#include <vector>

using namespace holdfast;
namespace fsys = std::filesystem;

namespace {

fsys::path corpus_dir(const char *target)
{
    return fsys::path(__FILE__).parent_path() / ".." / "fuzz" / "corpus" / target;
}

std::vector<uint8_t> slurp(const fsys::path &p)
{
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::set<std::string> unfixed(const fsys::path &dir)
{
    std::set<std::string> out;
    std::ifstream f(dir / "regressions" / "UNFIXED");
    std::string line;
    while (std::getline(f, line)) {
        line = line.substr(0, line.find('#'));
        line.erase(line.find_last_not_of(" \t") + 1);
        if (!line.empty())
            out.insert(line);
    }
    return out;
}

// Every input of a target's corpus, reproducers of unfixed bugs left out.
std::vector<fsys::path> inputs(const char *target)
{
    fsys::path dir = corpus_dir(target);
    auto skip = unfixed(dir);
    std::vector<fsys::path> out;
    for (auto &e : fsys::recursive_directory_iterator(dir)) {
        if (!e.is_regular_file())
            continue;
        std::string name = e.path().filename();
        if (name == "UNFIXED" || e.path().extension() == ".md" || skip.count(name))
            continue;
        out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

template <class Harness> void replay_all(Harness &h, const char *target, size_t at_least)
{
    auto files = inputs(target);
    EXPECT_GE(files.size(), at_least) << "corpus of " << target << " went missing?";
    for (auto &p : files) {
        auto data = slurp(p);
        EXPECT_EQ(h.run(data.data(), data.size()), "") << p;
    }
}

fuzz::EngineHarness &engine_harness()
{
    static fuzz::EngineHarness *h = new fuzz::EngineHarness();
    return *h;
}
fuzz::RegionHarness &region_harness()
{
    static fuzz::RegionHarness *h = new fuzz::RegionHarness();
    return *h;
}

} // namespace

// ---------------------------------------------------------------------------
// Corpus replays

TEST(FuzzCorpus, RequestInputsReplayClean)
{
    fuzz::RequestHarness h;
    replay_all(h, "fuzz_request", 20);
}

TEST(FuzzCorpus, EngineInputsReplayClean)
{
    replay_all(engine_harness(), "fuzz_engine", 3);
}

TEST(FuzzCorpus, RegionInputsReplayClean)
{
    replay_all(region_harness(), "fuzz_region", 3);
}

// The harnesses themselves must see a fault when there is one, or the
// replays above prove nothing.
TEST(FuzzCorpus, RegionHarnessRefusesNothingOnAnIntactRegion)
{
    uint8_t intact[2] = {0, 1};
    EXPECT_EQ(region_harness().run(intact, sizeof(intact)), "");
}

TEST(FuzzCorpus, EngineHarnessAcceptsLookupForgetLookup)
{
    // LOOKUP counts one kernel reference, FORGET gives it back without a
    // reply, ".." of the root is the root: the harness's model of the
    // kernel must agree with the inode table all along.
    std::vector<uint8_t> in{0x00};
    auto frame = [&](uint32_t opcode, uint64_t unique, uint64_t nodeid,
                     const std::vector<uint8_t> &args) {
        fuse_in_header h{};
        h.len = uint32_t(sizeof(h) + args.size());
        h.opcode = opcode;
        h.unique = unique;
        h.nodeid = nodeid;
        in.push_back(0);
        in.push_back(uint8_t(h.len));
        in.push_back(uint8_t(h.len >> 8));
        auto *p = reinterpret_cast<uint8_t *>(&h);
        in.insert(in.end(), p, p + sizeof(h));
        in.insert(in.end(), args.begin(), args.end());
    };
    frame(FUSE_LOOKUP, 2, 1, {'f', 'i', 'l', 'e', 0});
    fuse_forget_in f{1};
    auto *fp = reinterpret_cast<uint8_t *>(&f);
    frame(FUSE_FORGET, 3, 2, std::vector<uint8_t>(fp, fp + sizeof(f)));
    frame(FUSE_LOOKUP, 4, 1, {'.', '.', 0});
    EXPECT_EQ(engine_harness().run(in.data(), in.size()), "");
}

// ---------------------------------------------------------------------------
// Bug 1 (fuzz_region, regressions/attach-inode-offset-wraps*.bin):
// Region::attach checks each table with `off + cap * rec <= size` in 64
// bits.  An offset near 2^64 wraps that sum to a small number, so a region
// with inode_offset = 2^64 - 4096 and inode_capacity = 22 passes, and the
// root record is then read 3904 bytes before the mapping (UBSan: pointer
// overflow in Region::inodes(); without it, a wild read or SIGSEGV).
// Expected: std::runtime_error ("table offsets or capacities out of bounds").
// Fixed in f56c3e9 ("state: table bounds check in Region::attach could wrap").

namespace {
// A valid small region whose header field at `field_off` becomes `value`.
Fd region_with(size_t field_off, uint64_t value, size_t field_off2 = 0, uint64_t value2 = 0)
{
    state::Region::Geometry g;
    g.inode_capacity = 16;
    g.handle_capacity = 8;
    g.journal_capacity = 4;
    state::Region r = state::Region::create(g);
    // A live root, so only the offsets are wrong.
    r.inodes()[1].mode = S_IFDIR;
    r.inodes()[1].state.store(state::kLive);
    Fd fd(dup(r.memfd()));
    auto *base = static_cast<uint8_t *>(static_cast<void *>(&r.header()));
    memcpy(base + field_off, &value, 8);
    if (field_off2)
        memcpy(base + field_off2, &value2, 8);
    return fd;
}
} // namespace

TEST(FuzzRegression, AttachRefusesInodeTableOffsetThatWrapsAround)
{
    Fd fd = region_with(offsetof(state::RegionHeader, inode_offset), 0xfffffffffffff000ull,
                        offsetof(state::RegionHeader, inode_capacity), 22);
    EXPECT_THROW(state::Region::attach(std::move(fd)), std::runtime_error);
}

TEST(FuzzRegression, AttachRefusesHandleTableOffsetThatWrapsAround)
{
    // The same sum for the handle table: 2^64 - 4096 + 103 * 40 wraps to 24.
    Fd fd = region_with(offsetof(state::RegionHeader, handle_offset), 0xfffffffffffff000ull,
                        offsetof(state::RegionHeader, handle_capacity), 103);
    EXPECT_THROW(state::Region::attach(std::move(fd)), std::runtime_error);
}

TEST(FuzzRegression, RegionReproducersReplayClean)
{
    for (const char *f : {"attach-inode-offset-wraps.bin", "attach-inode-offset-wraps-fs.bin"}) {
        auto data = slurp(corpus_dir("fuzz_region") / "regressions" / f);
        ASSERT_FALSE(data.empty()) << f;
        EXPECT_EQ(region_harness().run(data.data(), data.size()), "") << f;
    }
}

// ---------------------------------------------------------------------------
// Bug 2 (fuzz_engine, regressions/readdirplus-resent-after-crash*.bin):
// READDIRPLUS counts one reference (nlookup) for every entry it returns
// (fs/dir.cc, do_lookup per entry), but it is not journaled.  When the
// server dies after the lookups and before the reply reaches the kernel,
// the kernel resends the READDIRPLUS after the restart and every entry is
// counted again: the kernel holds one reference per entry, the table two,
// so the slots are never freed by the kernel's FORGETs (a leak of inode
// slots and, for unlinked files, of the fds kept in the fd store).
// Input: OPENDIR of the root, then READDIRPLUS with "crash before the
// reply" (ctl & 4); harness: "READDIRPLUS ...: node 2 has nlookup 2, the
// kernel holds 1 references".
// Expected: after the resend every entry's nlookup is 1 (e.g. journal the
// READDIRPLUS with the cookie range and node ids it counted, and answer a
// resend from that; or count the references only when the reply is sent).
// Fixed: READDIRPLUS is journaled with the node ids it counted (a
// reference list per journal record, state-format.rst), and a resend gives
// them back before it lists again (fs/dir.cc); tests/readdirplus_replay_test.cc
// has the edge cases.

TEST(FuzzRegression, ReaddirplusResentAfterACrashCountsEachEntryOnce)
{
    for (const char *f :
         {"readdirplus-resent-after-crash.bin", "readdirplus-resent-after-crash-found.bin"}) {
        auto data = slurp(corpus_dir("fuzz_engine") / "regressions" / f);
        ASSERT_FALSE(data.empty()) << f;
        EXPECT_EQ(engine_harness().run(data.data(), data.size()), "") << f;
    }
}

// ---------------------------------------------------------------------------
// Found while building fuzz_engine (the harness has to work around them:
// FIFOs are turned into regular files, and the scratch tree is on a nodev
// tmpfs).  Passthrough::open (fs/data.cc, open_file -> reopen) reopens any
// inode through /proc/self/fd, whatever its type:
//  - a FIFO: open(2) blocks until a peer opens the other end, so one OPEN
//    from a hostile client (a virtio-fs guest kernel may send OPEN for any
//    node id; a Linux FUSE client opens FIFOs locally) parks a worker
//    thread forever;
//  - a device node the client made with MKNOD: the server opens the host's
//    device, as root unless the credentials were switched (and a guest's
//    root is uid 0).  On a shared directory without nodev that is the host
//    disk, readable and writable by the guest.
// Expected: OPEN (and CREATE of an existing name) of anything but a regular
// file fails (e.g. -EACCES or -ENXIO) without opening it on the host.

namespace {
std::string scratch_dir()
{
    char t[] = "/tmp/holdfast-open-test.XXXXXX";
    return mkdtemp(t);
}

// A server over a directory of its own, removed afterwards.
struct OpenFixture : test::ScratchFs {
    OpenFixture() : ScratchFs(scratch_dir()) {}
    ~OpenFixture()
    {
        pfs.reset();
        fsys::remove_all(dir);
    }
    // LOOKUP `name` in the root, then OPEN it with `flags`.
    int open(const char *name, int flags)
    {
        fuse_entry_out e;
        int err = lookup(1, name, e);
        if (err)
            return err;
        fuse_open_out out;
        return ScratchFs::open(e.nodeid, flags, out);
    }
};
} // namespace

TEST(FuzzRegression, OpenOfAFifoFailsInsteadOfBlocking)
{
    OpenFixture f;
    std::string fifo = f.dir + "/fifo";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
    std::atomic<int> result{1};
    std::thread t([&] { result = f.open("fifo", O_RDONLY); });
    for (int i = 0; i < 100 && result == 1; i++)
        usleep(10000);
    bool blocked = result == 1;
    if (blocked) {
        // Unblock the server's open so the test can end.
        int w = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
        t.join();
        close(w);
    } else {
        t.join();
    }
    EXPECT_FALSE(blocked) << "OPEN of a FIFO blocked the worker for a second";
    EXPECT_LT(result.load(), 0);
}

TEST(FuzzRegression, OpenOfADeviceNodeDoesNotOpenTheHostDevice)
{
    if (geteuid() != 0)
        GTEST_SKIP() << "needs root to make a device node";
    OpenFixture f;
    // /dev/null's numbers: harmless to open, and proof enough.
    ASSERT_EQ(mknod((f.dir + "/dev").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
    EXPECT_LT(f.open("dev", O_RDWR), 0) << "the server opened a host device for the client";
}

// The same through CREATE: without O_EXCL, openat(O_CREAT) of a name that
// exists opens what is there (fs/data.cc create_file), FIFO or device.  A
// kernel sends CREATE for a name it believes absent, which a host process
// may have made a FIFO since (a cached negative dentry), so this one needs
// no hostile client.  Expected: no blocking, no device opened (e.g. open
// with O_NONBLOCK and refuse what fstat says is not a regular file).
namespace {
int create_in_root(OpenFixture &f, const char *name, int flags)
{
    fuse_create_in in{};
    in.flags = uint32_t(flags | O_CREAT);
    in.mode = S_IFREG | 0644;
    fuse_entry_out e{};
    fuse_open_out o{};
    fuse::Ctx c{20, 1, FUSE_CREATE, 0, 0, 0, false};
    return f.pfs->create(c, in, name, e, o);
}
} // namespace

TEST(FuzzRegression, CreateOverAFifoDoesNotBlock)
{
    OpenFixture f;
    std::string fifo = f.dir + "/fifo";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
    std::atomic<int> result{1};
    std::thread t([&] { result = create_in_root(f, "fifo", O_RDONLY); });
    for (int i = 0; i < 100 && result == 1; i++)
        usleep(10000);
    bool blocked = result == 1;
    if (blocked) {
        int w = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
        t.join();
        close(w);
    } else {
        t.join();
    }
    EXPECT_FALSE(blocked) << "CREATE over an existing FIFO blocked the worker for a second";
}

TEST(FuzzRegression, CreateOverADeviceNodeDoesNotOpenIt)
{
    if (geteuid() != 0)
        GTEST_SKIP() << "needs root to make a device node";
    OpenFixture f;
    ASSERT_EQ(mknod((f.dir + "/dev").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
    EXPECT_LT(create_in_root(f, "dev", O_RDWR), 0)
        << "CREATE of an existing device name opened the host device";
}

// ---------------------------------------------------------------------------
// Bug 3 (fuzz_region, regressions/live-record-beyond-high-water-mark*.bin):
// InodeTable::recover() checks the records below inode_high only (state,
// handle_bytes <= 128, mode), but after it InodeTable::get() resolves any
// slot below the capacity whose record says kLive (state/inode_table.cc,
// get(): "a live record whose fd is not open in this process yet").  A
// corrupt record past inode_high, never checked, then reaches
// Passthrough::resolve_inode (fs/recovery.cc), which copies r.handle_bytes
// bytes (up to 4 GiB) into a 128-byte stack buffer: ASan stack-buffer-
// overflow; without ASan a smashed stack.  Any request naming that node id
// (a kernel's, or a guest's) triggers it.  The same holds for handle records
// past handle_high (HandleTable::get resolves them too).
// Expected: a slot at or past the high-water mark found at recover() is
// not live, whatever its record says (get() returns null); and
// resolve_inode refuses handle_bytes > kMaxFileHandle on its own.

namespace {
// The fuzz template's inode slot 10 (inode_high is 7), made live with a
// handle length of 64 KiB.
void make_live_past_high(state::Region &r)
{
    state::InodeRecord &rec = r.inodes()[10];
    rec.mode = S_IFREG;
    rec.handle_bytes = 0x10000;
    rec.state.store(state::kLive);
}
} // namespace

TEST(FuzzRegression, InodeSlotPastHighWaterMarkStaysDead)
{
    state::Region::Geometry g;
    g.inode_capacity = 16;
    g.handle_capacity = 8;
    g.journal_capacity = 4;
    state::Region r = state::Region::create(g);
    r.inodes()[1].mode = S_IFDIR;
    r.inodes()[1].state.store(state::kLive);
    r.header().inode_high.store(7);
    make_live_past_high(r);
    state::InodeTable inodes(r);
    int resolved = 0;
    inodes.recover(Fd(::open("/", O_PATH | O_CLOEXEC)), [&](uint64_t, const state::InodeRecord &) {
        resolved++;
        return Fd(::open("/", O_PATH | O_CLOEXEC));
    });
    EXPECT_EQ(inodes.get(10), nullptr) << "node 10 was never handed out, yet it resolves";
    EXPECT_EQ(resolved, 0);
}

TEST(FuzzRegression, RegionReproducersOfUnvalidatedSlotsReplayClean)
{
    setenv("HOLDFAST_FUZZ_AVOID", "", 1); // the harness steers around it otherwise
    for (const char *f :
         {"live-record-beyond-high-water-mark.bin", "live-record-beyond-high-water-mark-bare.bin"}) {
        auto data = slurp(corpus_dir("fuzz_region") / "regressions" / f);
        ASSERT_FALSE(data.empty()) << f;
        EXPECT_EQ(region_harness().run(data.data(), data.size()), "") << f;
    }
    unsetenv("HOLDFAST_FUZZ_AVOID");
}
