// SPDX-License-Identifier: GPL-2.0
// What fuzz_vhost_msg and fuzz_virtqueue found, kept found.  Every input in
// userspace/fuzz/corpus/fuzz_{vhost_msg,virtqueue}/ (the generated seeds and
// the regressions/ reproducers) is replayed through the harness the
// libFuzzer target uses, so a crash input fails here too (and under ASan in
// `make check-asan`); each bug also has a test that states it plainly.
#include "../fuzz/vhost_msg_harness.h"
#include "../fuzz/virtqueue_harness.h"

#include "transport/vhost_user/backend.h"
#include "transport/vhost_user/inflight.h"
#include "transport/vhost_user/memory.h"
#include "transport/vhost_user/virtqueue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

using namespace holdfast;
using namespace holdfast::vhost;
namespace fsys = std::filesystem;

namespace {

std::vector<fsys::path> corpus(const char *target)
{
    fsys::path dir = fsys::path(__FILE__).parent_path() / ".." / "fuzz" / "corpus" / target;
    std::vector<fsys::path> out;
    for (auto &e : fsys::recursive_directory_iterator(dir))
        if (e.is_regular_file() && e.path().extension() != ".md")
            out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
}

template <class Harness> void replay(Harness &h, const char *target, size_t at_least)
{
    auto files = corpus(target);
    EXPECT_GE(files.size(), at_least) << "corpus of " << target << " went missing?";
    for (auto &p : files) {
        std::ifstream f(p, std::ios::binary);
        std::vector<uint8_t> d{std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
        EXPECT_EQ(h.run(d.data(), d.size()), "") << p;
    }
}

// A ring of `num` entries in one heap region, started, with `inflight`
// (capacity entries) as its inflight region.
struct SmallRing {
    static constexpr uint64_t kGpa = 0x10000, kUva = 0x7f0000010000ull;
    std::vector<uint8_t> mem = std::vector<uint8_t>(0x20000);
    std::shared_ptr<MemoryTable> table;
    Virtqueue vq{0};
    uint16_t num;

    explicit SmallRing(uint16_t n) : num(n)
    {
        std::string err;
        table = MemoryTable::over({{kGpa, mem.size(), kUva, 0}}, {mem.data()}, err);
        EXPECT_TRUE(table) << err;
        vq.set_features(kFVersion1 | kFProtocolFeatures);
        EXPECT_EQ(vq.set_num(n), "");
        // desc at +0, avail at +0x8000, used at +0xc000.
        EXPECT_EQ(vq.set_addr({0, 0, kUva, kUva + 0xc000, kUva + 0x8000, 0}), "");
        EXPECT_EQ(vq.set_memory(table), "");
        // Descriptor i: 8 readable bytes.
        for (uint16_t i = 0; i < n; i++) {
            Desc d{kGpa + 0x10000 + 8 * i, 8, 0, 0};
            std::memcpy(mem.data() + 16 * i, &d, sizeof(d));
        }
    }
    void start() { vq.set_kick(Fd()), vq.set_enabled(true); }
    void offer(uint16_t head)
    {
        uint16_t idx;
        std::memcpy(&idx, mem.data() + 0x8002, 2);
        std::memcpy(mem.data() + 0x8004 + 2 * (idx % num), &head, 2);
        idx++;
        std::memcpy(mem.data() + 0x8002, &idx, 2);
    }
    void serve_one()
    {
        Chain c;
        ASSERT_EQ(vq.try_pop(c), 1);
        vq.complete(c, 0);
    }
};

} // namespace

// ---------------------------------------------------------------------------
// Corpus replays

TEST(VhostFuzzCorpus, MessageInputsReplayClean)
{
    fuzz::VhostMsgHarness h;
    replay(h, "fuzz_vhost_msg", 5);
}

TEST(VhostFuzzCorpus, VirtqueueInputsReplayClean)
{
    fuzz::VirtqueueHarness h;
    replay(h, "fuzz_virtqueue", 5);
}

// The harnesses must see a fault when there is one.
TEST(VhostFuzzCorpus, MessageHarnessChecksReplies)
{
    fuzz::VhostMsgHarness h;
    fuzz::VhostMsgSeed s(15);
    s.msg0(kGetFeatures);
    s.msg(kSetProtocolFeatures, uint64_t(kPReplyAck));
    s.msg0(kSetOwner, kVersion | kNeedReply);
    EXPECT_EQ(h.run(s.b.data(), s.b.size()), "");
}

// ---------------------------------------------------------------------------
// fuzz_virtqueue: regressions/ring-larger-than-inflight.bin.
// SET_VRING_NUM and GET/SET_INFLIGHT_FD size the ring and its inflight
// region independently.  A ring larger than its region made
// InflightQueue::attach zero (for a fresh region) or scan (for one handed
// back) `num` descriptor states, past the end of the region: a heap or
// mapping overflow a front-end chooses.  Now such a ring is served
// without inflight tracking.
TEST(VhostFuzzRegression, RingLargerThanItsInflightRegionIsNotTracked)
{
    const uint16_t cap = 16;
    size_t len = inflight_queue_bytes(cap);
    std::vector<uint8_t> buf(len + 4096, 0xee);         // guard after the region
    std::fill(buf.begin(), buf.begin() + long(len), 0); // a fresh region
    InflightArea a = InflightArea::over(buf.data(), len, 1, cap);
    ASSERT_TRUE(a.valid());
    SmallRing r(256);
    r.vq.set_inflight(a.queue(0), a.queue_size());
    r.start();
    r.offer(200);
    r.serve_one();
    EXPECT_TRUE(std::all_of(buf.begin() + long(len), buf.end(), [](uint8_t b) {
        return b == 0xee;
    })) << "wrote past the inflight region";
    EXPECT_EQ(a.queue(0)->version, 0) << "a region too small for the ring was used";
}

// A ring that fits its region is still tracked.
TEST(VhostFuzzRegression, RingThatFitsItsInflightRegionIsTracked)
{
    std::vector<uint8_t> buf(inflight_queue_bytes(16));
    InflightArea a = InflightArea::over(buf.data(), buf.size(), 1, 16);
    SmallRing r(16);
    r.vq.set_inflight(a.queue(0), a.queue_size());
    r.start();
    EXPECT_EQ(a.queue(0)->version, 1);
    r.offer(3);
    Chain c;
    ASSERT_EQ(r.vq.try_pop(c), 1);
    EXPECT_EQ(a.queue(0)->desc[3].inflight, 1);
    r.vq.complete(c, 0);
    EXPECT_EQ(a.queue(0)->desc[3].inflight, 0);
}

// What a predecessor took and never answered comes back first, marked as
// resubmitted (the engine then treats it as a possible replay, like a
// request the kernel marked FUSE_UNIQUE_RESEND); what the guest offers
// afterwards is not marked.
TEST(VhostFuzzRegression, ResubmittedChainsAreMarked)
{
    std::vector<uint8_t> buf(inflight_queue_bytes(16));
    InflightArea a = InflightArea::over(buf.data(), buf.size(), 1, 16);
    Chain c;
    {
        SmallRing dead(16);
        dead.vq.set_inflight(a.queue(0), a.queue_size());
        dead.start();
        dead.offer(3);
        ASSERT_EQ(dead.vq.try_pop(c), 1);
        EXPECT_FALSE(c.resubmitted);
        // ... and the server dies with head 3 in flight.
    }
    SmallRing r(16);
    r.vq.set_inflight(a.queue(0), a.queue_size());
    r.start();
    ASSERT_EQ(r.vq.try_pop(c), 1);
    EXPECT_EQ(c.head, 3);
    EXPECT_TRUE(c.resubmitted);
    r.vq.complete(c, 0);
    r.offer(5);
    ASSERT_EQ(r.vq.try_pop(c), 1);
    EXPECT_EQ(c.head, 5);
    EXPECT_FALSE(c.resubmitted);
}

// A new inflight buffer (GET_INFLIGHT_FD or SET_INFLIGHT_FD again) while a
// ring runs: the Backend unmaps the old buffer, but the running ring kept
// tracking heads in it (Virtqueue::set_inflight only detached on nullptr),
// so the next request wrote into unmapped memory.  Now the old region is
// let go at once and the new one is used from the ring's next start.
TEST(VhostFuzzRegression, ReplacedInflightRegionIsNotWrittenAfterwards)
{
    std::vector<uint8_t> old_buf(inflight_queue_bytes(16)), new_buf(inflight_queue_bytes(16));
    InflightArea old_a = InflightArea::over(old_buf.data(), old_buf.size(), 1, 16);
    InflightArea new_a = InflightArea::over(new_buf.data(), new_buf.size(), 1, 16);
    SmallRing r(16);
    r.vq.set_inflight(old_a.queue(0), 16);
    r.start();
    r.offer(1);
    r.serve_one();
    r.vq.set_inflight(new_a.queue(0), 16);
    std::vector<uint8_t> snapshot = old_buf;
    r.offer(2);
    r.serve_one();
    EXPECT_EQ(old_buf, snapshot) << "the replaced inflight region was written";
}

// The same through the Backend, as a front-end sends it: the old buffer is
// really unmapped, so before the fix this crashed.
TEST(VhostFuzzRegression, InflightFdReplacedWhileRingRuns)
{
    fuzz::VhostMsgSeed s(15);
    s.msg0(kGetFeatures);
    s.msg(kSetProtocolFeatures, uint64_t(kPMq | kPReplyAck | kPInflightShmfd));
    s.msg(kSetFeatures, uint64_t(kFVersion1 | kFProtocolFeatures));
    s.msg(kGetInflightFd, InflightDesc{0, 0, 1, 16});
    struct {
        MemTableHeader h;
        MemRegionDesc r;
    } t{{1, 0}, {0, fuzz::VhostMsgHarness::kGuestBytes, 0x7f0000000000ull, 0}};
    s.msg(kSetMemTable, t, {0});
    s.msg(kSetVringNum, VringState{0, 16});
    s.msg(kSetVringAddr,
          VringAddr{0, 0, 0x7f0000001000ull, 0x7f0000003000ull, 0x7f0000002000ull, 0});
    s.msg(kSetVringKick, uint64_t(0), {3});
    s.msg(kSetVringEnable, VringState{0, 1});
    Desc d{0x4000, 8, 0, 0};
    s.write(0x1000, &d, sizeof(d));
    uint16_t idx = 1;
    s.write(0x2002, &idx, 2);
    s.serve(0, 1, 0);
    s.msg(kGetInflightFd, InflightDesc{0, 0, 1, 16}); // the first buffer goes
    idx = 2;
    s.write(0x2002, &idx, 2);
    s.serve(0, 1, 0);
    fuzz::VhostMsgHarness h;
    EXPECT_EQ(h.run(s.b.data(), s.b.size()), "");
}

// Found reading the walker while writing fuzz_virtqueue (UBSan does not
// check the alignment of atomic builtins, so the fuzzer cannot see it):
// SET_VRING_ADDR checks alignment of front-end addresses, but a region
// whose userspace_addr and host mapping disagree modulo 4 (any front-end
// can say so) put avail->idx and the used entries at odd host addresses,
// where the 16/32-bit atomics split across cache lines: slow, and a SIGBUS
// on hosts with split lock detection set to fatal.  Such a ring is now
// refused like one outside the table.
TEST(VhostFuzzRegression, RingMisalignedInHostMemoryIsRefused)
{
    std::vector<uint8_t> mem(0x20000);
    std::string err;
    // Region starts at front-end address ...001: uva 0x...1000 is host +0xfff.
    auto table =
        MemoryTable::over({{0x10000, 0x10000, 0x7f0000000001ull, 0}}, {mem.data() + 16}, err);
    ASSERT_TRUE(table) << err;
    Virtqueue vq(0);
    vq.set_features(kFVersion1);
    ASSERT_EQ(vq.set_num(16), "");
    ASSERT_EQ(vq.set_memory(table), "");
    EXPECT_NE(vq.set_addr({0, 0, 0x7f0000001000ull, 0x7f0000003000ull, 0x7f0000002000ull, 0}), "");
    vq.set_kick(Fd());
    EXPECT_FALSE(vq.running());
    Chain c;
    EXPECT_EQ(vq.try_pop(c), -1) << "a misaligned ring must be broken, not served";
}
