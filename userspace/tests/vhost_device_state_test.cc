// SPDX-License-Identifier: GPL-2.0
// vhost-user back-end state migration messages (SET_DEVICE_STATE_FD,
// CHECK_DEVICE_STATE): parsing, negotiation, and what the back-end hands
// to the server's hooks and answers the front-end.
#include "transport/vhost_user/backend.h"
#include "transport/vhost_user/dirty_log.h"
#include "transport/vhost_user/protocol.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

using namespace holdfast::vhost;

namespace {

std::string parse_msg(uint32_t req, const std::vector<uint8_t> &payload, std::vector<int> fds,
                      Message &m)
{
    MsgHeader h{req, kVersion, uint32_t(payload.size())};
    return parse(h, payload, fds, 17, m);
}

std::vector<uint8_t> params(uint32_t dir, uint32_t phase)
{
    DeviceStateParams p{dir, phase};
    std::vector<uint8_t> b(sizeof(p));
    std::memcpy(b.data(), &p, sizeof(p));
    return b;
}

uint64_t reply_value(const Response &r)
{
    EXPECT_EQ(r.bytes.size(), sizeof(MsgHeader) + 8);
    uint64_t v = ~0ull;
    if (r.bytes.size() == sizeof(MsgHeader) + 8)
        std::memcpy(&v, r.bytes.data() + sizeof(MsgHeader), 8);
    return v;
}

Message msg(uint32_t req, uint64_t u64 = 0)
{
    Message m;
    m.request = req;
    m.flags = kVersion;
    m.u64 = u64;
    return m;
}

struct Hooks {
    int transfers = 0;
    uint32_t last_dir = 99;
    std::string transfer_result, check_result;
    BackendConfig config()
    {
        BackendConfig c;
        c.state_transfer = [this](uint32_t dir, int fd) {
            transfers++;
            last_dir = dir;
            close(fd);
            return transfer_result;
        };
        c.state_check = [this] { return check_result; };
        return c;
    }
};

uint64_t offered(Backend &be)
{
    Response r;
    Message m = msg(kGetProtocolFeatures);
    EXPECT_EQ(be.handle(m, r), "");
    return reply_value(r);
}

// A backend that negotiated DEVICE_STATE, as QEMU does.
void negotiate(Backend &be)
{
    Response r;
    Message m = msg(kSetFeatures, kFProtocolFeatures | kFVersion1);
    ASSERT_EQ(be.handle(m, r), "");
    m = msg(kSetProtocolFeatures, kPReplyAck | kPDeviceState);
    ASSERT_EQ(be.handle(m, r), "");
}

int pipe_end()
{
    int p[2];
    EXPECT_EQ(0, pipe2(p, O_CLOEXEC));
    close(p[1]);
    return p[0];
}

} // namespace

TEST(VhostDeviceState, Parse)
{
    Message m;
    int fd = pipe_end();
    EXPECT_EQ(parse_msg(kSetDeviceStateFd, params(kStateLoad, kPhaseStopped), {fd}, m), "");
    EXPECT_EQ(m.transfer.direction, kStateLoad);
    EXPECT_NE(parse_msg(kSetDeviceStateFd, params(kStateSave, kPhaseStopped), {}, m), "")
        << "no fd";
    EXPECT_NE(parse_msg(kSetDeviceStateFd, params(2, kPhaseStopped), {fd}, m), "")
        << "unknown direction";
    EXPECT_NE(parse_msg(kSetDeviceStateFd, params(kStateSave, 1), {fd}, m), "")
        << "unknown phase";
    EXPECT_NE(parse_msg(kSetDeviceStateFd, std::vector<uint8_t>(4), {fd}, m), "") << "short";
    EXPECT_EQ(parse_msg(kCheckDeviceState, {}, {}, m), "");
    EXPECT_NE(parse_msg(kCheckDeviceState, {}, {fd}, m), "") << "fd with CHECK";
    close(fd);
}

TEST(VhostDeviceState, OfferedOnlyWithHooks)
{
    Backend plain({});
    EXPECT_FALSE(offered(plain) & kPDeviceState);
    Hooks h;
    Backend be(h.config());
    EXPECT_TRUE(offered(be) & kPDeviceState);
}

TEST(VhostDeviceState, NeedsTheProtocolFeature)
{
    Hooks h;
    Backend be(h.config());
    Response r;
    Message m = msg(kSetDeviceStateFd);
    m.transfer = {kStateSave, kPhaseStopped};
    m.fds = {pipe_end()};
    EXPECT_NE(be.handle(m, r), "");
    EXPECT_EQ(h.transfers, 0);
    for (int fd : m.fds)
        if (fd >= 0)
            close(fd);
}

