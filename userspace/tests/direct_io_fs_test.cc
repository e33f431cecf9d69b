// SPDX-License-Identifier: GPL-2.0
// --direct-io in the filesystem itself, without a transport: which host fd
// and IoPath a READ or WRITE of an O_DIRECT handle is given, for buffers,
// offsets and lengths aligned or not (vhost-user and /dev/fuse hand the
// filesystem whatever buffers they have), and the data that comes back.
// The directory is under /var/tmp, on disk where /tmp may be a tmpfs.
#include "fs/passthrough.h"
#include "fuse/backend_io.h"
#include "scratch_fs.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <linux/magic.h>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

using namespace holdfast;

namespace {

constexpr size_t kLen = 64 * 1024;

std::byte pattern(size_t i)
{
    return std::byte((i * 7 + i / 4096) & 0xff);
}

struct FreeDeleter {
    void operator()(void *p) const { free(p); }
};

std::unique_ptr<std::byte, FreeDeleter> page_aligned(size_t n)
{
    void *p = nullptr;
    EXPECT_EQ(0, posix_memalign(&p, 4096, n));
    return std::unique_ptr<std::byte, FreeDeleter>(static_cast<std::byte *>(p));
}

bool fd_direct(int fd)
{
    return (fcntl(fd, F_GETFL) & O_DIRECT) != 0;
}

class DirectIoFs : public ::testing::TestWithParam<bool> {
  protected:
    void SetUp() override
    {
        char t[] = "/var/tmp/holdfast-diofs.XXXXXX";
        ASSERT_NE(nullptr, mkdtemp(t));
        top = t;
        std::string f = top + "/f";
        int fd = ::open(f.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        ASSERT_LE(0, fd);
        std::vector<std::byte> b(kLen);
        for (size_t i = 0; i < kLen; i++)
            b[i] = pattern(i);
        ASSERT_EQ(ssize_t(kLen), pwrite(fd, b.data(), kLen, 0));
        close(fd);
        // Whether this directory's filesystem does direct I/O at all: if
        // not, an O_DIRECT open must still work, buffered.
        fd = ::open(f.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
        host_dio = fd >= 0;
        if (fd >= 0)
            close(fd);
        struct statfs sf;
        ASSERT_EQ(0, statfs(top.c_str(), &sf));
        on_tmpfs = sf.f_type == TMPFS_MAGIC;
        fs::Options o;
        o.direct_io = GetParam();
        sfs = std::make_unique<test::ScratchFs>(top, o);
        fuse_entry_out e;
        ASSERT_EQ(0, sfs->lookup(1, "f", e));
        fuse_open_out out;
        ASSERT_EQ(0, sfs->open(e.nodeid, O_RDWR | O_DIRECT, out));
        fh = out.fh;
        h = sfs->handles->get(fh);
        ASSERT_TRUE(h);
    }
    void TearDown() override
    {
        h.reset();
        sfs.reset();
        std::filesystem::remove_all(top);
    }
    bool direct() const { return GetParam() && host_dio; }
    // Direct I/O that wants alignment: a disk's (a tmpfs needs none).
    bool strict() const { return direct() && !on_tmpfs; }
    // A READ of `len` at `off` into `buf`, described, then carried out.
    fuse::BackendIo read(std::byte *buf, uint32_t len, uint64_t off)
    {
        fuse::Reply r(std::span<std::byte>(buf, len));
        r.reset(sfs->next);
        fuse_read_in in{};
        in.fh = fh;
        in.offset = off;
        in.size = len;
        fuse::Ctx c{sfs->next++, 2, FUSE_READ, 0, 0, 0, false};
        fuse::BackendIo io;
        EXPECT_EQ(fuse::Filesystem::kDeferred, sfs->pfs->prep_read(c, in, r, io));
        return io;
    }
    fuse::BackendIo write(std::byte *buf, uint32_t len, uint64_t off)
    {
        fuse_write_in in{};
        in.fh = fh;
        in.offset = off;
        in.size = len;
        fuse_write_out wo{};
        fuse::Ctx c{sfs->next++, 2, FUSE_WRITE, 0, 0, 0, false};
        fuse::BackendIo io;
        EXPECT_EQ(fuse::Filesystem::kDeferred,
                  sfs->pfs->prep_write(c, in, std::span<const std::byte>(buf, len), wo, io));
        return io;
    }

    std::string top;
    bool host_dio = false;
    bool on_tmpfs = false;
    std::unique_ptr<test::ScratchFs> sfs;
    uint64_t fh = 0;
    std::shared_ptr<state::Handle> h;
};

TEST_P(DirectIoFs, TheHostFdIsODirectOnlyWithTheOption)
{
    EXPECT_EQ(direct(), fd_direct(h->fd.get()));
    EXPECT_EQ(direct(), (h->flags & O_DIRECT) != 0);
    // The record a successor reopens from says the same.
    EXPECT_EQ(direct(), (sfs->handles->record(fh).open_flags & O_DIRECT) != 0);
}

TEST_P(DirectIoFs, AlignedTransfersUseTheDirectFdOnTheRing)
{
    auto buf = page_aligned(kLen);
    auto io = read(buf.get(), 8192, 4096);
    EXPECT_EQ(h->fd.get(), io.fd);
    io.run_blocking();
    ASSERT_EQ(8192, io.result);
    for (size_t i = 0; i < 8192; i++)
        ASSERT_EQ(pattern(4096 + i), buf.get()[i]) << i;
    if (direct()) {
        // Never RWF_NOWAIT for an O_DIRECT fd on a disk (backend_io.h).
        const auto want = uint8_t(on_tmpfs ? fuse::IoPath::inline_ : fuse::IoPath::ring);
        EXPECT_EQ(want, h->io_path[0].load());
        EXPECT_EQ(want, h->io_path[1].load());
    }
    auto wio = write(buf.get(), 4096, 0);
    EXPECT_EQ(h->fd.get(), wio.fd);
    EXPECT_FALSE(h->dio_plain); // nothing needed the buffered fd
}

TEST_P(DirectIoFs, UnalignedTransfersUseABufferedFdWhereAlignmentCounts)
{
    auto buf = page_aligned(kLen + 4096);
    struct Case {
        size_t mem;
        uint32_t len;
        uint64_t off;
    } cases[] = {{1, 4096, 0}, {0, 4095, 0}, {0, 4096, 100}, {3, 1000, 7}, {16, 512, 512}};
    for (const auto &c : cases) {
        SCOPED_TRACE(testing::Message() << "mem+" << c.mem << " len " << c.len << " off " << c.off);
        std::byte *p = buf.get() + c.mem;
        auto io = read(p, c.len, c.off);
        // 16-byte aligned memory is not enough for ext4's 512.
        if (strict()) {
            EXPECT_NE(h->fd.get(), io.fd);
            EXPECT_FALSE(fd_direct(io.fd));
        } else {
            EXPECT_EQ(h->fd.get(), io.fd);
        }
        io.run_blocking();
        ASSERT_EQ(int(c.len), io.result);
        for (size_t i = 0; i < c.len; i++)
            ASSERT_EQ(pattern(c.off + i), p[i]) << i;
    }
    // Written unaligned, read back aligned (direct after buffered).
    std::byte *p = buf.get() + 5;
    for (size_t i = 0; i < 3000; i++)
        p[i] = std::byte(0xa5 ^ i);
    auto wio = write(p, 3000, 700);
    wio.run_blocking();
    ASSERT_EQ(3000, wio.result);
    auto rio = read(buf.get(), 4096, 0);
    EXPECT_EQ(h->fd.get(), rio.fd);
    rio.run_blocking();
    ASSERT_EQ(4096, rio.result);
    for (size_t i = 0; i < 3000; i++)
        ASSERT_EQ(std::byte(0xa5 ^ i), buf.get()[700 + i]) << i;
    EXPECT_EQ(pattern(699), buf.get()[699]);
    EXPECT_EQ(pattern(3700), buf.get()[3700]);
}

INSTANTIATE_TEST_SUITE_P(, DirectIoFs, ::testing::Values(false, true),
                         [](const auto &p) { return p.param ? "on" : "off"; });

} // namespace
