// SPDX-License-Identifier: GPL-2.0
// The back-end request channel (SHMEM_MAP/SHMEM_UNMAP) against a fake
// front-end on a socketpair, and the back-end's part in setting it up
// (BACKEND_REQ, SHMEM, SET_BACKEND_REQ_FD, GET_SHMEM_CONFIG).  The
// front-end's replies are hostile input: every malformed or missing one
// must fail the request, in bounded time, without a crash or a leaked fd.
#include "transport/vhost_user/backend.h"
#include "transport/vhost_user/backend_channel.h"
#include "transport/vhost_user/connection.h"
#include "transport/vhost_user/protocol.h"
#include "quiet_log.h"
#include "util/log.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace holdfast;
using namespace holdfast::vhost;

namespace {

constexpr uint64_t kWin = 256ull << 20;

using test::QuietLog;

// MMapMsg's fields, unpacked: gtest binds what it compares to references,
// which a packed struct's members cannot back (UBSan: misaligned).
struct MMapFields {
    uint8_t shmid = 0;
    uint64_t fd_offset = 0, shm_offset = 0, len = 0, flags = 0;
};

// One request as the front-end saw it.
struct Seen {
    MsgHeader hdr{};
    MMapFields msg{};
    size_t payload = 0;
    std::vector<int> fds;
};

// The front-end's end of the channel.  Each request is answered by
// `answer` (which writes whatever it likes, or nothing).
class FakeFrontEnd {
  public:
    FakeFrontEnd()
    {
        int sv[2];
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        ours = Fd(sv[0]);
        theirs = Fd(sv[1]);
    }
    ~FakeFrontEnd()
    {
        stop();
        for (auto &s : seen)
            for (int fd : s.fds)
                close(fd);
    }

    // Serves requests until the back-end closes its end.
    void serve(std::function<void(int sock, const Seen &)> answer)
    {
        thread = std::thread([this, answer] {
            for (;;) {
                MsgHeader h;
                std::vector<uint8_t> payload;
                std::vector<int> fds;
                std::string err;
                if (read_message(ours.get(), h, payload, fds, err) != 1)
                    return;
                Seen s;
                s.hdr = h;
                s.payload = payload.size();
                if (payload.size() == sizeof(MMapMsg)) {
                    MMapMsg m;
                    std::memcpy(&m, payload.data(), sizeof(m));
                    s.msg = {m.shmid, m.fd_offset, m.shm_offset, m.len, m.flags};
                }
                s.fds = fds;
                seen.push_back(s);
                answer(ours.get(), s);
            }
        });
    }
    void stop()
    {
        if (thread.joinable()) {
            shutdown(ours.get(), SHUT_RDWR);
            thread.join();
        }
    }
    static void reply(int sock, uint32_t request, uint64_t value,
                      uint32_t flags = kVersion | kReplyFlag)
    {
        auto b = reply_u64(request, value);
        MsgHeader h{request, flags, 8};
        std::memcpy(b.data(), &h, sizeof(h));
        std::string err;
        send_message(sock, b, -1, err);
    }

