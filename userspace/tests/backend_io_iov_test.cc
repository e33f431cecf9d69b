// SPDX-License-Identifier: GPL-2.0
// A READ into scattered buffers (vhost-user: the guest's writable
// descriptors): iov_window(), the part of a chain's buffers a transfer may
// use, and BackendIo::read_blocking_into() against a real file, which must
// never write outside the window, whatever the buffers look like.
#include "fuse/backend_io.h"

#include "util/fd.h"

#include <gtest/gtest.h>

#include <climits>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/uio.h>
#include <unistd.h>
#include <vector>

using namespace holdfast;
using fuse::BackendIo;
using fuse::iov_window;

namespace {

std::byte *at(std::vector<std::byte> &b, size_t off)
{
    return b.data() + off;
}

TEST(IovWindow, SkipsAndClamps)
{
    std::vector<std::byte> m(100);
    const iovec iov[] = {{at(m, 0), 16}, {at(m, 20), 10}, {at(m, 40), 30}};
    iovec dst[8];
    // The 16-byte header is skipped whole; 25 bytes end inside the third.
    size_t n = iov_window(iov, 16, 25, dst);
    ASSERT_EQ(n, 2u);
    EXPECT_EQ(dst[0].iov_base, at(m, 20));
    EXPECT_EQ(dst[0].iov_len, 10u);
    EXPECT_EQ(dst[1].iov_base, at(m, 40));
    EXPECT_EQ(dst[1].iov_len, 15u);
    // A skip that ends inside a buffer starts there.
    n = iov_window(iov, 21, 100, dst);
    ASSERT_EQ(n, 2u);
    EXPECT_EQ(dst[0].iov_base, at(m, 25));
    EXPECT_EQ(dst[0].iov_len, 5u);
    EXPECT_EQ(dst[1].iov_len, 30u);
}

TEST(IovWindow, NeverPastTheBuffers)
{
    std::vector<std::byte> m(64);
    const iovec iov[] = {{at(m, 0), 8}, {at(m, 8), 8}};
    iovec dst[4];
    // More asked for than there is: only what there is.
    ASSERT_EQ(iov_window(iov, 4, 1000, dst), 2u);
    EXPECT_EQ(dst[0].iov_len + dst[1].iov_len, 12u);
    // A skip at or past the end: nothing.
    EXPECT_EQ(iov_window(iov, 16, 10, dst), 0u);
    EXPECT_EQ(iov_window(iov, UINT64_MAX, 10, dst), 0u);
    // Nothing asked for: nothing.
    EXPECT_EQ(iov_window(iov, 0, 0, dst), 0u);
    // No buffers at all.
    EXPECT_EQ(iov_window({}, 0, 10, dst), 0u);
}

TEST(IovWindow, LeavesOutEmptyBuffersAndStopsWhenFull)
{
    std::vector<std::byte> m(64);
    const iovec iov[] = {{at(m, 0), 0}, {at(m, 0), 4}, {nullptr, 0}, {at(m, 4), 4}, {at(m, 8), 4}};
    iovec dst[2];
    ASSERT_EQ(iov_window(iov, 0, 100, dst), 2u);
    EXPECT_EQ(dst[0].iov_base, at(m, 0));
    EXPECT_EQ(dst[1].iov_base, at(m, 4));
    // A huge length in a hostile descriptor is clamped by `max`.
    const iovec big[] = {{at(m, 0), SIZE_MAX}};
    ASSERT_EQ(iov_window(big, 10, 5, dst), 1u);
    EXPECT_EQ(dst[0].iov_base, at(m, 10));
    EXPECT_EQ(dst[0].iov_len, 5u);
}

class ReadInto : public ::testing::Test {
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/holdfast-readinto-XXXXXX";
        fd_.reset(mkstemp(tmpl));
        ASSERT_TRUE(fd_) << strerror(errno);
        unlink(tmpl);
        data_.resize(kFile);
        for (size_t i = 0; i < kFile; i++)
            data_[i] = std::byte(i * 7 + 3);
        ASSERT_EQ(pwrite(fd_.get(), data_.data(), kFile, 0), ssize_t(kFile));
    }
    BackendIo read(uint32_t len, uint64_t off)
    {
        BackendIo io;
        io.op = BackendIo::Op::read;
        io.fd = fd_.get();
        io.len = len;
        io.off = off;
        return io;
    }
    static constexpr size_t kFile = 10000;
    Fd fd_;
    std::vector<std::byte> data_;
};

TEST_F(ReadInto, OddBuffersOddOffsetAndEof)
{
    // "Guest memory" with a header buffer, odd-sized data buffers and
    // guard bytes between them that must stay untouched.
    std::vector<std::byte> m(20000, std::byte(0xee));
    const iovec iov[] = {{at(m, 0), 16}, {at(m, 100), 5}, {at(m, 200), 4093}, {at(m, 5000), 7000}};
    // 9000 bytes asked for at 1234: 8766 to EOF, the last ones in the
    // third buffer.
    BackendIo io = read(9000, 1234);
    ASSERT_TRUE(io.read_blocking_into(iov, 16));
    EXPECT_EQ(io.result, int(kFile - 1234));
    std::vector<std::byte> got;
    got.insert(got.end(), m.begin() + 100, m.begin() + 105);
    got.insert(got.end(), m.begin() + 200, m.begin() + 200 + 4093);
    got.insert(got.end(), m.begin() + 5000, m.begin() + 5000 + (kFile - 1234 - 5 - 4093));
    ASSERT_EQ(got.size(), kFile - 1234);
    EXPECT_EQ(0, std::memcmp(got.data(), data_.data() + 1234, got.size()));
    for (size_t i = 0; i < m.size(); i++) {
        const bool written = (i >= 100 && i < 105) || (i >= 200 && i < 200 + 4093) ||
                             (i >= 5000 && i < 5000 + (kFile - 1234 - 5 - 4093));
        if (!written) {
            ASSERT_EQ(m[i], std::byte(0xee)) << "byte " << i << " written";
        }
    }
}

