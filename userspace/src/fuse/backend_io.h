// SPDX-License-Identifier: GPL-2.0
// A data operation on a backing file that the filesystem describes and the
// transport carries out: READ, WRITE, FSYNC and FALLOCATE of an open file.
//
// A transport that owns an io_uring (FUSE-over-io_uring) submits these on
// its ring next to its commits, so one queue thread keeps as many of them in
// flight as the kernel hands it requests, instead of blocking in pread() for
// each.  Engine::handle() leaves `op` at none when the request was served
// synchronously; otherwise the transport submits the operation, feeds every
// completion to absorb(), submits again what is left (a short read or write
// that is not at EOF), and hands the result to Engine::complete().
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <sys/uio.h>

namespace holdfast::fuse {

// The part of the buffers `iov` that starts `skip` bytes in and is at most
// `max` bytes long, as at most dst.size() iovecs in `dst` (empty ones left
// out).  Returns how many entries it filled.  They cover less than `max`
// when `iov` ends first or `dst` is full; never anything outside `iov`.
size_t iov_window(std::span<const iovec> iov, uint64_t skip, uint64_t max, std::span<iovec> dst);

// How a backing file takes reads (or writes), learnt on first use and kept
// with the open file (BackendIo::how).
enum class IoPath : uint8_t {
    unknown = 0,
    // RWF_NOWAIT works: try without blocking, and only what would block
    // (data not in the page cache) goes to the ring.
    nowait,
    // A memory filesystem (tmpfs, ramfs) without RWF_NOWAIT: its I/O never
    // waits for a device, so it is done at once; on the ring it would go to
    // an io_uring worker thread and back for nothing.
    inline_,
    // Anything else without RWF_NOWAIT may block: always the ring.
    ring,
};

// The IoPath of a file opened O_DIRECT, for reads and writes alike.
// RWF_NOWAIT does not pay there: on ext4 (Linux 6.18) a 4 KiB O_DIRECT
// preadv2(RWF_NOWAIT) does not fail but waits for the device (37 us each,
// blocking the queue thread), and a pwritev2(RWF_NOWAIT) always fails with
// EAGAIN.  So the ring, but for memory filesystems (inline, as ever).
IoPath direct_io_path(int fd);

struct BackendIo {
    enum class Op : uint8_t { none, read, write, fsync, fdatasync, fallocate };

    Op op = Op::none;
    int fd = -1;
    // read: the reply's payload area; write: the request's data.
    std::byte *buf = nullptr;
    uint32_t len = 0;
    uint64_t off = 0;
    uint64_t length = 0; // fallocate's length (len is for transfers)
    int mode = 0;        // fallocate's mode
    // The open file's IoPath for this direction, shared by its operations;
    // null: always the ring.
    std::atomic<uint8_t> *how = nullptr;
    // Keeps the open file (and so `fd`) alive until the operation is done:
    // a RELEASE may come from a hostile client while it is in flight.
    std::shared_ptr<const void> pin;
    // Bytes transferred so far; the operation's result once finished.
    uint32_t done = 0;
    int result = 0;

    bool pending() const { return op != Op::none; }

    // Carries out what can be done without waiting for a device (see
    // IoPath).  Returns true if the operation finished here (absorb() was
    // fed its result); false if the rest must go to the ring.
    bool try_now();
    // Carries out the whole operation with blocking calls (a transport
    // whose threads may block), feeding absorb() until it is finished.
    void run_blocking();
    // A READ carried out like run_blocking(), but into the buffers `dst`
    // from byte `skip` on instead of into `buf` (vhost-user: the guest's
    // writable descriptors, after the reply header), so the data is not
    // copied again.  Never writes outside `dst` nor more than `len` bytes:
    // a `dst` with less room ends the read there, as at EOF, so the caller
    // makes sure it has `len` bytes.  Returns false, having transferred
    // nothing, if the fd refuses these buffers (EINVAL: an O_DIRECT file
    // whose alignment they do not meet); `buf` with run_blocking() then.
    bool read_blocking_into(std::span<const iovec> dst, uint64_t skip);
    // A WRITE carried out like run_blocking(), but from the buffers `src`
    // from byte `skip` on instead of from `buf` (vhost-user: the guest's
    // readable descriptors, after the request's headers).  Never reads
    // outside `src` nor more than `len` bytes: a `src` that ends first ends
    // the write there, short.  Returns false, having transferred nothing,
    // if the fd refuses these buffers (EINVAL: an O_DIRECT file whose
    // alignment they do not meet).
    bool write_blocking_from(std::span<const iovec> src, uint64_t skip);

