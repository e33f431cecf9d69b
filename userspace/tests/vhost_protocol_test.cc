// SPDX-License-Identifier: GPL-2.0
// vhost-user message parsing, socket framing, the memory table, inflight
// tracking and the back-end state machine, without a VMM.
#include "transport/vhost_user/backend.h"
#include "transport/vhost_user/connection.h"
#include "transport/vhost_user/inflight.h"
#include "transport/vhost_user/memory.h"
#include "transport/vhost_user/protocol.h"

#include <gtest/gtest.h>

#include <cstring>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace holdfast;
using namespace holdfast::vhost;

namespace {

std::string parse_bytes(uint32_t req, const std::vector<uint8_t> &payload, std::vector<int> fds,
                        Message &m, uint32_t flags = kVersion)
{
    MsgHeader h{req, flags, uint32_t(payload.size())};
    return parse(h, payload, fds, 17, m);
}

template <class T> std::vector<uint8_t> bytes_of(const T &v)
{
    std::vector<uint8_t> b(sizeof(T));
    std::memcpy(b.data(), &v, sizeof(T));
    return b;
}

} // namespace

TEST(VhostParse, HeaderChecks)
{
    Message m;
    EXPECT_NE(parse_bytes(kGetFeatures, {}, {}, m, 0), "") << "version 0";
    EXPECT_NE(parse_bytes(kGetFeatures, {}, {}, m, kVersion | kReplyFlag), "") << "reply flag";
    EXPECT_EQ(parse_bytes(kGetFeatures, {}, {}, m), "");
    EXPECT_NE(parse_bytes(999, {}, {}, m), "") << "unknown request";
    MsgHeader h{kSetFeatures, kVersion, 16}; // claims more than there is
    std::vector<uint8_t> eight(8);
    EXPECT_NE(parse(h, eight, {}, 17, m), "");
}

TEST(VhostParse, PayloadSizes)
{
    Message m;
    EXPECT_EQ(parse_bytes(kSetFeatures, bytes_of(uint64_t(5)), {}, m), "");
    EXPECT_EQ(m.u64, 5u);
    EXPECT_NE(parse_bytes(kSetFeatures, std::vector<uint8_t>(4), {}, m), "");
    EXPECT_NE(parse_bytes(kSetVringNum, std::vector<uint8_t>(12), {}, m), "");
    EXPECT_NE(parse_bytes(kSetVringAddr, std::vector<uint8_t>(39), {}, m), "");
}

TEST(VhostParse, VringIndexBounded)
{
    Message m;
    EXPECT_EQ(parse_bytes(kSetVringNum, bytes_of(VringState{16, 128}), {}, m), "");
    EXPECT_NE(parse_bytes(kSetVringNum, bytes_of(VringState{17, 128}), {}, m), "");
    EXPECT_NE(parse_bytes(kSetVringAddr, bytes_of(VringAddr{200, 0, 0, 0, 0, 0}), {}, m), "");
    EXPECT_NE(parse_bytes(kGetVringBase, bytes_of(VringState{0xffffffff, 0}), {}, m), "");
}

TEST(VhostParse, VringFdMessages)
{
    Message m;
    EXPECT_EQ(parse_bytes(kSetVringKick, bytes_of(uint64_t(1)), {7}, m), "");
    EXPECT_NE(parse_bytes(kSetVringKick, bytes_of(uint64_t(1)), {}, m), "") << "fd missing";
    EXPECT_EQ(parse_bytes(kSetVringKick, bytes_of(uint64_t(1 | kVringNoFd)), {}, m), "");
    EXPECT_NE(parse_bytes(kSetVringKick, bytes_of(uint64_t(1 | kVringNoFd)), {7}, m), "")
        << "fd with the no-fd flag";
    EXPECT_NE(parse_bytes(kSetVringCall, bytes_of(uint64_t(1 | 1u << 12)), {7}, m), "")
        << "reserved bits";
    EXPECT_NE(parse_bytes(kSetVringCall, bytes_of(uint64_t(20)), {7}, m), "") << "index";
    EXPECT_NE(parse_bytes(kSetVringErr, bytes_of(uint64_t(0)), {7, 8}, m), "") << "two fds";
}

