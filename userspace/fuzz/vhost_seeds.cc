// SPDX-License-Identifier: GPL-2.0
// Writes the seed corpora of fuzz_vhost_msg and fuzz_virtqueue: the
// message sequences QEMU's vhost-user-fs-pci sends (its start-up
// handshake, ring set-up, inflight buffer, stop and reconnect) with a
// guest using the rings in between, and rings a guest lays out (direct and
// indirect chains, EVENT_IDX, two adjacent regions, inflight resubmission),
// each in the harness's input format.  Every seed is checked to run clean
// through its harness before it is written.
//
//   holdfast-vhost-seeds DIR     writes DIR/fuzz_vhost_msg/seed-* and
//                                DIR/fuzz_virtqueue/seed-*
#include "vhost_msg_harness.h"
#include "virtqueue_harness.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

using namespace holdfast;
using namespace holdfast::vhost;
using holdfast::fuzz::VhostMsgSeed;
using holdfast::fuzz::VirtqueueSeed;

namespace {

std::string out_dir;
int failures = 0;

template <class Harness>
void save(Harness &h, const char *target, const std::string &name, const std::vector<uint8_t> &b)
{
    std::string err = h.run(b.data(), b.size());
    if (!err.empty()) {
        fprintf(stderr, "%s/%s: %s\n", target, name.c_str(), err.c_str());
        failures++;
    }
    // "regressions/x": a reproducer, kept under its own name.
    bool repro = name.rfind("regressions/", 0) == 0;
    std::filesystem::path file =
        std::filesystem::path(out_dir) / target / (repro ? name + ".bin" : "seed-" + name);
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary)
        .write(reinterpret_cast<const char *>(b.data()), std::streamsize(b.size()));
}

// ---- fuzz_vhost_msg: what QEMU sends -------------------------------------

constexpr uint64_t kUva = 0x7f0000000000ull;
constexpr uint16_t kNum = 16;
constexpr uint64_t kDesc = 0x1000, kAvail = 0x2000, kUsed = 0x3000, kBuf = 0x4000;
constexpr uint64_t kFeatures = kFVersion1 | kFIndirectDesc | kFEventIdx | kFProtocolFeatures;
constexpr uint8_t kAck = kVersion | kNeedReply;

void handshake(VhostMsgSeed &s, uint64_t proto)
{
    s.msg0(kGetFeatures);
    s.msg0(kGetProtocolFeatures);
    s.msg(kSetProtocolFeatures, proto);
    s.msg0(kGetQueueNum);
    s.msg0(kSetOwner);
    s.msg(kSetFeatures, kFeatures);
}

void mem_table(VhostMsgSeed &s, uint8_t fd = 0)
{
    struct {
        MemTableHeader h;
        MemRegionDesc r;
    } t{{1, 0}, {0, uint64_t(fuzz::VhostMsgHarness::kGuestBytes), kUva, 0}};
    s.msg(kSetMemTable, t, {fd}, kAck);
}

void ring(VhostMsgSeed &s, uint32_t q, uint16_t base = 0)
{
    uint64_t off = q * 0x8000ull; // queue 1's ring in the upper half
    s.msg(kSetVringNum, VringState{q, kNum});
    s.msg(kSetVringBase, VringState{q, base});
    s.msg(kSetVringAddr,
          VringAddr{q, 0, kUva + off + kDesc, kUva + off + kUsed, kUva + off + kAvail, 0});
    s.msg(kSetVringCall, uint64_t(q), {4});
    s.msg(kSetVringKick, uint64_t(q), {3});
    s.msg(kSetVringEnable, VringState{q, 1}, {}, kAck);
}

