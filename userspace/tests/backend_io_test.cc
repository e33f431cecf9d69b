// SPDX-License-Identifier: GPL-2.0
// BackendIo: folding completions into an operation (pure logic), and
// try_now() against real files: which IoPath it learns for tmpfs and for
// the disk filesystem under /var/tmp, and that what it could not do
// without waiting is left for the ring.
#include "fuse/backend_io.h"

#include "util/fd.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/uio.h>
#include <unistd.h>
#include <vector>

using namespace holdfast;
using fuse::BackendIo;
using fuse::IoPath;

namespace {

BackendIo transfer(BackendIo::Op op, uint32_t len)
{
    BackendIo io;
    static std::byte buf[1 << 16];
    io.op = op;
    io.buf = buf;
    io.len = len;
    io.off = 1000;
    return io;
}

TEST(BackendIoAbsorb, FullReadFinishes)
{
    auto io = transfer(BackendIo::Op::read, 4096);
    EXPECT_TRUE(io.absorb(4096));
    EXPECT_EQ(io.result, 4096);
}

TEST(BackendIoAbsorb, ShortReadAsksForTheRest)
{
    auto io = transfer(BackendIo::Op::read, 4096);
    EXPECT_FALSE(io.absorb(1000));
    EXPECT_EQ(io.next_buf(), io.buf + 1000);
    EXPECT_EQ(io.next_len(), 3096u);
    EXPECT_EQ(io.next_off(), 2000u);
    EXPECT_FALSE(io.absorb(96));
    EXPECT_TRUE(io.absorb(3000));
    EXPECT_EQ(io.result, 4096);
}

TEST(BackendIoAbsorb, EofEndsAShortRead)
{
    auto io = transfer(BackendIo::Op::read, 4096);
    EXPECT_FALSE(io.absorb(10));
    EXPECT_TRUE(io.absorb(0));
    EXPECT_EQ(io.result, 10);
}

TEST(BackendIoAbsorb, ErrorAfterSomeBytesReportsTheBytes)
{
    auto io = transfer(BackendIo::Op::write, 4096);
    EXPECT_FALSE(io.absorb(512));
    EXPECT_TRUE(io.absorb(-ENOSPC));
    EXPECT_EQ(io.result, 512);
}

TEST(BackendIoAbsorb, ErrorFirstIsTheResult)
{
    auto io = transfer(BackendIo::Op::write, 4096);
    EXPECT_TRUE(io.absorb(-ENOSPC));
    EXPECT_EQ(io.result, -ENOSPC);
}

TEST(BackendIoAbsorb, InterruptedIsRetriedThenGivenUp)
{
    auto io = transfer(BackendIo::Op::read, 10);
    int tries = 0;
    while (!io.absorb(-EAGAIN))
        tries++;
    EXPECT_GT(tries, 1);
    EXPECT_EQ(io.result, -EIO);
}

TEST(BackendIoAbsorb, MoreThanAskedForIsAnError)
{
    auto io = transfer(BackendIo::Op::read, 100);
    EXPECT_FALSE(io.absorb(60));
    EXPECT_TRUE(io.absorb(41));
    EXPECT_EQ(io.result, -EIO);
}

TEST(BackendIoAbsorb, SyncAndFallocateTakeTheErrno)
{
    BackendIo io;
    io.op = BackendIo::Op::fdatasync;
    EXPECT_TRUE(io.absorb(0));
    EXPECT_EQ(io.result, 0);
    io.op = BackendIo::Op::fallocate;
    EXPECT_TRUE(io.absorb(-EOPNOTSUPP));
    EXPECT_EQ(io.result, -EOPNOTSUPP);
}

// A scratch file of `size` patterned bytes in `dir`, unlinked at once.
Fd scratch(const char *dir, size_t size)
{
    std::string tmpl = std::string(dir) + "/hf-bio-XXXXXX";
    Fd fd(mkstemp(tmpl.data()));
    if (!fd)
        return fd;
    unlink(tmpl.c_str());
    std::vector<char> data(size);
    for (size_t i = 0; i < size; i++)
        data[i] = char('a' + i % 23);
    if (pwrite(fd.get(), data.data(), size, 0) != ssize_t(size))
        return Fd();
    return fd;
}

// What RWF_NOWAIT does on this file: 1 works, 0 not supported.
int nowait_supported(int fd)
{
    char c;
    iovec v{&c, 1};
    return preadv2(fd, &v, 1, 0, RWF_NOWAIT) < 0 && errno == EOPNOTSUPP ? 0 : 1;
}

BackendIo read_of(int fd, std::atomic<uint8_t> &how, std::vector<std::byte> &buf)
{
    BackendIo io;
    io.op = BackendIo::Op::read;
    io.fd = fd;
    io.buf = buf.data();
    io.len = uint32_t(buf.size());
    io.off = 5;
    io.how = &how;
    return io;
}

TEST(BackendIoTryNow, TmpfsIsReadInline)
{
    Fd fd = scratch("/dev/shm", 100000);
    ASSERT_TRUE(fd);
    std::atomic<uint8_t> how{0};
    std::vector<std::byte> buf(65536);
    auto io = read_of(fd.get(), how, buf);
    ASSERT_TRUE(io.try_now());
    EXPECT_EQ(io.result, 65536);
    EXPECT_EQ(char(buf[0]), char('a' + 5 % 23));
    // tmpfs has no RWF_NOWAIT, and never waits for a device anyway.
    EXPECT_EQ(IoPath(how.load()), nowait_supported(fd.get()) ? IoPath::nowait : IoPath::inline_);
    // Learnt once: the next read goes the same way.
    auto again = read_of(fd.get(), how, buf);
    EXPECT_TRUE(again.try_now());
}

TEST(BackendIoTryNow, ReadsPastEofFinishShort)
{
    Fd fd = scratch("/dev/shm", 100);
    ASSERT_TRUE(fd);
    std::atomic<uint8_t> how{0};
    std::vector<std::byte> buf(4096);
    auto io = read_of(fd.get(), how, buf);
    ASSERT_TRUE(io.try_now());
    EXPECT_EQ(io.result, 95);
}

TEST(BackendIoTryNow, DiskFileCachedOrNot)
{
    Fd fd = scratch("/var/tmp", 1 << 20);
    ASSERT_TRUE(fd);
    const bool nowait = nowait_supported(fd.get());
    std::atomic<uint8_t> how{0};
    std::vector<std::byte> buf(65536);
    auto io = read_of(fd.get(), how, buf);
    if (!nowait) {
        // Neither RWF_NOWAIT nor a memory filesystem: always the ring.
        EXPECT_FALSE(io.try_now());
        EXPECT_EQ(IoPath(how.load()), IoPath::ring);
        return;
    }
    // Just written: in the page cache, so done at once.
    ASSERT_TRUE(io.try_now());
    EXPECT_EQ(io.result, 65536);
    EXPECT_EQ(IoPath(how.load()), IoPath::nowait);
    // Out of the page cache: the read would wait for the disk.
    ASSERT_EQ(0, fdatasync(fd.get()));
    ASSERT_EQ(0, posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED));
    auto cold = read_of(fd.get(), how, buf);
    cold.off = 512 * 1024;
    EXPECT_FALSE(cold.try_now());
    EXPECT_TRUE(cold.pending());
    EXPECT_EQ(cold.done, 0u);
}

TEST(BackendIoTryNow, SyncAndFallocateAlwaysGoToTheRing)
{
    Fd fd = scratch("/dev/shm", 100);
    ASSERT_TRUE(fd);
    std::atomic<uint8_t> how{uint8_t(IoPath::inline_)};
    BackendIo io;
    io.op = BackendIo::Op::fsync;
    io.fd = fd.get();
    io.how = &how;
    EXPECT_FALSE(io.try_now());
    io.op = BackendIo::Op::fallocate;
    EXPECT_FALSE(io.try_now());
}

TEST(BackendIoTryNow, WithoutAPathAlwaysTheRing)
{
    Fd fd = scratch("/dev/shm", 100);
    ASSERT_TRUE(fd);
    std::vector<std::byte> buf(10);
    std::atomic<uint8_t> how{0};
    auto io = read_of(fd.get(), how, buf);
    io.how = nullptr;
    EXPECT_FALSE(io.try_now());
}

} // namespace