TEST(VhostParse, MemTable)
{
    Message m;
    std::vector<uint8_t> p(8 + 2 * sizeof(MemRegionDesc));
    MemTableHeader h{2, 0};
    std::memcpy(p.data(), &h, sizeof(h));
    MemRegionDesc r{0x1000, 0x2000, 0x7000, 0};
    std::memcpy(p.data() + 8, &r, sizeof(r));
    std::memcpy(p.data() + 8 + sizeof(r), &r, sizeof(r));
    EXPECT_EQ(parse_bytes(kSetMemTable, p, {3, 4}, m), "");
    EXPECT_EQ(m.regions.size(), 2u);
    EXPECT_NE(parse_bytes(kSetMemTable, p, {3}, m), "") << "one fd per region";
    h.nregions = 9;
    std::memcpy(p.data(), &h, sizeof(h));
    EXPECT_NE(parse_bytes(kSetMemTable, p, {3, 4}, m), "") << "more regions than allowed";
    h.nregions = 3;
    std::memcpy(p.data(), &h, sizeof(h));
    EXPECT_NE(parse_bytes(kSetMemTable, p, {3, 4, 5}, m), "") << "payload too short";
    h.nregions = 0;
    std::memcpy(p.data(), &h, sizeof(h));
    EXPECT_NE(parse_bytes(kSetMemTable, p, {}, m), "");
}

TEST(VhostParse, Inflight)
{
    Message m;
    EXPECT_EQ(parse_bytes(kGetInflightFd, bytes_of(InflightDesc{0, 0, 2, 128}), {}, m), "");
    EXPECT_NE(parse_bytes(kGetInflightFd, bytes_of(InflightDesc{0, 0, 2, 100}), {}, m), "");
    EXPECT_NE(parse_bytes(kGetInflightFd, bytes_of(InflightDesc{0, 0, 0, 128}), {}, m), "");
    EXPECT_NE(parse_bytes(kGetInflightFd, bytes_of(InflightDesc{0, 0, 300, 128}), {}, m), "");
    EXPECT_NE(parse_bytes(kSetInflightFd, bytes_of(InflightDesc{4096, 0, 2, 128}), {}, m), "")
        << "fd missing";
}

TEST(VhostConnection, FramingAndFds)
{
    int sv[2];
    ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    Fd a(sv[0]), b(sv[1]);
    Fd ev(eventfd(0, EFD_CLOEXEC));
    std::string err;
    // A SET_VRING_KICK with an fd, as a front-end sends it.
    std::vector<uint8_t> msg(sizeof(MsgHeader) + 8);
    MsgHeader h{kSetVringKick, kVersion, 8};
    uint64_t v = 2;
    std::memcpy(msg.data(), &h, sizeof(h));
    std::memcpy(msg.data() + sizeof(h), &v, 8);
    ASSERT_TRUE(send_message(a.get(), msg, ev.get(), err)) << err;
    MsgHeader got;
    std::vector<uint8_t> payload;
    std::vector<int> fds;
    ASSERT_EQ(read_message(b.get(), got, payload, fds, err), 1) << err;
    EXPECT_EQ(got.request, uint32_t(kSetVringKick));
    ASSERT_EQ(fds.size(), 1u);
    Message m;
    EXPECT_EQ(parse(got, payload, fds, 17, m), "");
    for (int fd : fds)
        close(fd);
    // An oversized payload is refused before anything is allocated.
    MsgHeader big{kSetFeatures, kVersion, 1u << 30};
    std::vector<uint8_t> hb(sizeof(big));
    std::memcpy(hb.data(), &big, sizeof(big));
    ASSERT_TRUE(send_message(a.get(), hb, -1, err));
    EXPECT_EQ(read_message(b.get(), got, payload, fds, err), -1);
    // EOF.
    a.reset();
    EXPECT_EQ(read_message(b.get(), got, payload, fds, err), 0);
}

TEST(VhostMemory, Validation)
{
    std::vector<uint8_t> buf(8192);
    std::string err;
    EXPECT_FALSE(MemoryTable::over({{0, 0, 0, 0}}, {buf.data()}, err)) << "empty region";
    EXPECT_FALSE(MemoryTable::over({{~0ull - 10, 100, 0, 0}}, {buf.data()}, err)) << "wraps";
    EXPECT_FALSE(MemoryTable::over({{0x1000, 0x1000, 0, 0}, {0x1800, 0x1000, 0x10000, 0}},
                                   {buf.data(), buf.data()}, err))
        << "overlap in guest-physical space";
    EXPECT_FALSE(MemoryTable::over({{0x1000, 0x1000, 0, 0}, {0x4000, 0x1000, 0x800, 0}},
                                   {buf.data(), buf.data()}, err))
        << "overlap in front-end space";
    auto t = MemoryTable::over({{0x1000, 0x1000, 0x9000, 0}}, {buf.data()}, err);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->gpa_ptr(0x1000, 0x1000), buf.data());
    EXPECT_EQ(t->gpa_ptr(0x1fff, 1), buf.data() + 0xfff);
    EXPECT_EQ(t->gpa_ptr(0x1fff, 2), nullptr);
    EXPECT_EQ(t->gpa_ptr(0xfff, 1), nullptr);
    EXPECT_EQ(t->uva_ptr(0x9000, 0x1000), buf.data());
    EXPECT_EQ(t->uva_ptr(0x9001, 0x1000), nullptr);
}