TEST(VhostDeviceState, TransferAndCheckReplies)
{
    Hooks h;
    Backend be(h.config());
    negotiate(be);

    Response r;
    Message m = msg(kSetDeviceStateFd);
    m.transfer = {kStateSave, kPhaseStopped};
    m.fds = {pipe_end()};
    ASSERT_EQ(be.handle(m, r), "");
    EXPECT_EQ(m.fds[0], -1) << "the fd went to the hook";
    EXPECT_EQ(h.transfers, 1);
    EXPECT_EQ(h.last_dir, kStateSave);
    EXPECT_EQ(reply_value(r), kStateNoFd) << "success, and no back-end channel";

    r = {};
    m = msg(kCheckDeviceState);
    ASSERT_EQ(be.handle(m, r), "");
    EXPECT_EQ(reply_value(r), 0u);

    // A refused transfer or a failed check is the reply's, not the
    // connection's: the migration fails, the source keeps serving.
    h.transfer_result = "no";
    r = {};
    m = msg(kSetDeviceStateFd);
    m.transfer = {kStateLoad, kPhaseStopped};
    m.fds = {pipe_end()};
    ASSERT_EQ(be.handle(m, r), "");
    EXPECT_EQ(reply_value(r) & 0xff, 1u);
    EXPECT_TRUE(reply_value(r) & kStateNoFd);

    h.check_result = "corrupt";
    r = {};
    m = msg(kCheckDeviceState);
    ASSERT_EQ(be.handle(m, r), "");
    EXPECT_NE(reply_value(r), 0u);
}

// The dirty log QEMU needs before it migrates a vhost-user device.
TEST(VhostDirtyLog, MapAndMark)
{
    int fd = memfd_create("log", MFD_CLOEXEC);
    ASSERT_LE(0, fd);
    ASSERT_EQ(0, ftruncate(fd, 8192));
    std::shared_ptr<DirtyLog> log;
    EXPECT_NE("", DirtyLog::map(fd, 0, 0, log)) << "empty log";
    EXPECT_NE("", DirtyLog::map(fd, 8192, 4096, log)) << "beyond the fd";
    EXPECT_NE("", DirtyLog::map(-1, 16, 0, log)) << "no fd";
    ASSERT_EQ("", DirtyLog::map(fd, 4096, 4096, log));
    close(fd);

    log->mark(3 * kLogPageSize + 100, 1);
    EXPECT_TRUE(log->marked(3 * kLogPageSize));
    EXPECT_FALSE(log->marked(2 * kLogPageSize));
    EXPECT_FALSE(log->marked(4 * kLogPageSize));
    // A range straddling pages marks both; length 0 marks nothing.
    log->mark(10 * kLogPageSize - 1, 2);
    EXPECT_TRUE(log->marked(9 * kLogPageSize));
    EXPECT_TRUE(log->marked(10 * kLogPageSize));
    log->mark(20 * kLogPageSize, 0);
    EXPECT_FALSE(log->marked(20 * kLogPageSize));
    // Past the end of the log (4096 bytes: 32768 pages) and wrapping
    // ranges are ignored, not written.
    log->mark(40000 * kLogPageSize, kLogPageSize);
    log->mark(UINT64_MAX - 10, 100);
    EXPECT_FALSE(log->marked(40000 * kLogPageSize));
}

TEST(VhostDirtyLog, SetLogBaseRepliesEmpty)
{
    Backend be({});
    Response r;
    Message m = msg(kSetFeatures, kFProtocolFeatures | kFVersion1 | kFLogAll);
    ASSERT_EQ(be.handle(m, r), "");
    m = msg(kSetProtocolFeatures, kPLogShmfd);
    ASSERT_EQ(be.handle(m, r), "");
    int fd = memfd_create("log", MFD_CLOEXEC);
    ASSERT_EQ(0, ftruncate(fd, 4096));
    m = msg(kSetLogBase);
    m.log = {4096, 0};
    m.fds = {fd};
    r = {};
    ASSERT_EQ(be.handle(m, r), "");
    EXPECT_EQ(r.bytes.size(), sizeof(MsgHeader)) << "QEMU waits for an empty reply";
    for (int f : m.fds)
        if (f >= 0)
            close(f);
}