// The guest puts a two-descriptor request (in header, out reply room) on
// queue q's ring at avail slot `slot`, head `head`.
void guest_request(VhostMsgSeed &s, uint32_t q, uint16_t slot, uint16_t head, bool indirect = false)
{
    uint64_t off = q * 0x8000ull;
    Desc d[2] = {{off + kBuf + head * 256ull, 64, kDescNext, uint16_t((head + 1) % kNum)},
                 {off + kBuf + head * 256ull + 64, 128, kDescWrite, 0}};
    if (indirect) {
        Desc ind[2] = {{off + kBuf + head * 256ull, 64, kDescNext, 1},
                       {off + kBuf + head * 256ull + 64, 128, kDescWrite, 0}};
        s.write(uint16_t(off + kBuf + 0x2000 + head * 32), ind, sizeof(ind));
        Desc top{off + kBuf + 0x2000 + head * 32ull, 32, kDescIndirect, 0};
        s.write(uint16_t(off + kDesc + head * 16), &top, sizeof(top));
    } else {
        s.write(uint16_t(off + kDesc + head * 16), &d[0], sizeof(Desc));
        s.write(uint16_t(off + kDesc + ((head + 1) % kNum) * 16), &d[1], sizeof(Desc));
    }
    s.write(uint16_t(off + kAvail + 4 + 2 * (slot % kNum)), &head, 2);
    uint16_t idx = uint16_t(slot + 1);
    s.write(uint16_t(off + kAvail + 2), &idx, 2);
}

void stop(VhostMsgSeed &s, uint32_t q)
{
    s.msg(kGetVringBase, VringState{q, 0});
}

