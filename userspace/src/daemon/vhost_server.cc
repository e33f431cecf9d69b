// SPDX-License-Identifier: GPL-2.0
#include "daemon/vhost_server.h"

#include "daemon/sandbox.h"
#include "fs/passthrough.h"
#include "fuse/abi.h"
#include "fuse/engine.h"
#include "fuse/opcodes.h"
#include "state/handle_table.h"
#include "state/inode_table.h"
#include "state/journal.h"
#include "state/region.h"
#include "transport/vhost_user/backend.h"
#include "transport/vhost_user/connection.h"
#include "util/log.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <optional>
#include <poll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace holdfast::daemon {

const char *vhost_capabilities_json()
{
    // "separate-options": we take virtiofsd's --shared-dir/--cache/...
    // spelling rather than "-o source=...".
    return "{\n  \"type\": \"fs\",\n  \"features\": [\n    \"separate-options\"\n  ]\n}\n";
}

namespace {

struct FreeDeleter {
    void operator()(void *p) const { free(p); }
};
using Buffer = std::unique_ptr<std::byte, FreeDeleter>;

Buffer alloc_buffer(size_t n)
{
    void *p = nullptr;
    if (posix_memalign(&p, 4096, n) != 0)
        throw std::bad_alloc();
    return Buffer(static_cast<std::byte *>(p));
}

// Copies up to `n` bytes out of guest memory.
size_t gather(const std::vector<iovec> &iov, std::byte *dst, size_t n)
{
    size_t done = 0;
    for (const iovec &v : iov) {
        if (done == n)
            break;
        size_t k = std::min(v.iov_len, n - done);
        std::memcpy(dst + done, v.iov_base, k);
        done += k;
    }
    return done;
}

// Writes `parts` into guest memory, in order; returns bytes written.
size_t scatter(const std::vector<iovec> &iov, std::initializer_list<std::span<const std::byte>> parts)
{
    size_t vi = 0, voff = 0, total = 0;
    for (auto p : parts) {
        size_t off = 0;
        while (off < p.size() && vi < iov.size()) {
            size_t room = iov[vi].iov_len - voff;
            size_t k = std::min(room, p.size() - off);
            std::memcpy(static_cast<std::byte *>(iov[vi].iov_base) + voff, p.data() + off, k);
            off += k;
            voff += k;
            total += k;
            if (voff == iov[vi].iov_len) {
                vi++;
                voff = 0;
            }
        }
    }
    return total;
}

// One queue worker: pops requests, runs them through the engine, writes
// the reply into the chain's writable buffers.
void queue_worker(vhost::Virtqueue &vq, fuse::Engine &engine, std::atomic<unsigned> &running)
{
    const size_t in_size = engine.request_buffer_size();
    const size_t out_size = engine.reply_payload_size();
    Buffer in = alloc_buffer(in_size);
    Buffer payload = alloc_buffer(out_size);
    auto reply = std::make_unique<fuse::Reply>(std::span<std::byte>(payload.get(), out_size));
    vhost::Chain c;
    while (vq.wait_pop(c)) {
        uint32_t written = 0;
        if (c.in_bytes > in_size) {
            // Larger than anything INIT allowed: answer EIO if we can.
            fuse_in_header ih;
            if (c.in_bytes >= sizeof(ih) && c.out_bytes >= sizeof(fuse_out_header)) {
                gather(c.in, reinterpret_cast<std::byte *>(&ih), sizeof(ih));
                fuse_out_header oh{sizeof(fuse_out_header), -EIO, ih.unique};
                written = uint32_t(scatter(
                    c.out, {std::span<const std::byte>(reinterpret_cast<std::byte *>(&oh),
                                                        sizeof(oh))}));
            }
            LOG_WARN("vq %u: request of %llu bytes refused", vq.index(),
                     (unsigned long long)c.in_bytes);
        } else {
            size_t n = gather(c.in, in.get(), size_t(c.in_bytes));
            // Never more reply than the guest has room for.
            reply->reset(0);
            engine.handle(std::span<const std::byte>(in.get(), n), *reply);
            if (reply->should_send()) {
                fuse_out_header oh = reply->header();
                if (oh.len > c.out_bytes) {
                    LOG_WARN("vq %u: reply of %u bytes does not fit the guest's %llu", vq.index(),
                             oh.len, (unsigned long long)c.out_bytes);
                    oh = {sizeof(fuse_out_header), -EIO, oh.unique};
                    if (c.out_bytes >= sizeof(oh))
                        written = uint32_t(scatter(
                            c.out, {std::span<const std::byte>(
                                       reinterpret_cast<std::byte *>(&oh), sizeof(oh))}));
                } else {
                    written = uint32_t(scatter(
                        c.out,
                        {std::span<const std::byte>(reinterpret_cast<std::byte *>(&oh), sizeof(oh)),
                         reply->arg_bytes(), reply->payload()}));
                }
            }
        }
        vq.complete(c, written);
        c.clear();
    }
    running.fetch_sub(1, std::memory_order_acq_rel);
}

// The listening socket, and how to remove its path at the end (by a
// directory fd, which still works inside the sandbox).
struct Listener {
    Fd fd;
    Fd dir;
    std::string name;