    Fd ours, theirs;
    std::thread thread;
    std::vector<Seen> seen;
};

Fd some_file()
{
    Fd fd(open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
    EXPECT_TRUE(fd);
    return fd;
}

bool same_file(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

int open_fds()
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            n++;
    return n;
}

} // namespace

TEST(VhostDax, ConstantsMatchTheSpec)
{
    EXPECT_EQ(kBackendShmemMap, 9u);
    EXPECT_EQ(kBackendShmemUnmap, 10u);
    EXPECT_EQ(uint32_t(kGetShmemConfig), 44u);
    EXPECT_EQ(kPShmem, 1ull << 20);
    EXPECT_EQ(kPBackendReq, 1ull << 5);
    EXPECT_EQ(kMMapRw, 1u);
    EXPECT_EQ(sizeof(MMapMsg), 40u);
    EXPECT_EQ(offsetof(MMapMsg, fd_offset), 8u);
    EXPECT_EQ(offsetof(MMapMsg, shm_offset), 16u);
    EXPECT_EQ(offsetof(MMapMsg, len), 24u);
    EXPECT_EQ(offsetof(MMapMsg, flags), 32u);
    EXPECT_EQ(sizeof(ShmemConfig), 8u + 256 * 8);
}

TEST(VhostDax, EncodeRequest)
{
    MMapMsg m{};
    m.len = 4096;
    auto b = encode_backend_request(kBackendShmemMap, true, &m, sizeof(m));
    ASSERT_EQ(b.size(), sizeof(MsgHeader) + sizeof(m));
    MsgHeader h;
    std::memcpy(&h, b.data(), sizeof(h));
    EXPECT_EQ(h.request, 9u);
    EXPECT_EQ(h.flags, kVersion | kNeedReply);
    EXPECT_EQ(h.size, 40u);
    b = encode_backend_request(kBackendShmemUnmap, false, &m, sizeof(m));
    std::memcpy(&h, b.data(), sizeof(h));
    EXPECT_EQ(h.flags, kVersion);
}

TEST(VhostDax, CheckAck)
{
    uint64_t v = 7;
    std::vector<uint8_t> eight(8, 0), four(4, 0);
    MsgHeader ok{9, kVersion | kReplyFlag, 8};
    EXPECT_EQ(check_ack(9, ok, eight, v), "");
    EXPECT_EQ(v, 0u);
    MsgHeader h = ok;
    h.request = 10;
    EXPECT_NE(check_ack(9, h, eight, v), "");
    h = ok;
    h.flags = kVersion;
    EXPECT_NE(check_ack(9, h, eight, v), "") << "no reply flag";
    h.flags = kVersion | kReplyFlag | kNeedReply;
    EXPECT_NE(check_ack(9, h, eight, v), "") << "need-reply on a reply";
    h.flags = 2 | kReplyFlag;
    EXPECT_NE(check_ack(9, h, eight, v), "") << "version 2";
    h = ok;
    h.size = 4;
    EXPECT_NE(check_ack(9, h, four, v), "") << "short payload";
    EXPECT_NE(check_ack(9, ok, four, v), "") << "size and payload disagree";
}

TEST(VhostDax, MapSendsTheMessageAndTheFd)
{
    FakeFrontEnd fe;
    fe.serve([](int s, const Seen &r) { FakeFrontEnd::reply(s, r.hdr.request, 0); });
    BackendChannel ch(kWin);
    EXPECT_EQ(ch.size(), kWin);
    ch.attach(std::move(fe.theirs), true);
    Fd f = some_file();
    EXPECT_EQ(ch.map(f.get(), 8192, 2 << 20, 2 << 20, true), 0);
    EXPECT_EQ(ch.map(f.get(), 0, 4 << 20, 4096, false), 0);
    EXPECT_EQ(ch.unmap(2 << 20, 2 << 20), 0);
    fe.stop();
    ASSERT_EQ(fe.seen.size(), 3u);
    const Seen &a = fe.seen[0];
    EXPECT_EQ(a.hdr.request, 9u);
    EXPECT_EQ(a.hdr.flags, kVersion | kNeedReply);
    EXPECT_EQ(a.hdr.size, 40u);
    EXPECT_EQ(a.msg.shmid, 0);
    EXPECT_EQ(a.msg.fd_offset, 8192u);
    EXPECT_EQ(a.msg.shm_offset, 2u << 20);
    EXPECT_EQ(a.msg.len, 2u << 20);
    EXPECT_EQ(a.msg.flags, kMMapRw);
    ASSERT_EQ(a.fds.size(), 1u);
    EXPECT_TRUE(same_file(a.fds[0], f.get()));
    EXPECT_EQ(fe.seen[1].msg.flags, 0u);
    const Seen &u = fe.seen[2];
    EXPECT_EQ(u.hdr.request, 10u);
    EXPECT_EQ(u.msg.shm_offset, 2u << 20);
    EXPECT_EQ(u.msg.len, 2u << 20);
    EXPECT_TRUE(u.fds.empty());
}

TEST(VhostDax, WithoutReplyAckNothingIsAwaited)
{
    FakeFrontEnd fe;
    fe.serve([](int, const Seen &) {});
    BackendChannel ch(kWin, 100);
    ch.attach(std::move(fe.theirs), false);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(ch.unmap(0, 4096), 0);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(90));
    fe.stop();
    ASSERT_EQ(fe.seen.size(), 1u);
    EXPECT_EQ(fe.seen[0].hdr.flags, kVersion);
}

