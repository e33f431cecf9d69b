// SPDX-License-Identifier: GPL-2.0
// Transfers between a backing file and scattered buffers (vhost-user: the
// guest's descriptors): iov_window(), the part of a chain's buffers a
// transfer may use; BackendIo::read_blocking_into() and
// write_blocking_from() against a real file, which must never touch
// anything outside the window, whatever the buffers look like; and
// WriteSource, the stand-in that lets whoever carries out a WRITE take its
// data from the guest's buffers without its being copied first.
#include "fuse/backend_io.h"

#include "util/fd.h"

#include <gtest/gtest.h>

#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <vector>

using namespace holdfast;
using fuse::BackendIo;
using fuse::iov_window;
using fuse::WriteSource;

namespace {

std::byte *at(std::vector<std::byte> &b, size_t off)
{
    return b.data() + off;
}

// A header buffer of `header` bytes at the start of `m`, then 3000
// one-byte buffers with a gap after each, from `first` on: more than
// IOV_MAX, so a transfer takes several calls, each going on where the
// last one ended.
std::vector<iovec> one_byte_buffers(std::vector<std::byte> &m, size_t header, size_t first)
{
    static_assert(IOV_MAX < 3000);
    std::vector<iovec> iov{{at(m, 0), header}};
    for (size_t i = 0; i < 3000; i++)
        iov.push_back({at(m, first + i * 2), 1});
    return iov;
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

// A temporary file of kFile bytes, and transfers on it.
class FileTest : public ::testing::Test {
  protected:
    void make(const std::vector<std::byte> &contents)
    {
        char tmpl[] = "/tmp/holdfast-iov-XXXXXX";
        fd_.reset(mkstemp(tmpl));
        ASSERT_TRUE(fd_) << strerror(errno);
        unlink(tmpl);
        ASSERT_EQ(pwrite(fd_.get(), contents.data(), contents.size(), 0), ssize_t(contents.size()));
    }
    BackendIo transfer(BackendIo::Op op, uint32_t len, uint64_t off, std::byte *buf = nullptr)
    {
        BackendIo io;
        io.op = op;
        io.fd = fd_.get();
        io.buf = buf;
        io.len = len;
        io.off = off;
        return io;
    }
    static constexpr size_t kFile = 10000;
    Fd fd_;
};

class ReadInto : public FileTest {
  protected:
    void SetUp() override
    {
        data_.resize(kFile);
        for (size_t i = 0; i < kFile; i++)
            data_[i] = std::byte(i * 7 + 3);
        make(data_);
    }
    BackendIo read(uint32_t len, uint64_t off) { return transfer(BackendIo::Op::read, len, off); }
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
    std::vector<std::byte> m(7000, std::byte(0xee));
    const auto iov = one_byte_buffers(m, 16, 20);
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

// "Guest memory": every byte tells where it is, so a byte written from the
// wrong place shows.
std::vector<std::byte> pattern(size_t n)
{
    std::vector<std::byte> m(n);
    for (size_t i = 0; i < n; i++)
        m[i] = std::byte(i * 13 + 5 + i / 251);
    return m;
}

class WriteFrom : public FileTest {
  protected:
    void SetUp() override { make(std::vector<std::byte>(kFile, std::byte(0xaa))); }
    BackendIo write(uint32_t len, uint64_t off, std::byte *buf = nullptr)
    {
        return transfer(BackendIo::Op::write, len, off, buf);
    }
    std::vector<std::byte> file() const
    {
        struct stat st;
        EXPECT_EQ(fstat(fd_.get(), &st), 0);
        std::vector<std::byte> b(size_t(st.st_size));
        EXPECT_EQ(pread(fd_.get(), b.data(), b.size(), 0), ssize_t(b.size()));
        return b;
    }
    // The file must be 0xaa but for `want` at `off`.
    void expect_file(uint64_t off, const std::vector<std::byte> &want)
    {
        auto f = file();
        ASSERT_EQ(f.size(), std::max<size_t>(kFile, off + want.size()));
        for (size_t i = 0; i < f.size(); i++) {
            if (i >= off && i < off + want.size()) {
                ASSERT_EQ(f[i], want[i - off]) << "file byte " << i;
            } else {
                ASSERT_EQ(f[i], std::byte(0xaa)) << "file byte " << i << " written";
            }
        }
    }
};

TEST_F(WriteFrom, OddBuffersAtAnOddOffset)
{
    // Headers over two descriptors (80 bytes, split 30 + 50), then data
    // buffers of odd sizes at odd places, with bytes between them that
    // must not reach the file.
    auto m = pattern(20000);
    const iovec iov[] = {
        {at(m, 3), 30}, {at(m, 40), 50}, {at(m, 101), 5}, {at(m, 203), 4093}, {at(m, 5001), 7000}};
    BackendIo io = write(9000, 1234);
    ASSERT_TRUE(io.write_blocking_from(iov, 80));
    EXPECT_EQ(io.result, 9000);
    std::vector<std::byte> want;
    want.insert(want.end(), m.begin() + 101, m.begin() + 106);
    want.insert(want.end(), m.begin() + 203, m.begin() + 203 + 4093);
    want.insert(want.end(), m.begin() + 5001, m.begin() + 5001 + (9000 - 5 - 4093));
    expect_file(1234, want);
}

TEST_F(WriteFrom, PastEofExtendsTheFile)
{
    auto m = pattern(64);
    const iovec iov[] = {{at(m, 0), 64}};
    BackendIo io = write(33, kFile + 7);
    ASSERT_TRUE(io.write_blocking_from(iov, 16));
    EXPECT_EQ(io.result, 33);
    auto f = file();
    ASSERT_EQ(f.size(), kFile + 7 + 33);
    EXPECT_EQ(0, std::memcmp(f.data() + kFile + 7, at(m, 16), 33));
    for (size_t i = kFile; i < kFile + 7; i++)
        ASSERT_EQ(f[i], std::byte(0)) << i;
}

TEST_F(WriteFrom, NeverMoreThanAskedFor)
{
    // The source has more than `len`: the rest is not written.
    auto m = pattern(1000);
    const iovec iov[] = {{at(m, 0), 1000}};
    BackendIo io = write(10, 0);
    ASSERT_TRUE(io.write_blocking_from(iov, 80));
    EXPECT_EQ(io.result, 10);
    expect_file(0, std::vector<std::byte>(m.begin() + 80, m.begin() + 90));
}

TEST_F(WriteFrom, ASourceThatEndsFirstIsAShortWrite)
{
    // A guest whose descriptors hold less than it said: what is there,
    // and nothing from beyond them (the huge length of an empty skip
    // cannot reach further either).
    auto m = pattern(100);
    const iovec iov[] = {{at(m, 0), 80}, {at(m, 80), 10}};
    BackendIo io = write(100, 0);
    ASSERT_TRUE(io.write_blocking_from(iov, 80));
    EXPECT_EQ(io.result, 10);
    expect_file(0, std::vector<std::byte>(m.begin() + 80, m.begin() + 90));
    BackendIo none = write(100, 0);
    ASSERT_TRUE(none.write_blocking_from(iov, UINT64_MAX - 5));
    EXPECT_EQ(none.result, 0);
}

TEST_F(WriteFrom, MoreBuffersThanOnePwritevTakes)
{
    std::vector<std::byte> m = pattern(7000);
    const auto iov = one_byte_buffers(m, 80, 100);
    BackendIo io = write(2900, 77);
    ASSERT_TRUE(io.write_blocking_from(iov, 80));
    ASSERT_EQ(io.result, 2900);
    std::vector<std::byte> want;
    for (size_t i = 0; i < 2900; i++)
        want.push_back(m[100 + i * 2]);
    expect_file(77, want);
}

TEST_F(WriteFrom, OnlyWrites)
{
    auto m = pattern(64);
    const iovec iov[] = {{at(m, 0), 64}};
    BackendIo io = write(10, 0);
    io.op = BackendIo::Op::read;
    EXPECT_FALSE(io.write_blocking_from(iov, 0));
    EXPECT_EQ(io.done, 0u);
}

TEST_F(WriteFrom, ErrorBeforeAnyByte)
{
    auto m = pattern(64);
    const iovec iov[] = {{at(m, 0), 64}};
    Fd r(open("/dev/zero", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(r);
    BackendIo io = write(10, 0);
    io.fd = r.get(); // not open for writing
    ASSERT_TRUE(io.write_blocking_from(iov, 0));
    EXPECT_EQ(io.result, -EBADF);
}

// An O_DIRECT file on /var/tmp, or a skip when there is none.
struct DirectFile {
    Fd fd;
    std::string why;
    DirectFile()
    {
        char tmpl[] = "/var/tmp/holdfast-writefrom-XXXXXX";
        Fd plain(mkstemp(tmpl));
        if (!plain) {
            why = strerror(errno);
            return;
        }
        fd.reset(open(tmpl, O_RDWR | O_DIRECT | O_CLOEXEC));
        if (!fd)
            why = strerror(errno);
        unlink(tmpl);
    }
};

struct FreeDeleter {
    void operator()(void *p) const { free(p); }
};

std::unique_ptr<std::byte, FreeDeleter> aligned(size_t n)
{
    void *p = nullptr;
    if (posix_memalign(&p, 4096, n) != 0)
        return nullptr;
    std::memset(p, 0xee, n);
    return std::unique_ptr<std::byte, FreeDeleter>(static_cast<std::byte *>(p));
}

TEST(WriteFromDirect, MisalignedBuffersAreRefusedWithNothingWritten)
{
    DirectFile d;
    if (!d.fd)
        GTEST_SKIP() << "no O_DIRECT on /var/tmp: " << d.why;
    auto m = pattern(3 * 4096);
    const iovec iov[] = {{at(m, 1), 80}, {at(m, 81), 4096}};
    BackendIo io;
    io.op = BackendIo::Op::write;
    io.fd = d.fd.get();
    io.len = 4096;
    EXPECT_FALSE(io.write_blocking_from(iov, 80));
    EXPECT_EQ(io.done, 0u);
    struct stat st;
    ASSERT_EQ(fstat(d.fd.get(), &st), 0);
    EXPECT_EQ(st.st_size, 0);
}

TEST(WriteSourceTest, CoveringOnlyWhatTheStandInHolds)
{
    std::vector<std::byte> stand_in(100), other(100);
    auto m = pattern(200);
    const iovec iov[] = {{at(m, 0), 200}};
    EXPECT_EQ(WriteSource::covering(stand_in.data(), 1), nullptr);
    {
        WriteSource w({stand_in.data(), 100}, iov, 80);
        EXPECT_EQ(WriteSource::covering(stand_in.data(), 100), &w);
        EXPECT_EQ(WriteSource::covering(stand_in.data() + 40, 60), &w);
        EXPECT_EQ(WriteSource::covering(stand_in.data() + 100, 0), &w);
        EXPECT_EQ(WriteSource::covering(stand_in.data() + 40, 61), nullptr);
        EXPECT_EQ(WriteSource::covering(stand_in.data(), 101), nullptr);
        EXPECT_EQ(WriteSource::covering(stand_in.data(), SIZE_MAX), nullptr);
        EXPECT_EQ(WriteSource::covering(stand_in.data() - 1, 10), nullptr);
        EXPECT_EQ(WriteSource::covering(other.data(), 10), nullptr);
        EXPECT_EQ(WriteSource::covering(nullptr, 0), nullptr);
        EXPECT_EQ(w.skip_for(stand_in.data() + 40), 120u);
        {
            // Another one inside (nothing nests them today, but an outer
            // one must not be lost when an inner one goes).
            WriteSource inner({other.data(), 50}, iov, 0);
            EXPECT_EQ(WriteSource::covering(other.data(), 50), &inner);
            EXPECT_EQ(WriteSource::covering(stand_in.data(), 100), &w);
        }
        EXPECT_EQ(WriteSource::covering(other.data(), 50), nullptr);
        EXPECT_EQ(WriteSource::covering(stand_in.data(), 100), &w);
    }
    EXPECT_EQ(WriteSource::covering(stand_in.data(), 1), nullptr);
}

TEST(WriteSourceTest, FillCopiesTheSourceAndZeroesWhatItLacks)
{
    std::vector<std::byte> stand_in(100, std::byte(0xee));
    auto m = pattern(200);
    const iovec iov[] = {{at(m, 0), 50}, {at(m, 100), 40}};
    WriteSource w({stand_in.data(), 100}, iov, 30);
    EXPECT_FALSE(w.filled());
    w.fill();
    EXPECT_TRUE(w.filled());
    EXPECT_EQ(0, std::memcmp(stand_in.data(), at(m, 30), 20));
    EXPECT_EQ(0, std::memcmp(stand_in.data() + 20, at(m, 100), 40));
    for (size_t i = 60; i < 100; i++)
        ASSERT_EQ(stand_in[i], std::byte(0)) << i;
}

TEST_F(WriteFrom, RunBlockingTakesAStandInsBytesFromTheSource)
{
    // What the transport and a filesystem writing on its own both do:
    // run_blocking() of a buffer inside the stand-in.  Nothing is copied
    // into the stand-in.
    std::vector<std::byte> stand_in(5000, std::byte(0xee));
    auto m = pattern(6000);
    const iovec iov[] = {{at(m, 1), 80}, {at(m, 99), 3}, {at(m, 200), 4997}};
    WriteSource w({stand_in.data(), 5000}, iov, 80);
    BackendIo io = write(4000, 333, stand_in.data() + 2);
    io.run_blocking();
    EXPECT_EQ(io.result, 4000);
    EXPECT_FALSE(w.filled());
    for (std::byte b : stand_in)
        ASSERT_EQ(b, std::byte(0xee));
    std::vector<std::byte> want;
    want.push_back(m[101]);
    want.insert(want.end(), m.begin() + 200, m.begin() + 200 + 3999);
    expect_file(333, want);
}

TEST_F(WriteFrom, OutsideAStandInRunBlockingWritesTheBuffer)
{
    std::vector<std::byte> stand_in(100, std::byte(0xee)), buf(50, std::byte(0x11));
    auto m = pattern(200);
    const iovec iov[] = {{at(m, 0), 200}};
    WriteSource w({stand_in.data(), 100}, iov, 80);
    BackendIo io = write(50, 10, buf.data());
    io.run_blocking();
    EXPECT_EQ(io.result, 50);
    EXPECT_FALSE(w.filled());
    expect_file(10, buf);
}

TEST_F(WriteFrom, TryNowWritesTheFilledStandIn)
{
    std::vector<std::byte> stand_in(100, std::byte(0xee));
    auto m = pattern(200);
    const iovec iov[] = {{at(m, 0), 80}, {at(m, 120), 80}};
    WriteSource w({stand_in.data(), 100}, iov, 80);
    std::atomic<uint8_t> how{uint8_t(fuse::IoPath::inline_)};
    BackendIo io = write(70, 5, stand_in.data());
    io.how = &how;
    ASSERT_TRUE(io.try_now());
    EXPECT_EQ(io.result, 70);
    EXPECT_TRUE(w.filled());
    expect_file(5, std::vector<std::byte>(m.begin() + 120, m.begin() + 190));
}

// A WRITE of `src`'s bytes after an 80-byte header, through a page-aligned
// stand-in of `len` bytes, to an O_DIRECT file at `off`; what the file then
// holds there, and whether the data had to be copied into the stand-in.
struct DirectWrite {
    int result = 0;
    bool filled = false;
    std::vector<std::byte> file;
};

DirectWrite direct_write(std::span<const iovec> src, uint32_t len, uint64_t off)
{
    DirectWrite r;
    DirectFile d;
    if (!d.fd)
        return r;
    auto stand_in = aligned(len), got = aligned(len);
    WriteSource w({stand_in.get(), len}, src, 80);
    BackendIo io;
    io.op = BackendIo::Op::write;
    io.fd = d.fd.get();
    io.buf = stand_in.get();
    io.len = len;
    io.off = off;
    io.run_blocking();
    r.result = io.result;
    r.filled = w.filled();
    if (pread(d.fd.get(), got.get(), len, off_t(off)) == ssize_t(len))
        r.file.assign(got.get(), got.get() + len);
    return r;
}

TEST(WriteFromDirect, RefusedSourceGoesThroughTheAlignedStandIn)
{
    // The guest's buffers are not aligned as the O_DIRECT file needs; the
    // stand-in is (a request buffer's data starts on a page): the data is
    // copied there and written from it.
    if (DirectFile d; !d.fd)
        GTEST_SKIP() << "no O_DIRECT on /var/tmp: " << d.why;
    auto m = pattern(3 * 4096);
    const iovec iov[] = {{at(m, 1), 80}, {at(m, 81), 1000}, {at(m, 2001), 7192}};
    DirectWrite r = direct_write(iov, 8192, 4096);
    ASSERT_EQ(r.result, 8192) << strerror(-r.result);
    EXPECT_TRUE(r.filled);
    ASSERT_EQ(r.file.size(), 8192u);
    EXPECT_EQ(0, std::memcmp(r.file.data(), at(m, 81), 1000));
    EXPECT_EQ(0, std::memcmp(r.file.data() + 1000, at(m, 2001), 7192));
}

TEST(WriteFromDirect, AlignedSourceIsWrittenWithoutACopy)
{
    if (DirectFile d; !d.fd)
        GTEST_SKIP() << "no O_DIRECT on /var/tmp: " << d.why;
    auto guest = aligned(3 * 4096);
    for (size_t i = 0; i < 3 * 4096; i++)
        guest.get()[i] = std::byte(i * 31 + 1);
    // Headers in a descriptor of their own, data on whole pages: what a
    // guest's O_DIRECT write of page-aligned memory looks like.
    const iovec iov[] = {{guest.get() + 100, 80}, {guest.get() + 4096, 4096}};
    DirectWrite r = direct_write(iov, 4096, 0);
    ASSERT_EQ(r.result, 4096) << strerror(-r.result);
    EXPECT_FALSE(r.filled);
    ASSERT_EQ(r.file.size(), 4096u);
    EXPECT_EQ(0, std::memcmp(r.file.data(), guest.get() + 4096, 4096));
}

} // namespace