TEST(VhostMemory, MapChecksTheFdSize)
{
    Fd fd(memfd_create("t", MFD_CLOEXEC));
    ASSERT_TRUE(fd);
    ASSERT_EQ(0, ftruncate(fd.get(), 1 << 20));
    std::string err;
    auto t = MemoryTable::map({{0, 1 << 20, 0x10000000, 0}}, {fd.get()}, err);
    ASSERT_TRUE(t) << err;
    // Past the end of the memfd: would SIGBUS on access, so refused.
    EXPECT_FALSE(MemoryTable::map({{0, 1 << 20, 0x10000000, 4096}}, {fd.get()}, err));
    EXPECT_FALSE(MemoryTable::map({{0, 2 << 20, 0x10000000, 0}}, {fd.get()}, err));
    Fd ev(eventfd(0, EFD_CLOEXEC));
    EXPECT_FALSE(MemoryTable::map({{0, 4096, 0x10000000, 0}}, {ev.get()}, err)) << "not a file";
    // An unaligned mmap offset is handled.
    auto u = MemoryTable::map({{0, 4096, 0x10000000, 100}}, {fd.get()}, err);
    ASSERT_TRUE(u) << err;
    t->gpa_ptr(100, 1)[0] = 0x5a;
    EXPECT_EQ(u->gpa_ptr(0, 1)[0], 0x5a);
}

TEST(VhostInflight, RecordAndResubmitInOrder)
{
    std::vector<uint8_t> mem(inflight_queue_bytes(8) * 2);
    InflightArea a = InflightArea::over(mem.data(), mem.size(), 2, 8);
    ASSERT_TRUE(a.valid());
    InflightQueue q;
    ASSERT_EQ(q.attach(a.queue(1), 8, 0), "");
    q.popped(5);
    q.popped(2);
    q.popped(7);
    q.pushing(2);
    q.pushed(2, 1);
    // A successor attaches to the same region: 5 then 7 are resubmitted.
    InflightQueue s;
    ASSERT_EQ(s.attach(a.queue(1), 8, 1), "");
    EXPECT_EQ(s.resubmit(1), (std::vector<uint16_t>{5, 7}));
}

TEST(VhostInflight, CrashBetweenUsedIdxAndClearingFlags)
{
    std::vector<uint8_t> mem(inflight_queue_bytes(8));
    InflightArea a = InflightArea::over(mem.data(), mem.size(), 1, 8);
    InflightQueue q;
    ASSERT_EQ(q.attach(a.queue(0), 8, 0), "");
    q.popped(1);
    q.popped(3);
    q.pushing(3);
    // ... used->idx moved to 1 in guest memory, then the back-end died
    // before pushed(): the region still says 3 is in flight.
    InflightQueue s;
    ASSERT_EQ(s.attach(a.queue(0), 8, 1), "");
    EXPECT_EQ(s.resubmit(1), (std::vector<uint16_t>{1}));
}

TEST(VhostInflight, HostileRegion)
{
    std::vector<uint8_t> mem(inflight_queue_bytes(8));
    InflightArea a = InflightArea::over(mem.data(), mem.size(), 1, 8);
    QueueRegionSplit *r = a.queue(0);
    r->version = 7;
    InflightQueue q;
    EXPECT_NE(q.attach(r, 8, 0), "") << "unknown version";
    r->version = 1;
    r->desc_num = 16;
    EXPECT_NE(q.attach(r, 8, 0), "") << "size mismatch";
    r->desc_num = 8;
    // A batch list that points outside the ring and a used_idx far off.
    r->last_batch_head = 200;
    r->used_idx = 0;
    r->desc[4].inflight = 1;
    r->desc[4].counter = 9;
    ASSERT_EQ(q.attach(r, 8, 0), "");
    EXPECT_EQ(q.resubmit(50000), (std::vector<uint16_t>{4}));
    EXPECT_FALSE(a.queue(1));
}