TEST(VhostDax, RefusalKeepsTheChannel)
{
    QuietLog q;
    FakeFrontEnd fe;
    fe.serve([](int s, const Seen &r) { FakeFrontEnd::reply(s, r.hdr.request, 1); });
    BackendChannel ch(kWin);
    ch.attach(std::move(fe.theirs), true);
    EXPECT_EQ(ch.unmap(0, 4096), -EREMOTEIO);
    EXPECT_TRUE(ch.connected());
    EXPECT_EQ(ch.unmap(0, 4096), -EREMOTEIO);
}

TEST(VhostDax, NoChannelNothingSent)
{
    QuietLog q;
    BackendChannel ch(kWin);
    EXPECT_FALSE(ch.connected());
    Fd f = some_file();
    EXPECT_EQ(ch.map(f.get(), 0, 0, 4096, false), -ENOTCONN);
    EXPECT_EQ(ch.unmap(0, 4096), -ENOTCONN);
}

// A reply that never comes, comes short, or is not the reply: the request
// fails and the channel is closed (its stream can no longer be trusted).
TEST(VhostDax, HostileRepliesFailTheRequest)
{
    QuietLog q;
    struct Case {
        const char *what;
        std::function<void(int, const Seen &)> answer;
        int expect;
    };
    const Case cases[] = {
        {"silence", [](int, const Seen &) {}, -ETIMEDOUT},
        {"close", [](int s, const Seen &) { shutdown(s, SHUT_RDWR); }, -EIO},
        {"half a header",
         [](int s, const Seen &r) {
             MsgHeader h{r.hdr.request, kVersion | kReplyFlag, 8};
             (void)!write(s, &h, 6);
         },
         -ETIMEDOUT},
        {"half a header, then close",
         [](int s, const Seen &r) {
             MsgHeader h{r.hdr.request, kVersion | kReplyFlag, 8};
             (void)!write(s, &h, 6);
             shutdown(s, SHUT_RDWR);
         },
         -EIO},
        {"header without payload",
         [](int s, const Seen &r) {
             MsgHeader h{r.hdr.request, kVersion | kReplyFlag, 8};
             (void)!write(s, &h, sizeof(h));
         },
         -ETIMEDOUT},
        {"wrong request", [](int s, const Seen &) { FakeFrontEnd::reply(s, 3, 0); }, -EPROTO},
        {"no reply flag",
         [](int s, const Seen &r) { FakeFrontEnd::reply(s, r.hdr.request, 0, kVersion); }, -EPROTO},
        {"4-byte payload",
         [](int s, const Seen &r) {
             MsgHeader h{r.hdr.request, kVersion | kReplyFlag, 4};
             uint8_t b[16] = {};
             std::memcpy(b, &h, sizeof(h));
             (void)!write(s, b, sizeof(h) + 4);
         },
         -EPROTO},
        {"huge size",
         [](int s, const Seen &r) {
             MsgHeader h{r.hdr.request, kVersion | kReplyFlag, 0x7fffffff};
             (void)!write(s, &h, sizeof(h));
         },
         -EPROTO},
    };
    for (const auto &c : cases) {
        FakeFrontEnd fe;
        fe.serve(c.answer);
        // Short only where the wait is the point: a loaded machine may be
        // slow to run the fake front-end's answer.
        const int timeout_ms = c.expect == -ETIMEDOUT ? 200 : 10000;
        BackendChannel ch(kWin, timeout_ms);
        ch.attach(std::move(fe.theirs), true);
        auto t0 = std::chrono::steady_clock::now();
        EXPECT_EQ(ch.unmap(0, 4096), c.expect) << c.what;
        EXPECT_LT(std::chrono::steady_clock::now() - t0,
                  std::chrono::milliseconds(timeout_ms + 2000))
            << c.what;
        EXPECT_FALSE(ch.connected()) << c.what;
        EXPECT_EQ(ch.unmap(0, 4096), -ENOTCONN) << c.what;
    }
}