void vhost_msg_seeds()
{
    fuzz::VhostMsgHarness h;
    const uint64_t proto = kPMq | kPReplyAck | kPInflightShmfd | kPResetDevice;
    const uint8_t cfg = 15; // 16 queues

    { // QEMU's start-up, two queues, requests served, stop.
        VhostMsgSeed s(cfg);
        handshake(s, proto);
        mem_table(s);
        ring(s, 0);
        ring(s, 1);
        guest_request(s, 1, 0, 0);
        s.serve(1, 4, 40);
        guest_request(s, 1, 1, 2, true);
        s.serve(1, 4, 100);
        guest_request(s, 0, 0, 4);
        s.serve(0, 1 | 8); // held across the stop
        stop(s, 0);
        stop(s, 1);
        s.serve(0, 0, 8);
        save(h, "fuzz_vhost_msg", "qemu-start-stop", s.b);
    }
    { // Inflight buffer: GET, use, drop the connection, SET it back.
        VhostMsgSeed s(cfg);
        handshake(s, proto);
        s.msg(kGetInflightFd, InflightDesc{0, 0, 2, kNum});
        mem_table(s);
        ring(s, 1);
        guest_request(s, 1, 0, 0);
        guest_request(s, 1, 1, 2);
        s.serve(1, 1 | 8); // in flight when the back-end goes away
        s.reconnect();
        handshake(s, proto);
        InflightDesc d{2 * inflight_queue_bytes(kNum), 0, 2, kNum};
        s.msg(kSetInflightFd, d, {6});
        mem_table(s);
        ring(s, 1, 1);
        s.serve(1, 4, 16);
        save(h, "fuzz_vhost_msg", "inflight-reconnect", s.b);
    }
    { // Memory slots and status (offered with config bit 4).
        VhostMsgSeed s(cfg | 0x10);
        handshake(s, proto | kPConfigureMemSlots | kPStatus);
        s.msg0(kGetMaxMemSlots);
        SingleMemRegion r{0, {0, 0x8000, kUva, 0}};
        s.msg(kAddMemReg, r, {0}, kAck);
        SingleMemRegion r2{0, {0x8000, 0x8000, kUva + 0x8000, 0x8000}};
        s.msg(kAddMemReg, r2, {0}, kAck);
        ring(s, 0);
        guest_request(s, 0, 0, 0);
        s.serve(0, 1, 10);
        s.msg(kRemMemReg, r2, {}, kAck);
        s.msg(kSetStatus, uint64_t(0xf));
        s.msg0(kGetStatus);
        s.msg0(kResetDevice);
        save(h, "fuzz_vhost_msg", "mem-slots-status", s.b);
    }
    { // Replacing the memory table under running rings, RESET_OWNER.
        VhostMsgSeed s(cfg);
        handshake(s, proto);
        mem_table(s);
        ring(s, 0);
        guest_request(s, 0, 0, 0);
        s.serve(0, 1 | 8);
        mem_table(s, 1);
        s.serve(0, 1, 4);
        s.msg0(kResetOwner);
        save(h, "fuzz_vhost_msg", "remap-reset", s.b);
    }
    // Refused messages, one per seed: each drops the connection.
    struct Bad {
        const char *name;
        uint8_t req, flags;
        std::vector<uint8_t> fds;
        std::vector<uint8_t> payload;
    };
    std::vector<Bad> bad = {
        {"bad-version", kGetFeatures, 2, {}, {}},
        {"reply-flag", kGetFeatures, kVersion | kReplyFlag, {}, {}},
        {"too-many-fds", kSetMemTable, kVersion, {0, 1, 2, 3, 4, 5, 6, 0, 1}, {}},
        {"unknown-request", 60, kVersion, {}, {}},
        {"short-vring-addr", kSetVringAddr, kVersion, {}, {0, 0, 0, 0}},
        {"fd-on-getfeatures", kGetFeatures, kVersion, {3}, {}},
        {"pipe-as-memory", kSetMemTable, kVersion, {5}, {1,          0,    0, 0, 0, 0,    0, 0,
                                                         /*gpa*/ 0,  0,    0, 0, 0, 0,    0, 0,
                                                         /*size*/ 0, 0x10, 0, 0, 0, 0,    0, 0,
                                                         /*uva*/ 0,  0,    0, 0, 0, 0x7f, 0, 0,
                                                         /*off*/ 0,  0,    0, 0, 0, 0,    0, 0}},
    };
    for (auto &b : bad) {
        VhostMsgSeed s(cfg);
        handshake(s, proto);
        s.msg(b.req, b.fds, b.payload.data(), b.payload.size(), b.flags);
        s.msg0(kGetFeatures);
        save(h, "fuzz_vhost_msg", b.name, s.b);
    }
    { // Reproducer: a second GET_INFLIGHT_FD while a ring runs (the old
      // buffer is unmapped; the ring kept writing it until it was fixed).
        VhostMsgSeed s(cfg);
        handshake(s, proto);
        s.msg(kGetInflightFd, InflightDesc{0, 0, 2, kNum});
        mem_table(s);
        ring(s, 0);
        guest_request(s, 0, 0, 0);
        s.serve(0, 1, 8);
        s.msg(kGetInflightFd, InflightDesc{0, 0, 2, kNum});
        guest_request(s, 0, 1, 2);
        s.serve(0, 1, 8);
        save(h, "fuzz_vhost_msg", "regressions/inflight-replaced-while-running", s.b);
    }
    { // A payload over the limit.
        VhostMsgSeed s(cfg);
        std::vector<uint8_t> big(kMaxPayload + 8);
        s.msg(kSetConfig, {}, big.data(), big.size());
        save(h, "fuzz_vhost_msg", "oversize", s.b);
    }
}

// ---- fuzz_virtqueue: what a guest lays out ---------------------------------

constexpr uint64_t kGpa0 = 0x100000, kGpa1 = 0x110000;
constexpr uint64_t kQUva = 0x7f0000000000ull;
constexpr uint64_t kT = kGpa0, kA = kGpa0 + 0x1000, kU = kGpa0 + 0x2000, kD = kGpa0 + 0x4000;

VirtqueueSeed ring_seed(uint8_t flags, uint8_t log2num = 4)
{
    return VirtqueueSeed(flags, log2num,
                         {{kGpa0, 0x10000, kGpa0 + kQUva}, {kGpa1, 0x1000, kGpa1 + kQUva}},
                         kT + kQUva, kA + kQUva, kU + kQUva);
}