TEST_F(ReadInto, AtAndPastEofReadsNothing)
{
    std::vector<std::byte> m(64, std::byte(0xee));
    const iovec iov[] = {{at(m, 0), 64}};
    for (uint64_t off : {uint64_t(kFile), uint64_t(kFile) + 4096}) {
        BackendIo io = read(32, off);
        ASSERT_TRUE(io.read_blocking_into(iov, 16));
        EXPECT_EQ(io.result, 0);
    }
    for (std::byte b : m)
        ASSERT_EQ(b, std::byte(0xee));
}

TEST_F(ReadInto, LessRoomThanAskedEndsTheRead)
{
    std::vector<std::byte> m(64, std::byte(0xee));
    const iovec iov[] = {{at(m, 0), 16}, {at(m, 32), 10}};
    BackendIo io = read(100, 0);
    ASSERT_TRUE(io.read_blocking_into(iov, 16));
    EXPECT_EQ(io.result, 10);
    EXPECT_EQ(0, std::memcmp(at(m, 32), data_.data(), 10));
    for (size_t i = 0; i < m.size(); i++) {
        if (i < 32 || i >= 42) {
            ASSERT_EQ(m[i], std::byte(0xee)) << "byte " << i << " written";
        }
    }
}

TEST_F(ReadInto, MoreBuffersThanOnePreadvTakes)
{
    // 3000 one-byte buffers: beyond IOV_MAX, so several preadv() calls,
    // each going on where the last one ended.
    std::vector<std::byte> m(7000, std::byte(0xee));
    std::vector<iovec> iov;
    iov.push_back({at(m, 0), 16});
    for (size_t i = 0; i < 3000; i++)
        iov.push_back({at(m, 20 + i * 2), 1});
    static_assert(IOV_MAX < 3000);
    BackendIo io = read(2900, 77);
    ASSERT_TRUE(io.read_blocking_into(iov, 16));
    ASSERT_EQ(io.result, 2900);
    for (size_t i = 0; i < 2900; i++)
        ASSERT_EQ(m[20 + i * 2], data_[77 + i]) << "byte " << i;
    for (size_t i = 0; i < 3000; i++)
        ASSERT_EQ(m[21 + i * 2], std::byte(0xee)) << "gap " << i;
    EXPECT_EQ(m[20 + 2900 * 2], std::byte(0xee));
}

TEST_F(ReadInto, OnlyReads)
{
    std::vector<std::byte> m(64);
    const iovec iov[] = {{at(m, 0), 64}};
    BackendIo io = read(10, 0);
    io.op = BackendIo::Op::write;
    EXPECT_FALSE(io.read_blocking_into(iov, 0));
    EXPECT_EQ(io.done, 0u);
}

TEST_F(ReadInto, ErrorBeforeAnyByte)
{
    std::vector<std::byte> m(64, std::byte(0xee));
    const iovec iov[] = {{at(m, 0), 64}};
    Fd w(open("/dev/null", O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(w);
    BackendIo io = read(10, 0);
    io.fd = w.get(); // not open for reading
    ASSERT_TRUE(io.read_blocking_into(iov, 0));
    EXPECT_EQ(io.result, -EBADF);
    for (std::byte b : m)
        ASSERT_EQ(b, std::byte(0xee));
}

TEST(ReadIntoDirect, MisalignedBuffersAreRefusedUntouched)
{
    // An O_DIRECT file (--direct-io) takes only aligned buffers: the
    // guest's may not be, and then the caller falls back to its own.
    char tmpl[] = "/var/tmp/holdfast-readinto-XXXXXX";
    Fd plain(mkstemp(tmpl));
    ASSERT_TRUE(plain) << strerror(errno);
    std::vector<std::byte> block(4096, std::byte(1));
    ASSERT_EQ(pwrite(plain.get(), block.data(), block.size(), 0), 4096);
    Fd d(open(tmpl, O_RDONLY | O_DIRECT | O_CLOEXEC));
    unlink(tmpl);
    if (!d)
        GTEST_SKIP() << "no O_DIRECT on /var/tmp: " << strerror(errno);
    std::vector<std::byte> m(3 * 4096, std::byte(0xee));
    const iovec iov[] = {{at(m, 1), 16}, {at(m, 17), 4096}};
    BackendIo io;
    io.op = BackendIo::Op::read;
    io.fd = d.get();
    io.len = 4096;
    EXPECT_FALSE(io.read_blocking_into(iov, 16));
    EXPECT_EQ(io.done, 0u);
    for (std::byte b : m)
        ASSERT_EQ(b, std::byte(0xee));
}

} // namespace