TEST(VhostDax, FdsInAReplyAreClosed)
{
    FakeFrontEnd fe;
    Fd null(open("/dev/null", O_RDONLY | O_CLOEXEC));
    fe.serve([&](int s, const Seen &r) {
        auto b = reply_u64(r.hdr.request, 0);
        std::string err;
        send_message(s, b, null.get(), err);
    });
    BackendChannel ch(kWin);
    ch.attach(std::move(fe.theirs), true);
    EXPECT_EQ(ch.unmap(0, 4096), 0); // warm up
    int before = open_fds();
    for (int i = 0; i < 20; i++)
        EXPECT_EQ(ch.unmap(0, 4096), 0);
    EXPECT_EQ(open_fds(), before);
}

// Queue workers call in parallel: requests go out one at a time and each
// gets its own acknowledgement.
TEST(VhostDax, ConcurrentRequestsAreSerialized)
{
    FakeFrontEnd fe;
    std::atomic<int> refused{0};
    fe.serve([&](int s, const Seen &r) {
        // Refuse odd offsets, so that a mixed-up ack would show.
        uint64_t v = (r.msg.shm_offset / 4096) % 2;
        refused += int(v);
        FakeFrontEnd::reply(s, r.hdr.request, v);
    });
    BackendChannel ch(kWin);
    ch.attach(std::move(fe.theirs), true);
    std::vector<std::thread> ts;
    std::atomic<int> bad{0}, failed{0};
    for (int t = 0; t < 4; t++)
        ts.emplace_back([&, t] {
            for (uint64_t i = 0; i < 100; i++) {
                uint64_t page = uint64_t(t) * 1000 + i;
                int r = ch.unmap(page * 4096, 4096);
                if (r != ((page % 2) ? -EREMOTEIO : 0))
                    bad++;
                if (r)
                    failed++;
            }
        });
    for (auto &t : ts)
        t.join();
    fe.stop();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(failed.load(), refused.load());
    EXPECT_EQ(fe.seen.size(), 400u);
    for (const auto &s : fe.seen)
        EXPECT_EQ(s.hdr.size, 40u);
}

// ---------------------------------------------------------------------------
// The back-end: what it offers, SET_BACKEND_REQ_FD, GET_SHMEM_CONFIG.

namespace {

std::string handle(Backend &b, uint32_t req, std::vector<uint8_t> payload, std::vector<int> fds,
                   Response &resp, uint32_t flags = kVersion)
{
    MsgHeader h{req, flags, uint32_t(payload.size())};
    Message m;
    std::string e = parse(h, payload, fds, b.max_queues(), m);
    if (e.empty())
        e = b.handle(m, resp);
    for (int fd : m.fds)
        if (fd >= 0)
            close(fd);
    return e;
}

template <class T> std::vector<uint8_t> bytes_of(const T &v)
{
    std::vector<uint8_t> b(sizeof(T));
    std::memcpy(b.data(), &v, sizeof(T));
    return b;
}

uint64_t get_u64(const Response &r)
{
    uint64_t v = 0;
    if (r.bytes.size() == sizeof(MsgHeader) + 8)
        std::memcpy(&v, r.bytes.data() + sizeof(MsgHeader), 8);
    return v;
}

} // namespace