    // Where the next submission starts (after a short transfer).
    std::byte *next_buf() const { return buf + done; }
    uint32_t next_len() const { return len - done; }
    uint64_t next_off() const { return off + done; }

    // Folds one completion result into the operation.  Returns true when it
    // is finished (`result` then holds bytes transferred or a -errno), false
    // when the rest must be submitted again.  A transfer that fails after
    // some bytes went through reports those bytes; 0 bytes means EOF (read)
    // or no progress (write).
    bool absorb(int res)
    {
        if (res == -EINTR || res == -EAGAIN) {
            if (++retries_ <= kMaxRetries)
                return false;
            res = -EIO; // a backing file that never makes progress
        }
        switch (op) {
        case Op::read:
        case Op::write:
            if (res < 0) {
                result = done ? int(done) : res;
                return true;
            }
            // The kernel never reports more than it was asked for; a
            // result that does must not walk us past the buffer.
            if (uint32_t(res) > len - done) {
                result = -EIO;
                return true;
            }
            done += uint32_t(res);
            if (res == 0 || done == len) {
                result = int(done);
                return true;
            }
            return false;
        case Op::fsync:
        case Op::fdatasync:
        case Op::fallocate:
            result = res < 0 ? res : 0;
            return true;
        case Op::none:
            break;
        }
        result = -EIO;
        return true;
    }

  private:
    // read_blocking_into() and write_blocking_from(), for `op`.
    bool vectored_blocking(std::span<const iovec> iov, uint64_t skip);

    static constexpr int kMaxRetries = 64;
    int retries_ = 0;
};

// A WRITE's data left where the transport received it, in scattered
// buffers (vhost-user: the guest's readable descriptors), rather than copied
// into the request buffer behind the headers.  The filesystem is handed
// `stand_in`, the place the data would have had there, with nothing in it
// yet.  While this object lives, a BackendIo on this thread that writes
// from `stand_in` takes the bytes from `src` instead, whoever carries it
// out: the transport, or the filesystem itself (an append it journals and
// writes at once), which never learns that the data was not in place.  It
// is copied into `stand_in` only where it must be there: for try_now(),
// and when an O_DIRECT fd refuses `src`'s alignment (`stand_in` is then
// the aligned buffer a request buffer offers: Engine::kWriteDataSkew).
class WriteSource {
  public:
    // `src` from byte `skip` on holds what belongs in `stand_in`; both must
    // outlive this object.  Where `src` has fewer bytes, fill() zeroes the
    // rest, so no earlier request's bytes are ever written in their place.
    WriteSource(std::span<std::byte> stand_in, std::span<const iovec> src, uint64_t skip);
    ~WriteSource();
    WriteSource(const WriteSource &) = delete;
    WriteSource &operator=(const WriteSource &) = delete;

    // The one active on this thread whose stand-in holds all of
    // [p, p + n), or null.
    static WriteSource *covering(const std::byte *p, size_t n);
    // Where the bytes meant for `p` in the stand-in start in `src`.
    uint64_t skip_for(const std::byte *p) const;
    std::span<const iovec> src() const { return src_; }
    // Copies the data into the stand-in (once).
    void fill();
    bool filled() const { return filled_; }

  private:
    std::span<std::byte> stand_in_;
    std::span<const iovec> src_;
    uint64_t skip_;
    bool filled_ = false;
    WriteSource *outer_;
};

} // namespace holdfast::fuse
