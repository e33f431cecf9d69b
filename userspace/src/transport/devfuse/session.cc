// SPDX-License-Identifier: GPL-2.0
#include "transport/devfuse/session.h"

#include "transport/devfuse/splice.h"

#include "fuse/abi.h"
#include "util/log.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <vector>

namespace holdfast::devfuse {

Session::Session(fuse::Engine &engine, int devfd, unsigned threads, std::vector<Fd> clones,
                 unsigned max_threads)
    : engine_(engine), devfd_(devfd), nthreads_(threads ? threads : 1), max_threads_(max_threads),
      clones_(std::move(clones))
{
    // Every inherited clone needs a reader: it may hold requests.
    if (nthreads_ < clones_.size() + 1)
        nthreads_ = unsigned(clones_.size()) + 1;
    if (max_threads_ < nthreads_)
        max_threads_ = nthreads_;
}

Session::~Session() { join(); }

int Session::notify_resend()
{
    fuse_out_header h{sizeof(fuse_out_header), fuse::kNotifyResend, 0};
    if (::write(devfd_, &h, sizeof(h)) < 0)
        return -errno;
    return 0;
}

unsigned Session::stop(int timeout_ms)
{
    stopping_.store(true, std::memory_order_release);
    unpark_all();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        {
            // Kick readers out of read(2): the wake signal has no SA_RESTART.
            std::lock_guard g(mu_);
            for (pthread_t t : handles_)
                pthread_kill(t, SIGUSR2);
        }
        unsigned busy = running_.load(std::memory_order_acquire);
        if (!busy || std::chrono::steady_clock::now() >= deadline)
            return busy;
        usleep(5000);
    }
}

std::vector<int> Session::start()
{
    std::vector<int> made;
    size_t inherited = clones_.size();
    for (unsigned i = 0; i < nthreads_; i++) {
        int fd = devfd_;
        if (i > 0 && i - 1 < inherited) {
            fd = clones_[i - 1].get();
        } else if (i > 0) {
            // A clone gets its own processing queue in the kernel, so workers
            // do not contend on one fd's lock.
            Fd c(::open("/dev/fuse", O_RDWR | O_CLOEXEC));
            uint32_t master = uint32_t(devfd_);
            if (c && ioctl(c.get(), FUSE_DEV_IOC_CLONE, &master) == 0) {
                fd = c.get();
                made.push_back(fd);
                clones_.push_back(std::move(c));
            } else {
                LOG_WARN("FUSE_DEV_IOC_CLONE failed (%s): worker %u shares the main fd",
                         strerror(errno), i);
            }
        }
        if (!spawn(fd, false))
            throw std::system_error(EAGAIN, std::generic_category(), "start a /dev/fuse worker");
    }
    return made;
}

bool Session::spawn(int fd, bool spare)
{
    std::lock_guard g(mu_);
    if (stopping_.load(std::memory_order_acquire) || gone_.load(std::memory_order_acquire) ||
        total_.load(std::memory_order_relaxed) >= max_threads_)
        return false;
    running_.fetch_add(1, std::memory_order_acq_rel);
    try {
        workers_.emplace_back([this, fd, spare] { worker(fd, spare); });
    } catch (const std::system_error &e) {
        running_.fetch_sub(1, std::memory_order_acq_rel);
        LOG_WARN("cannot start a worker (%s): %u serve", e.what(),
                 total_.load(std::memory_order_relaxed));
        return false;
    }
    total_.fetch_add(1, std::memory_order_relaxed);
    handles_.push_back(workers_.back().native_handle());
    return true;
}

void Session::may_block()
{
    // seq_cst against park(): a spare counts itself parked before it looks
    // at reading_, we look at parked_ after reading_ went down, so one of
    // us sees the other.
    if (reading_.load() != 0)
        return;
    if (parked_.load() != 0) {
        std::lock_guard g(park_mu_);
        park_cv_.notify_one();
        return;
    }
    // A spare reads the main fd, which the fd store keeps: what it holds at
    // a crash is resent to our successor.
    if (total_.load(std::memory_order_relaxed) < max_threads_ && spawn(devfd_, true))
        LOG_DBG("a worker waits for a device: %u workers now",
                total_.load(std::memory_order_relaxed));
}