TEST(VhostDax, BackendOffersShmemOnlyWithAWindow)
{
    {
        Backend b(BackendConfig{});
        Response r;
        ASSERT_EQ(handle(b, kGetProtocolFeatures, {}, {}, r), "");
        EXPECT_FALSE(get_u64(r) & kPShmem);
        EXPECT_FALSE(get_u64(r) & kPBackendReq);
        // Not offered, so not accepted either.
        Response r2;
        EXPECT_NE(handle(b, kSetProtocolFeatures, bytes_of(kPShmem), {}, r2), "");
    }
    BackendChannel ch(kWin);
    BackendConfig c;
    c.dax_channel = &ch;
    Backend b(c);
    Response r;
    ASSERT_EQ(handle(b, kGetProtocolFeatures, {}, {}, r), "");
    EXPECT_TRUE(get_u64(r) & kPShmem);
    EXPECT_TRUE(get_u64(r) & kPBackendReq);
}

TEST(VhostDax, BackendAttachesTheChannelAndReportsTheWindow)
{
    QuietLog q;
    BackendChannel ch(kWin);
    BackendConfig c;
    c.dax_channel = &ch;
    Backend b(c);
    Response r;
    ASSERT_EQ(handle(b, kGetFeatures, {}, {}, r), "");
    ASSERT_EQ(handle(b, kSetFeatures, bytes_of(kFProtocolFeatures | kFVersion1), {}, r), "");
    // Before the features are acked, neither message is allowed.
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    EXPECT_NE(handle(b, kSetBackendReqFd, {}, {dup(sv[1])}, r), "");
    EXPECT_NE(handle(b, kGetShmemConfig, {}, {}, r), "");
    EXPECT_FALSE(ch.connected());
    ASSERT_EQ(handle(b, kSetProtocolFeatures, bytes_of(kPShmem | kPBackendReq | kPReplyAck), {}, r),
              "");
    // A SET_BACKEND_REQ_FD without its fd is refused by the parser.
    EXPECT_NE(handle(b, kSetBackendReqFd, {}, {}, r), "");
    Response ack;
    ASSERT_EQ(handle(b, kSetBackendReqFd, {}, {sv[1]}, ack, kVersion | kNeedReply), "");
    EXPECT_EQ(get_u64(ack), 0u); // REPLY_ACK: success
    EXPECT_TRUE(ch.connected());

    Response cfg;
    ASSERT_EQ(handle(b, kGetShmemConfig, {}, {}, cfg), "");
    ASSERT_EQ(cfg.bytes.size(), sizeof(MsgHeader) + sizeof(ShmemConfig));
    MsgHeader h;
    std::memcpy(&h, cfg.bytes.data(), sizeof(h));
    EXPECT_EQ(h.request, 44u);
    EXPECT_EQ(h.flags, kVersion | kReplyFlag);
    EXPECT_EQ(h.size, sizeof(ShmemConfig));
    ShmemConfig sc;
    std::memcpy(&sc, cfg.bytes.data() + sizeof(h), sizeof(sc));
    const uint32_t nregions = sc.nregions;
    EXPECT_EQ(nregions, 1u);
    std::vector<uint64_t> sizes(kMaxShmemRegions);
    std::memcpy(sizes.data(), cfg.bytes.data() + sizeof(h) + 8, sizes.size() * 8);
    EXPECT_EQ(sizes[0], kWin);
    for (size_t i = 1; i < kMaxShmemRegions; i++)
        EXPECT_EQ(sizes[i], 0u);

    // The channel works: the peer end answers an unmap.
    FakeFrontEnd::reply(sv[0], kBackendShmemUnmap, 0);
    EXPECT_EQ(ch.unmap(0, 4096), 0);
    close(sv[0]);
}

TEST(VhostDax, ParserChecksTheNewMessages)
{
    Message m;
    std::vector<uint8_t> nine(9, 0);
    MsgHeader h{kGetShmemConfig, kVersion, 9};
    EXPECT_NE(parse(h, nine, {}, 17, m), "");
    h.size = 0;
    EXPECT_EQ(parse(h, {}, {}, 17, m), "");
    EXPECT_STREQ(request_name(kGetShmemConfig), "GET_SHMEM_CONFIG");
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    std::vector<int> fds{fd};
    EXPECT_NE(parse(h, {}, fds, 17, m), "") << "GET_SHMEM_CONFIG takes no fd";
    close(fd);
}
