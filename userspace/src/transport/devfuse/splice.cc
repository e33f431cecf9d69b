// SPDX-License-Identifier: GPL-2.0
#include "transport/devfuse/splice.h"

#include "fuse/abi.h"
#include "util/log.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace holdfast::devfuse {

namespace {
constexpr size_t kPage = 4096;

// Pipe capacity counts slots: a page of file data or a write each.
size_t pipe_size_for(size_t bytes)
{
    size_t want = kPage;
    while (want < bytes)
        want <<= 1;
    return want;
}

// As big as `bytes` needs, or as /proc/sys/fs/pipe-max-size lets us
// (1 MiB by default, without CAP_SYS_RESOURCE).  Returns the size.
size_t size_pipe(int fd, size_t bytes)
{
    for (size_t want = pipe_size_for(bytes); want >= 16 * kPage; want >>= 1) {
        int r = fcntl(fd, F_SETPIPE_SZ, int(want));
        if (r >= 0)
            return size_t(r);
    }
    return 0;
}
} // namespace

SpliceReply::SpliceReply(size_t max_payload) : max_payload_(max_payload)
{
    if (!make_pipes())
        LOG_INFO("READ replies are not spliced: pipes of %zu KiB: %s", max_payload_ / 1024,
                 strerror(errno));
}

bool SpliceReply::wants(const fuse::BackendIo &io) const
{
    if (!cap_ || broken_ || io.op != fuse::BackendIo::Op::read || io.len < kMinSize ||
        io.len > cap_)
        return false;
    // A pipe holds pages, not bytes: a read that starts inside a page
    // takes one more than its length says.
    const size_t pages = (io.off % kPage + io.len + kPage - 1) / kPage;
    return pages <= slots_;
}

bool SpliceReply::make_pipes()
{
    int d[2], m[2];
    cap_ = 0;
    // Non-blocking: nobody else reads these pipes, so a splice into a full
    // one would wait forever; it fails with EAGAIN instead.
    if (pipe2(d, O_CLOEXEC | O_NONBLOCK) < 0)
        return false;
    data_r_.reset(d[0]);
    data_w_.reset(d[1]);
    if (pipe2(m, O_CLOEXEC | O_NONBLOCK) < 0)
        return false;
    msg_r_.reset(m[0]);
    msg_w_.reset(m[1]);
    // The message pipe holds the header's slot too.  Bigger reads than
    // the pipes take go through a buffer.
    size_t data = size_pipe(data_w_.get(), max_payload_);
    size_t msg = size_pipe(msg_w_.get(), max_payload_ + kPage);
    if (data < SpliceReply::kMinSize || msg < SpliceReply::kMinSize + kPage) {
        errno = EPERM;
        return false;
    }
    cap_ = std::min({max_payload_, data, msg - kPage});
    slots_ = std::min(data / kPage, msg / kPage - 1);
    return true;
}

void SpliceReply::reset()
{
    if (!make_pipes()) {
        broken_ = true;
        LOG_WARN("READ replies are no longer spliced: cannot make pipes: %s", strerror(errno));
    }
}

SpliceReply::Sent SpliceReply::send(int devfd, uint64_t unique, fuse::BackendIo &io,
                                    const std::function<void(uint32_t)> &done)
{
    loff_t off = loff_t(io.off);
    size_t got = 0;
    while (got < io.len) {
        ssize_t n = splice(io.fd, &off, data_w_.get(), nullptr, io.len - got, SPLICE_F_MOVE);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            // A file without splice_read, or an I/O error: the ordinary
            // path reads it again and reports the error itself.
            if (got)
                reset();
            return Sent::fallback;
        }
        if (n == 0)
            break; // EOF
        got += size_t(n);
    }
    done(uint32_t(got));
    fuse_out_header h{uint32_t(sizeof(h) + got), 0, unique};
    bool ok = ::write(msg_w_.get(), &h, sizeof(h)) == ssize_t(sizeof(h));
    for (size_t moved = 0; ok && moved < got;) {
        ssize_t n =
            splice(data_r_.get(), nullptr, msg_w_.get(), nullptr, got - moved, SPLICE_F_MOVE);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0;
        moved += ok ? size_t(n) : 0;
    }
    if (!ok) {
        LOG_WARN("reply to %#llx: moving spliced data: %s", (unsigned long long)unique,
                 strerror(errno));
        reset();
        return Sent::failed;
    }
    // /dev/fuse takes a reply in one piece.
    ssize_t n;
    do
        n = splice(msg_r_.get(), nullptr, devfd, nullptr, sizeof(h) + got, SPLICE_F_MOVE);
    while (n < 0 && errno == EINTR);
    if (n == ssize_t(sizeof(h) + got))
        return Sent::yes;
    const int e = n < 0 ? errno : EIO;
    reset();
    if (e == ENODEV)
        return Sent::gone;
    // ENOENT: the request was interrupted meanwhile; harmless.
    if (e == ENOENT)
        return Sent::yes;
    // Refused (a bug of ours): the request must still get an answer.
    LOG_WARN("reply to %#llx: %s", (unsigned long long)unique, strerror(e));
    return Sent::failed;
}

} // namespace holdfast::devfuse