void virtqueue_seeds()
{
    fuzz::VirtqueueHarness h;
    const uint8_t kInd = 1, kEv = 2, kMemfd = 4, kInfl = 8;
    { // A request and its reply room; completed.
        auto s = ring_seed(kInd | kEv);
        s.desc(0, kD, 40, kDescNext, 1);
        s.desc(1, kD + 64, 200, kDescWrite, 0);
        s.offer(0);
        s.pop(1, 60);
        s.offer(0);
        s.pop(1, 5000);
        save(h, "fuzz_virtqueue", "direct", s.b);
    }
    { // The same over memfd-backed regions, plus a buffer that spans both.
        auto s = ring_seed(kInd | kMemfd);
        s.desc(0, kGpa1 - 8, 16, kDescNext, 1);
        s.desc(1, kD, 64, kDescWrite, 0);
        s.offer(0);
        s.pop(2, 16);
        s.walk(0, 1, 16);
        save(h, "fuzz_virtqueue", "memfd-spanning", s.b);
    }
    { // Indirect tables: good, nested, bad size, with NEXT.
        auto s = ring_seed(kInd);
        vhost::Desc ind[3] = {
            {kD, 16, kDescNext, 1}, {kD + 32, 16, kDescNext, 2}, {kD + 64, 100, kDescWrite, 0}};
        s.write(kGpa0 + 0x3000, ind, sizeof(ind));
        s.desc(0, kGpa0 + 0x3000, sizeof(ind), kDescIndirect, 0);
        s.desc(1, kGpa0 + 0x3000, 20, kDescIndirect, 0);
        s.desc(2, kGpa0 + 0x3000, sizeof(ind), kDescIndirect | kDescNext, 0);
        vhost::Desc nested{kGpa0 + 0x3000, 48, kDescIndirect, 0};
        s.write(kGpa0 + 0x3100, &nested, sizeof(nested));
        s.desc(3, kGpa0 + 0x3100, 16, kDescIndirect, 0);
        for (uint16_t i = 0; i < 4; i++)
            s.offer(i);
        s.pop(8, 50);
        s.walk(0, 2, 2);
        save(h, "fuzz_virtqueue", "indirect", s.b);
    }
    { // Loops, out of the table, overflowing lengths, a bad avail index.
        auto s = ring_seed(0);
        s.desc(0, kD, 8, kDescNext, 1);
        s.desc(1, kD, 8, kDescNext, 0);
        s.desc(2, 0xfffffffffffff000ull, 0x2000, 0, 0);
        s.desc(3, kD, 0xffffffffu, kDescNext, 4);
        s.desc(4, kD, 0xffffffffu, 0, 0);
        s.desc(5, kD, 8, kDescNext, 200);
        for (uint16_t i = 0; i < 6; i++)
            s.offer(i);
        s.pop(8, 0);
        s.avail_idx(1000);
        s.pop(1, 0);
        save(h, "fuzz_virtqueue", "hostile", s.b);
    }
    { // EVENT_IDX: used_event moves; held completions; stop and restart.
        auto s = ring_seed(kEv);
        s.desc(0, kD, 8, 0, 0);
        s.desc(1, kD + 8, 8, kDescWrite, 0);
        s.event(0, 0);
        s.offer(0);
        s.offer(1);
        s.hold();
        s.hold();
        s.complete_held(4);
        s.event(5, 1);
        s.complete_held(8);
        s.offer(0);
        s.hold();
        s.restart(3);
        s.complete_held(1);
        s.remap();
        s.offer(1);
        s.pop(1, 2);
        save(h, "fuzz_virtqueue", "event-idx", s.b);
    }
    { // An inflight buffer a predecessor left: heads 2 and 5 in flight.
        auto s = ring_seed(kInfl | kInd);
        s.inflight(4, 1, 16, 0, 0);
        uint8_t st[16] = {1};
        st[8] = 7; // counter
        s.inflight_write(16 + 2 * 16, st, 16);
        st[8] = 3;
        s.inflight_write(16 + 5 * 16, st, 16);
        s.desc(2, kD, 8, 0, 0);
        s.desc(5, kD, 8, kDescWrite, 0);
        s.restart(0);
        s.pop(4, 8);
        save(h, "fuzz_virtqueue", "inflight-resubmit", s.b);
    }
}

} // namespace

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    vhost_msg_seeds();
    virtqueue_seeds();
    return failures ? 1 : 0;
}