TEST(VhostInflight, AttachChecksTheFd)
{
    std::string err;
    InflightArea a = InflightArea::create(2, 64, err);
    ASSERT_TRUE(a.valid()) << err;
    InflightArea b = InflightArea::attach(a.fd(), a.size(), 0, 2, 64, err);
    EXPECT_TRUE(b.valid()) << err;
    a.queue(1)->used_idx = 77;
    EXPECT_EQ(b.queue(1)->used_idx, 77) << "same shared memory";
    EXPECT_FALSE(InflightArea::attach(a.fd(), a.size() * 2, 0, 2, 64, err).valid())
        << "larger than the fd";
    EXPECT_FALSE(InflightArea::attach(a.fd(), a.size(), 0, 4, 64, err).valid())
        << "too small for its queues";
}

namespace {
Message msg(uint32_t req, uint64_t u64 = 0)
{
    Message m;
    m.request = req;
    m.flags = kVersion;
    m.u64 = u64;
    return m;
}
} // namespace

TEST(VhostBackend, Negotiation)
{
    Backend be({});
    Response r;
    Message m = msg(kGetFeatures);
    ASSERT_EQ(be.handle(m, r), "");
    ASSERT_EQ(r.bytes.size(), sizeof(MsgHeader) + 8);
    uint64_t f;
    std::memcpy(&f, r.bytes.data() + sizeof(MsgHeader), 8);
    EXPECT_TRUE(f & kFProtocolFeatures);
    EXPECT_TRUE(f & kFVersion1);
    m = msg(kSetFeatures, f | (1ull << 40));
    EXPECT_NE(be.handle(m, r), "") << "acking a feature never offered";
    m = msg(kSetFeatures, f);
    EXPECT_EQ(be.handle(m, r), "");
    m = msg(kSetProtocolFeatures, kPMq | kPReplyAck | kPInflightShmfd);
    EXPECT_EQ(be.handle(m, r), "");
    r = {};
    m = msg(kGetQueueNum);
    ASSERT_EQ(be.handle(m, r), "");
    std::memcpy(&f, r.bytes.data() + sizeof(MsgHeader), 8);
    EXPECT_EQ(f, 17u);
    // REPLY_ACK: a failing request with need_reply is answered, not fatal.
    r = {};
    m = msg(kSetVringEnable);
    m.flags |= kNeedReply;
    m.state = {0, 5};
    EXPECT_EQ(be.handle(m, r), "");
    ASSERT_EQ(r.bytes.size(), sizeof(MsgHeader) + 8);
    std::memcpy(&f, r.bytes.data() + sizeof(MsgHeader), 8);
    EXPECT_NE(f, 0u);
}

TEST(VhostBackend, InflightFdRoundTrip)
{
    Backend be({});
    Response r;
    Message m = msg(kSetProtocolFeatures, kPInflightShmfd);
    ASSERT_EQ(be.handle(m, r), "");
    m = msg(kGetInflightFd);
    m.inflight = {0, 0, 2, 128};
    ASSERT_EQ(be.handle(m, r), "");
    ASSERT_GE(r.fd, 0);
    InflightDesc d;
    std::memcpy(&d, r.bytes.data() + sizeof(MsgHeader), sizeof(d));
    EXPECT_EQ(d.mmap_size, 2 * inflight_queue_bytes(128));
    EXPECT_EQ(d.num_queues, 2);
    // The front-end gives it back.
    m = msg(kSetInflightFd);
    m.inflight = d;
    m.fds = {dup(r.fd)};
    Response r2;
    EXPECT_EQ(be.handle(m, r2), "");
    for (int fd : m.fds)
        if (fd >= 0)
            close(fd);
    // Without the protocol feature it is refused.
    Backend be2({});
    m = msg(kGetInflightFd);
    m.inflight = {0, 0, 2, 128};
    EXPECT_NE(be2.handle(m, r2), "");
}

TEST(VhostBackend, BadMemTableIsRefused)
{
    Backend be({});
    Response r;
    Fd ev(eventfd(0, EFD_CLOEXEC));
    Message m = msg(kSetMemTable);
    m.regions = {{0, 4096, 0x1000, 0}};
    m.fds = {ev.get()};
    EXPECT_NE(be.handle(m, r), "");
    EXPECT_FALSE(be.memory());
}