bool Session::park()
{
    std::unique_lock l(park_mu_);
    parked_.fetch_add(1);
    park_cv_.wait(l, [this] {
        return reading_.load() == 0 || stopping_.load(std::memory_order_acquire) ||
               gone_.load(std::memory_order_acquire);
    });
    parked_.fetch_sub(1);
    return !stopping_.load(std::memory_order_acquire) && !gone_.load(std::memory_order_acquire);
}

void Session::unpark_all()
{
    std::lock_guard g(park_mu_);
    park_cv_.notify_all();
}

void Session::join()
{
    // Workers start workers: take them one by one until none is left, each
    // joined before the next look (a joined worker starts no more).
    for (;;) {
        std::thread t;
        {
            std::lock_guard g(mu_);
            if (workers_.empty()) {
                handles_.clear();
                break;
            }
            t = std::move(workers_.back());
            workers_.pop_back();
        }
        if (t.joinable())
            t.join();
    }
    clones_.clear();
}

namespace {
struct FreeDeleter {
    void operator()(void *p) const { free(p); }
};
using Buffer = std::unique_ptr<std::byte, FreeDeleter>;

Buffer alloc_buffer(size_t n)
{
    // Page alignment lets the host fs take O_DIRECT-friendly paths.
    void *p = nullptr;
    if (posix_memalign(&p, 4096, n) != 0)
        throw std::bad_alloc();
    // Touch every page now: a server killed while the kernel copies a
    // request into a page it has never touched cannot fault it in, and the
    // kernel then fails that request with EIO instead of leaving it to be
    // resent to our successor.
    memset(p, 0, n);
    return Buffer(static_cast<std::byte *>(p));
}
} // namespace

// How `io`'s file takes it; without a learnt path (fsync, fallocate), the
// ring's: it may wait for a device.
fuse::IoPath Session::path_of(const fuse::BackendIo &io)
{
    return io.how ? fuse::IoPath(io.how->load(std::memory_order_relaxed)) : fuse::IoPath::ring;
}

bool Session::is_blocking_lock(const std::byte *req, size_t n)
{
    fuse_in_header h;
    if (n < sizeof(h))
        return false;
    memcpy(&h, req, sizeof(h));
    return h.opcode == FUSE_SETLKW;
}

// A lock wait can last forever.  Served on a reader, two waiters would hold
// both readers while the unlock that frees them (or the INTERRUPT) sits
// unread behind them: so each wait gets a thread of its own.
bool Session::offload(int fd, const std::byte *req, size_t n)
{
    if (waiters_.fetch_add(1, std::memory_order_acq_rel) >= kMaxWaiters) {
        waiters_.fetch_sub(1, std::memory_order_acq_rel);
        return false; // a flood of waits: serve inline rather than spawn
    }
    std::vector<std::byte> copy(req, req + n);
    try {
        std::thread([this, fd, copy = std::move(copy)] {
            std::byte none[1];
            fuse::Reply reply(std::span<std::byte>(none, 0));
            engine_.handle(std::span<const std::byte>(copy.data(), copy.size()), reply);
            if (reply.should_send()) {
                fuse_out_header hdr = reply.header();
                auto arg = reply.arg_bytes();
                iovec iov[2] = {{&hdr, sizeof(hdr)},
                                {const_cast<std::byte *>(arg.data()), arg.size()}};
                if (::writev(fd, iov, arg.empty() ? 1 : 2) < 0 && errno != ENOENT &&
                    errno != ENODEV)
                    LOG_WARN("reply to %#llx: %s", (unsigned long long)hdr.unique,
                             strerror(errno));
            }
            waiters_.fetch_sub(1, std::memory_order_acq_rel);
        }).detach();
    } catch (const std::system_error &) {
        waiters_.fetch_sub(1, std::memory_order_acq_rel);
        return false;
    }
    return true;
}