    void unlink_path()
    {
        if (dir && !name.empty())
            unlinkat(dir.get(), name.c_str(), 0);
        name.clear();
    }
};

Listener listen_on(const std::string &path)
{
    Listener l;
    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    l.name = slash == std::string::npos ? path : path.substr(slash + 1);
    l.dir.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!l.dir)
        throw std::runtime_error("--socket-path: directory '" + dir + "': " + strerror(errno));
    struct stat st;
    if (fstatat(l.dir.get(), l.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        // A socket left by a previous run goes; anything else stays.
        if (!S_ISSOCK(st.st_mode))
            throw std::runtime_error("--socket-path '" + path + "' exists and is not a socket");
        unlinkat(l.dir.get(), l.name.c_str(), 0);
    }
    l.fd.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!l.fd)
        throw std::runtime_error(std::string("socket: ") + strerror(errno));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof(sa.sun_path))
        throw std::runtime_error("--socket-path too long");
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    if (bind(l.fd.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) < 0)
        throw std::runtime_error("bind " + path + ": " + strerror(errno));
    if (listen(l.fd.get(), 1) < 0)
        throw std::runtime_error(std::string("listen: ") + strerror(errno));
    return l;
}

} // namespace

int serve_vhost(const Options &o)
{
    struct stat st;
    if (stat(o.fs.shared_dir.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "holdfastd: --shared-dir '%s': %s\n", o.fs.shared_dir.c_str(),
                errno ? strerror(errno) : "not a directory");
        return 1;
    }

    // Signals arrive through a signalfd; no thread ever takes them.
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGHUP})
        sigaddset(&set, s);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);
    Fd sigfd(signalfd(-1, &set, SFD_CLOEXEC));
    umask(0);

    Listener lis;
    if (o.listen_fd >= 0) {
        lis.fd.reset(o.listen_fd);
        fcntl(o.listen_fd, F_SETFD, FD_CLOEXEC);
    } else {
        lis = listen_on(o.socket_path);
    }

    // Guest pids mean nothing here; guest uids/gids are used as they are.
    Options opts = o;
    opts.fs.host_pids = false;
    // The guest checks permissions itself (default_permissions) with the
    // caller's supplementary groups, which we never see: run as the caller
    // only where it decides ownership, like virtiofsd.
    opts.fs.creds = fs::CredsPolicy::create_only;
    // Record locks stay in the guest, as with virtiofsd: a lock wait served
    // here would hold a queue thread (one per request queue) until the lock
    // is free, and the unlock that frees it would wait behind it on that
    // queue: a guest could wedge its own file system with two flock()s.
    // Not negotiating FUSE_POSIX_LOCKS/FUSE_FLOCK_LOCKS makes the guest
    // kernel lock locally, which is exact for the one guest a device serves.
    opts.fs.posix_locks = false;
    opts.fs.flock = false;
    state::Region region = state::Region::create({o.max_inodes, o.max_handles, 1024});
    state::InodeTable inodes(region);
    state::HandleTable handles(region);
    state::Journal journal(region);
    fs::Recovery rec;
    rec.journal = &journal;
    fs::Passthrough pfs(opts.fs, inodes, handles, rec);
    pfs.start_fresh();
    fuse::Engine engine(pfs, {});

    // Everything the server needs from the host is open: lock ourselves in.
    // (Single-threaded still: unshare(CLONE_NEWNS) insists.)
    std::string e = enter_sandbox(o.sandbox, o.fs.shared_dir);
    if (!e.empty()) {
        fprintf(stderr, "holdfastd: sandbox '%s': %s\n", o.sandbox.c_str(), e.c_str());
        lis.unlink_path();
        return 1;
    }
    if (o.sandbox != "none") {
        e = install_seccomp(o.seccomp);
        if (!e.empty()) {
            fprintf(stderr, "holdfastd: %s\n", e.c_str());
            lis.unlink_path();
            return 1;
        }
    }
    LOG_INFO("vhost-user-fs: serving %s on %s (sandbox %s, seccomp %s, cache=%s%s%s)",
             o.fs.shared_dir.c_str(), o.socket_path.empty() ? "--fd" : o.socket_path.c_str(),
             o.sandbox.c_str(), o.sandbox == "none" ? "none" : o.seccomp.c_str(),
             fs::cache_mode_name(o.fs.cache), o.fs.writeback ? ", writeback" : "",
             o.fs.xattr ? ", xattr" : "");
    if (o.ready_fd >= 0) {
        if (write(o.ready_fd, "ready\n", 6) < 0)
            LOG_WARN("--ready-fd %d: %s", o.ready_fd, strerror(errno));
        close(o.ready_fd);
    }

    // One front-end.
    Fd conn;
    for (;;) {
        pollfd p[2] = {{lis.fd.get(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            LOG_ERR("poll: %s", strerror(errno));
            lis.unlink_path();
            return 1;
        }
        if (p[1].revents & POLLIN) {
            signalfd_siginfo si;
            (void)!read(sigfd.get(), &si, sizeof(si));
            LOG_INFO("%s before a front-end connected: exiting", strsignal(int(si.ssi_signo)));
            lis.unlink_path();
            return 0;
        }
        if (p[0].revents & POLLIN) {
            conn.reset(accept4(lis.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (conn)
                break;
        }
    }
    lis.fd.reset();
    lis.unlink_path();
    LOG_INFO("front-end connected");

    vhost::BackendConfig cfg;
    cfg.max_queues = 1 + o.max_request_queues;
    vhost::Backend backend(cfg);
    const unsigned per_queue = o.threads ? o.threads : 4;
    std::vector<std::thread> threads;
    std::vector<bool> started(cfg.max_queues, false);
    std::atomic<unsigned> running{0};
    backend.on_ring_start = [&](unsigned qi) {
        if (started[qi])
            return;
        started[qi] = true;
        // Queue 0 is hiprio (FORGET, INTERRUPT): one worker is plenty.
        unsigned n = qi == 0 ? 1 : per_queue;
        for (unsigned k = 0; k < n; k++) {
            running.fetch_add(1, std::memory_order_acq_rel);
            threads.emplace_back(queue_worker, std::ref(backend.queue(qi)), std::ref(engine),
                                 std::ref(running));
        }
        LOG_DBG("vq %u: %u workers", qi, n);
    };

    int status = 0;
    std::vector<uint8_t> payload;
    std::vector<int> fds;
    for (;;) {
        pollfd p[2] = {{conn.get(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            LOG_ERR("poll: %s", strerror(errno));
            status = 1;
            break;
        }
        if (p[1].revents & POLLIN) {
            signalfd_siginfo si;
            (void)!read(sigfd.get(), &si, sizeof(si));
            LOG_INFO("%s: stopping", strsignal(int(si.ssi_signo)));
            break;
        }
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        vhost::MsgHeader hdr;
        std::string err;
        int r = vhost::read_message(conn.get(), hdr, payload, fds, err);
        if (r == 0) {
            LOG_INFO("front-end disconnected");
            break;
        }
        if (r < 0) {
            LOG_ERR("vhost-user: %s; dropping the connection", err.c_str());
            status = 1;
            break;
        }
        vhost::Message m;
        err = vhost::parse(hdr, payload, fds, backend.max_queues(), m);
        vhost::Response resp;
        if (err.empty())
            err = backend.handle(m, resp);
        for (int fd : m.fds)
            if (fd >= 0)
                close(fd);
        if (!err.empty()) {
            LOG_ERR("vhost-user %s: %s; dropping the connection",
                    vhost::request_name(hdr.request), err.c_str());
            status = 1;
            break;
        }
        if (!resp.bytes.empty() && !vhost::send_message(conn.get(), resp.bytes, resp.fd, err)) {
            LOG_ERR("vhost-user reply: %s", err.c_str());
            status = 1;
            break;
        }
    }

    backend.shutdown();
    // A worker blocked in the host filesystem (a lock wait) cannot be
    // joined; give them a moment, then leave without waiting.
    for (int i = 0; i < 200 && running.load(std::memory_order_acquire); i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    uint64_t served = 0, bad = 0;
    std::string by_queue;
    for (unsigned i = 0; i < backend.max_queues(); i++) {
        served += backend.queue(i).served();
        bad += backend.queue(i).bad_chains();
        if (backend.queue(i).served())
            by_queue += " vq" + std::to_string(i) + "=" + std::to_string(backend.queue(i).served());
    }
    if (!by_queue.empty())
        LOG_INFO("requests by queue:%s", by_queue.c_str());
    const auto &stats = engine.stats();
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    LOG_INFO("served %llu requests (%llu refused chains, %llu malformed requests), "
             "cpu %.2f s user + %.2f s system",
             (unsigned long long)served, (unsigned long long)bad,
             (unsigned long long)stats.malformed.load(),
             double(ru.ru_utime.tv_sec) + ru.ru_utime.tv_usec / 1e6,
             double(ru.ru_stime.tv_sec) + ru.ru_stime.tv_usec / 1e6);
    std::string ops;
    for (uint32_t op = 0; op < fuse::kMaxOpcode; op++) {
        uint64_t n = stats.requests[op].load(std::memory_order_relaxed);
        if (!n)
            continue;
        const char *name = fuse::opcode_name(op);
        ops += " " + std::string(name ? name : "OP") + "=" + std::to_string(n);
    }
    LOG_INFO("requests by opcode:%s", ops.c_str());
    if (running.load(std::memory_order_acquire)) {
        LOG_WARN("%u workers still busy in the host filesystem; exiting without them",
                 running.load());
        fflush(nullptr);
        _exit(status);
    }
    for (auto &t : threads)
        t.join();
    return status;
}

} // namespace holdfast::daemon