void Session::worker(int fd, bool spare)
{
    const size_t in_size = engine_.request_buffer_size();
    const size_t out_size = engine_.reply_payload_size();
    Buffer in_buf = alloc_buffer(fuse::Engine::kWriteDataSkew + in_size);
    std::byte *const in = in_buf.get() + fuse::Engine::kWriteDataSkew;
    Buffer payload = alloc_buffer(out_size);
    auto reply = std::make_unique<fuse::Reply>(std::span<std::byte>(payload.get(), out_size));
    SpliceReply splicer(out_size);
    fuse::BackendIo io;

    // A worker leaves when told to stop or when the connection is gone:
    // parked spares would never hear of the latter from read(2).
    struct Exit {
        Session &s;
        ~Exit()
        {
            s.gone_.store(true, std::memory_order_release);
            s.unpark_all();
            s.running_.fetch_sub(1, std::memory_order_acq_rel);
        }
    } exit_guard{*this};
    for (;;) {
        if (stopping_.load(std::memory_order_acquire))
            return;
        // A spare reads only while no other worker does.
        if (spare && reading_.load() != 0 && !park())
            return;
        reading_.fetch_add(1);
        ssize_t n = ::read(fd, in, in_size);
        const int err = errno;
        reading_.fetch_sub(1);
        if (n < 0) {
            // ENOENT: the request was interrupted before we read it.
            if (err == EINTR || err == EAGAIN || err == ENOENT)
                continue;
            if (err != ENODEV)
                LOG_ERR("read /dev/fuse: %s", strerror(err));
            return; // ENODEV: unmounted, the connection is gone
        }
        if (is_blocking_lock(in, size_t(n)) && offload(fd, in, size_t(n)))
            continue;
        // Data ops come back described, so a big READ can be spliced;
        // the rest is carried out here, as it would have been inline.
        engine_.handle(std::span<const std::byte>(in, size_t(n)), *reply, false, io, false);
        if (io.pending()) {
            auto sent = SpliceReply::Sent::fallback;
            if (splicer.wants(io)) {
                // Only memory filesystems never wait.
                if (path_of(io) != fuse::IoPath::inline_)
                    may_block();
                sent = splicer.send(fd, reply->unique(), io, [&](uint32_t got) {
                    io.done = got;
                    io.result = int(got);
                    engine_.complete(io, *reply);
                });
            }
            if (sent == SpliceReply::Sent::yes)
                continue;
            if (sent == SpliceReply::Sent::gone)
                return;
            if (sent == SpliceReply::Sent::failed) {
                reply->set_error(-EIO);
            } else {
                // What the page cache or memory has is served at once; the
                // rest waits for a device, and someone else reads meanwhile.
                // A file not yet classified may wait in the classifying
                // (fstatfs() of a network or FUSE file goes to its server).
                const auto path = path_of(io);
                const bool sure = path == fuse::IoPath::inline_ || path == fuse::IoPath::nowait;
                if (!sure)
                    may_block();
                if (!io.try_now()) {
                    if (sure)
                        may_block();
                    io.run_blocking();
                }
                engine_.complete(io, *reply);
            }
        }
        if (!reply->should_send())
            continue;
        fuse_out_header hdr = reply->header();
        auto arg = reply->arg_bytes();
        auto data = reply->payload();
        iovec iov[3];
        int cnt = 0;
        iov[cnt++] = {&hdr, sizeof(hdr)};
        if (!arg.empty())
            iov[cnt++] = {const_cast<std::byte *>(arg.data()), arg.size()};
        if (!data.empty())
            iov[cnt++] = {const_cast<std::byte *>(data.data()), data.size()};
        if (::writev(fd, iov, cnt) < 0) {
            // ENOENT: the request was interrupted/aborted meanwhile; harmless.
            if (errno == ENODEV)
                return;
            if (errno != ENOENT)
                LOG_WARN("reply to %#llx: %s", (unsigned long long)hdr.unique, strerror(errno));
        }
    }
}

} // namespace holdfast::devfuse
