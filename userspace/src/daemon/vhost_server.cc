// SPDX-License-Identifier: GPL-2.0
#include "daemon/vhost_server.h"

#include "daemon/init_record.h"
#include "daemon/replug_agent.h"
#include "daemon/sandbox.h"
#include "daemon/startup.h"
#include "daemon/state_mover.h"
#include "fdstore/client.h"
#include "fdstore/protocol.h"
#include "fs/passthrough.h"
#include "fuse/abi.h"
#include "fuse/engine.h"
#include "fuse/opcodes.h"
#include "state/dax_table.h"
#include "state/handle_table.h"
#include "state/inode_table.h"
#include "state/journal.h"
#include "state/region.h"
#include "transport/vhost_user/backend.h"
#include "transport/vhost_user/backend_channel.h"
#include "transport/vhost_user/connection.h"
#include "util/log.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <mutex>
#include <optional>
#include <poll.h>
#include <sys/mman.h>
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
size_t scatter(const std::vector<iovec> &iov,
               std::initializer_list<std::span<const std::byte>> parts)
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
// the reply into the chain's writable buffers (a READ's data is read from
// the backing file into them directly, a WRITE's written from its readable
// ones).
void queue_worker(vhost::Virtqueue &vq, fuse::Engine &engine, std::atomic<unsigned> &running)
{
    const size_t in_size = engine.request_buffer_size();
    const size_t out_size = engine.reply_payload_size();
    Buffer in_buf = alloc_buffer(fuse::Engine::kWriteDataSkew + in_size);
    std::byte *const in = in_buf.get() + fuse::Engine::kWriteDataSkew;
    Buffer payload = alloc_buffer(out_size);
    auto reply = std::make_unique<fuse::Reply>(std::span<std::byte>(payload.get(), out_size));
    fuse::BackendIo io;
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
                    c.out,
                    {std::span<const std::byte>(reinterpret_cast<std::byte *>(&oh), sizeof(oh))}));
            }
            LOG_WARN("vq %u: request of %llu bytes refused", vq.index(),
                     (unsigned long long)c.in_bytes);
        } else {
            // A WRITE's data stays in the guest's buffers: only its headers
            // come here, and the backing file is written from guest memory.
            // The rest of the buffer stands in for the data (WriteSource):
            // an O_DIRECT file that refuses the guest buffers' alignment
            // takes it copied there, on a page (kWriteDataSkew).
            constexpr size_t head = fuse::Engine::kWriteHeadLen;
            size_t n = gather(c.in, in, size_t(std::min<uint64_t>(c.in_bytes, head)));
            fuse_in_header ih{};
            std::memcpy(&ih, in, std::min(n, sizeof(ih)));
            const bool detached = n == head && ih.opcode == FUSE_WRITE;
            std::optional<fuse::WriteSource> src;
            // Never more reply than the guest has room for.
            reply->reset(0);
            if (detached) {
                const std::span<std::byte> stand_in(in + head, size_t(c.in_bytes) - head);
                src.emplace(stand_in, c.in, head);
                engine.handle_detached(std::span<const std::byte>(in, n), c.in_bytes, stand_in,
                                       *reply, c.resubmitted, io, false);
            } else {
                n = gather(c.in, in, size_t(c.in_bytes));
                // Data ops come back described: a READ goes from the backing
                // file straight into the guest's buffers, behind the header.
                engine.handle(std::span<const std::byte>(in, n), *reply, c.resubmitted, io, false);
            }
            bool in_guest = false;
            if (io.pending()) {
                constexpr uint64_t hl = sizeof(fuse_out_header);
                // A READ larger than the room takes the buffer, and gets
                // EIO below if its data does not fit.
                if (io.op == fuse::BackendIo::Op::read && c.out_bytes >= hl &&
                    io.len <= c.out_bytes - hl)
                    in_guest = io.read_blocking_into(c.out, hl);
                // A WRITE from the stand-in takes its data from `src`; only
                // reading guest memory, it leaves nothing for the dirty log
                // but the reply.
                if (!in_guest)
                    io.run_blocking();
                engine.complete(io, *reply);
            }
            if (in_guest) {
                // Only the header is left to write: the data is in place,
                // and it is written bytes the dirty log must mark too.
                fuse_out_header oh = reply->header();
                if (!reply->arg_bytes().empty() || oh.len > c.out_bytes) {
                    LOG_ERR("vq %u: READ reply of %u bytes (%zu of arguments) for %llu of room",
                            vq.index(), oh.len, reply->arg_bytes().size(),
                            (unsigned long long)c.out_bytes);
                    oh = {sizeof(fuse_out_header), -EIO, oh.unique};
                }
                scatter(c.out, {std::span<const std::byte>(reinterpret_cast<std::byte *>(&oh),
                                                           sizeof(oh))});
                written = oh.len;
            } else if (reply->should_send()) {
                fuse_out_header oh = reply->header();
                if (oh.len > c.out_bytes) {
                    LOG_WARN("vq %u: reply of %u bytes does not fit the guest's %llu", vq.index(),
                             oh.len, (unsigned long long)c.out_bytes);
                    oh = {sizeof(fuse_out_header), -EIO, oh.unique};
                    if (c.out_bytes >= sizeof(oh))
                        written = uint32_t(
                            scatter(c.out, {std::span<const std::byte>(
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

// The directory fd and name the path is removed by at the end.
void locate(Listener &l, const std::string &path)
{
    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    l.name = slash == std::string::npos ? path : path.substr(slash + 1);
    l.dir.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!l.dir)
        throw std::runtime_error("--socket-path: directory '" + dir + "': " + strerror(errno));
}

Listener listen_on(const std::string &path)
{
    Listener l;
    locate(l, path);
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
    // The path appears only once it listens: a front-end that connects as
    // soon as it sees it (QEMU, a test) must not find a socket that
    // refuses.  So bind under a temporary name, listen, then rename.
    const std::string tmp = path + "." + std::to_string(getpid()) + ".tmp";
    const std::string &bound = tmp.size() < sizeof(sa.sun_path) ? tmp : path;
    std::memcpy(sa.sun_path, bound.c_str(), bound.size() + 1);
    if (bind(l.fd.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) < 0)
        throw std::runtime_error("bind " + bound + ": " + strerror(errno));
    if (listen(l.fd.get(), 4) < 0) {
        unlink(bound.c_str());
        throw std::runtime_error(std::string("listen: ") + strerror(errno));
    }
    if (&bound == &tmp && rename(tmp.c_str(), path.c_str()) < 0) {
        int e = errno;
        unlink(tmp.c_str());
        throw std::runtime_error("rename " + tmp + " to " + path + ": " + strerror(e));
    }
    return l;
}

// Why serve_connection() returned.
// idle: the connection never sent a message and another one came (a chardev
// left behind by a re-plug cut short connects and never speaks).
enum class Ended { disconnected, dropped, signal, idle };

struct Served {
    uint64_t requests = 0, bad_chains = 0;
};

// Serves one front-end connection until it goes away or a stop signal.
// The workers are stopped and gone when it returns, unless `stuck` is set:
// then some are still busy in the host filesystem and must be left behind.
// `agent`, if any, reports while we serve (its re-plug made this
// connection: its verdict arrives after the device_add).
Ended serve_connection(const Options &o, Fd conn, int sigfd, int listen_fd, ReplugAgent *agent,
                       fuse::Engine &engine, StateMover &mover, vhost::BackendChannel *dax,
                       Served &total, bool &stuck, int &signo)
{
    vhost::BackendConfig cfg;
    cfg.dax_channel = dax;
    cfg.max_queues = 1 + o.max_request_queues;
    cfg.state_transfer = [&](uint32_t dir, int fd) { return mover.transfer(dir, fd); };
    cfg.state_check = [&] { return mover.check(); };
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

    Ended how = Ended::disconnected;
    bool active = false; // the front-end sent a message
    std::vector<uint8_t> payload;
    std::vector<int> fds;
    for (;;) {
        pollfd p[4] = {{conn.get(), POLLIN, 0},
                       {sigfd, POLLIN, 0},
                       {agent ? agent->fd() : -1, POLLIN, 0},
                       {active ? -1 : listen_fd, POLLIN, 0}};
        if (poll(p, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            LOG_ERR("poll: %s", strerror(errno));
            how = Ended::dropped;
            break;
        }
        if (p[1].revents & POLLIN) {
            signalfd_siginfo si;
            (void)!read(sigfd, &si, sizeof(si));
            signo = int(si.ssi_signo);
            LOG_INFO("%s: stopping", strsignal(signo));
            how = Ended::signal;
            break;
        }
        if (p[2].revents)
            agent->result(); // logged there; nothing to do while served
        if (!active && (p[3].revents & POLLIN) && !(p[0].revents & POLLIN)) {
            LOG_WARN("a front-end connected but never spoke, and another is waiting: "
                     "serving that one");
            how = Ended::idle;
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
            how = Ended::dropped;
            break;
        }
        active = true;
        vhost::Message m;
        err = vhost::parse(hdr, payload, fds, backend.max_queues(), m);
        vhost::Response resp;
        if (err.empty())
            err = backend.handle(m, resp);
        for (int fd : m.fds)
            if (fd >= 0)
                close(fd);
        if (!err.empty()) {
            LOG_ERR("vhost-user %s: %s; dropping the connection", vhost::request_name(hdr.request),
                    err.c_str());
            how = Ended::dropped;
            break;
        }
        if (!resp.bytes.empty() && !vhost::send_message(conn.get(), resp.bytes, resp.fd, err)) {
            LOG_ERR("vhost-user reply: %s", err.c_str());
            how = Ended::dropped;
            break;
        }
    }
    conn.reset();
    // Its back-end channel goes with it (a request in flight on it fails).
    if (dax)
        dax->detach();

    // Replies still being computed go nowhere: the guest re-sends those
    // requests to the next device (FUSE_UNIQUE_RESEND) and the journal
    // answers the ones that already happened.
    backend.shutdown();
    // A worker blocked in the host filesystem cannot be joined; give them
    // a moment (longer when we mean to go on: a worker left behind would
    // race its own resend).
    const int waits = how == Ended::signal || !o.reconnect ? 200 : 3000;
    for (int i = 0; i < waits && running.load(std::memory_order_acquire); i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::string by_queue;
    for (unsigned i = 0; i < backend.max_queues(); i++) {
        total.requests += backend.queue(i).served();
        total.bad_chains += backend.queue(i).bad_chains();
        if (backend.queue(i).served())
            by_queue += " vq" + std::to_string(i) + "=" + std::to_string(backend.queue(i).served());
    }
    if (!by_queue.empty())
        LOG_INFO("requests by queue:%s", by_queue.c_str());
    stuck = running.load(std::memory_order_acquire) != 0;
    if (stuck) {
        LOG_WARN("%u workers still busy in the host filesystem", running.load());
        // They reference the backend's queues: never destroy it under them.
        fflush(nullptr);
        _exit(how == Ended::signal ? 0 : 1);
    }
    for (auto &t : threads)
        t.join();
    return !active && how == Ended::disconnected ? Ended::idle : how;
}

void log_totals(const fuse::Engine &engine, const Served &total)
{
    const auto &stats = engine.stats();
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    LOG_INFO("served %llu requests (%llu refused chains, %llu malformed requests, %llu resent), "
             "cpu %.2f s user + %.2f s system",
             (unsigned long long)total.requests, (unsigned long long)total.bad_chains,
             (unsigned long long)stats.malformed.load(), (unsigned long long)stats.resent.load(),
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
}

// The path QEMU is to connect a new chardev to: --socket-path, or what the
// socket passed with --fd is bound to.
std::string bound_path(const Options &o, int fd)
{
    if (!o.socket_path.empty())
        return o.socket_path;
    sockaddr_un sa{};
    socklen_t len = sizeof(sa);
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&sa), &len) < 0 ||
        len <= offsetof(sockaddr_un, sun_path) || sa.sun_path[0] == 0)
        return "";
    return std::string(sa.sun_path, strnlen(sa.sun_path, len - offsetof(sockaddr_un, sun_path)));
}

} // namespace

int serve_vhost(const Options &o)
{
    const long long t_start = mono_ns();
    raise_fd_limit();
    if (!check_shared_dir(o.fs.shared_dir))
        return 1;

    // Signals arrive through a signalfd; no thread ever takes them.
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGHUP})
        sigaddset(&set, s);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);
    Fd sigfd(signalfd(-1, &set, SFD_CLOEXEC));
    umask(0);

    // Under the fd store a restarted server gets its predecessor's region
    // and listening socket back (and the fds of inodes it kept).
    auto stored = fdstore::take_listen_fds();
    fdstore::Notifier notifier;
    unsigned restarts = 0;
    if (const char *r = getenv("HOLDFAST_RESTARTS"))
        restarts = unsigned(atoi(r));
    const size_t stored_fds = stored.size();
    Fd memfd = take_named(stored, "state");
    Fd stored_listener = take_named(stored, "vhost-listen");
    Fd pending_replug = take_named(stored, "vhost-device");
    const bool recovering = bool(memfd);
    if (!recovering && o.recovery && !notifier.available())
        LOG_WARN("no fd store: a crash of this process will take the VM's file system down");

    Listener lis;
    if (stored_listener) {
        // Still listening: a front-end that connected while we were dead
        // waits in its backlog.
        lis.fd = std::move(stored_listener);
        if (!o.socket_path.empty())
            locate(lis, o.socket_path);
    } else if (o.listen_fd >= 0 && !recovering) {
        lis.fd.reset(o.listen_fd);
        fcntl(o.listen_fd, F_SETFD, FD_CLOEXEC);
    } else if (!o.socket_path.empty()) {
        lis = listen_on(o.socket_path);
    } else {
        fprintf(stderr, "holdfastd: the fd store holds a state region but no listening socket\n");
        return fdstore::kExitNoRestart;
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
    std::optional<state::Region> region;
    uint64_t generation = 1;
    if (recovering) {
        if (!attach_region(std::move(memfd), region, generation))
            return fdstore::kExitNoRestart;
    } else {
        region.emplace(
            state::Region::create({o.max_inodes, o.max_handles, 1024, 4096, o.dax_window}));
    }
    state::InodeTable inodes(*region);
    state::HandleTable handles(*region);
    state::Journal journal(*region);
    // The journal is on even without the fd store: a guest re-sends what
    // it had in flight to the next device, which this process may serve.
    fs::Recovery rec;
    rec.journal = &journal;
    if (o.recovery && notifier.available())
        rec.store = &notifier;
    fs::Passthrough pfs(opts.fs, inodes, handles, rec);
    // The DAX mapping table is checked whatever the options say, and used
    // with --dax-window.
    state::DaxTable dax_table(*region);
    std::unique_ptr<vhost::BackendChannel> dax_channel;
    if (dax_table.valid()) {
        try {
            dax_table.recover(region->header().inode_capacity);
        } catch (const std::runtime_error &e) {
            fprintf(stderr, "holdfastd: %s\n", e.what());
            return fdstore::kExitNoRestart;
        }
    }
    if (o.dax_window) {
        if (!dax_table.valid()) {
            LOG_WARN("--dax-window: the state region comes from a server without DAX and has "
                     "no mapping table: no DAX until the region is made afresh");
        } else if (dax_table.window() != o.dax_window) {
            fprintf(stderr,
                    "holdfastd: --dax-window %llu: the state region's DAX mappings are for a "
                    "window of %llu bytes\n",
                    (unsigned long long)o.dax_window, (unsigned long long)dax_table.window());
            return fdstore::kExitNoRestart;
        } else {
            dax_channel = std::make_unique<vhost::BackendChannel>(o.dax_window);
            pfs.set_dax(dax_channel.get(), &dax_table);
            if (dax_table.used())
                LOG_INFO("DAX: %zu mappings from the previous server", dax_table.used());
        }
    }
    // The device outlives the guest's kernel: a reboot or a remount
    // starts a new FUSE session on it.
    fuse::EngineLimits limits;
    limits.reinit = true;
    fuse::Engine engine(pfs, limits);
    size_t journal_records = 0;
    if (recovering) {
        journal_records = journal.load_previous();
        if (!recover_tables(pfs, engine, *region, std::move(stored)))
            return fdstore::kExitNoRestart;
    } else {
        pfs.start_fresh();
        if (rec.store) {
            rec.store->store("state", region->memfd());
            rec.store->store("vhost-listen", lis.fd.get());
        }
    }
    engine.set_on_init([&](const fuse::Negotiated &n) { persist_init(region->header(), n); });
    StateMover mover(*region, pfs, engine, o.migration_abort, o.migration_fast_path,
                     o.migration_find_paths);

    // QMP needs a socket the sandbox will not let us open: a helper process
    // forked now, before the sandbox, does it on our request.
    std::optional<ReplugAgent> agent;
    if (!o.qmp_socket.empty()) {
        std::string path = bound_path(o, lis.fd.get());
        if (path.empty()) {
            fprintf(stderr, "holdfastd: --qmp-socket: cannot tell which path the listening "
                            "socket is bound to (QEMU connects a new chardev there)\n");
            return 1;
        }
        // The device's properties during a re-plug: in the fd store, so that
        // a successor can finish a re-plug we die in the middle of.
        if (!pending_replug) {
            pending_replug.reset(memfd_create("holdfast-replug", MFD_CLOEXEC));
            if (pending_replug && rec.store)
                rec.store->store("vhost-device", pending_replug.get());
        }
        agent.emplace(
            ReplugAgent::start(o.qmp_socket, o.qmp_device, path, std::move(pending_replug)));
    }

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
    if (recovering) {
        const auto &n = engine.negotiated();
        LOG_INFO("recovered %s: generation %llu, %zu inodes, %zu handles, %zu journal records, "
                 "%zu stored fds, INIT %s, attach %.2f ms (restart %u)",
                 o.fs.shared_dir.c_str(), (unsigned long long)generation, inodes.live(),
                 handles.live(), journal_records, stored_fds,
                 n.done ? ("7." + std::to_string(n.minor)).c_str() : "not yet",
                 double(mono_ns() - t_start) / 1e6, restarts);
    }
    if (dax_channel)
        LOG_INFO("DAX window of %llu MiB (map alignment %u)",
                 (unsigned long long)(o.dax_window >> 20), 1u << fuse::kDaxPageShift);
    LOG_INFO("vhost-user-fs: serving %s on %s (sandbox %s, seccomp %s, cache=%s%s%s%s%s)",
             o.fs.shared_dir.c_str(), o.socket_path.empty() ? "--fd" : o.socket_path.c_str(),
             o.sandbox.c_str(), o.sandbox == "none" ? "none" : o.seccomp.c_str(),
             fs::cache_mode_name(o.fs.cache), o.fs.writeback ? ", writeback" : "",
             o.fs.xattr ? ", xattr" : "", rec.store ? ", crash recovery on" : "",
             o.reconnect ? ", reconnect" : "");
    if (notifier.available())
        notifier.send("READY=1\nSTATUS=serving " + o.fs.shared_dir + "\n");
    // The ready fd is for whoever started the very first server; a
    // restarted one may find a stored fd at that number.
    if (o.ready_fd >= 0 && !recovering && restarts == 0) {
        if (write(o.ready_fd, "ready\n", 6) < 0)
            LOG_WARN("--ready-fd %d: %s", o.ready_fd, strerror(errno));
        close(o.ready_fd);
    }

    // The device QEMU has is dead with our predecessor's connection: have
    // it replaced by one connected to us.
    if (agent && recovering)
        agent->request();

    Served total;
    int status = 0;
    unsigned connections = 0;
    for (;;) {
        // Wait for a front-end (or the agent's verdict, or a signal).
        Fd conn;
        bool stop = false;
        while (!conn && !stop) {
            pollfd p[3] = {{lis.fd.get(), POLLIN, 0},
                           {sigfd.get(), POLLIN, 0},
                           {agent ? agent->fd() : -1, POLLIN, 0}};
            if (poll(p, 3, -1) < 0) {
                if (errno == EINTR)
                    continue;
                LOG_ERR("poll: %s", strerror(errno));
                status = 1;
                stop = true;
                break;
            }
            if (p[1].revents & POLLIN) {
                signalfd_siginfo si;
                (void)!read(sigfd.get(), &si, sizeof(si));
                LOG_INFO("%s while waiting for a front-end: exiting", strsignal(int(si.ssi_signo)));
                stop = true;
                break;
            }
            if (p[2].revents) {
                auto r = agent->result();
                if (r && r->status == vmm::ReplugStatus::qemu_gone) {
                    LOG_INFO("QEMU is gone (%s): exiting", r->message.c_str());
                    stop = true;
                    break;
                }
            }
            if (p[0].revents & POLLIN)
                conn.reset(accept4(lis.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
        }
        if (stop)
            break;
        connections++;
        LOG_INFO("front-end connected%s", connections > 1 || recovering
                                              ? " (a new device: serving the guest's FUSE "
                                                "connection as it was)"
                                              : "");
        bool stuck = false;
        int signo = 0;
        Ended how = serve_connection(o, std::move(conn), sigfd.get(), lis.fd.get(),
                                     agent ? &*agent : nullptr, engine, mover, dax_channel.get(),
                                     total, stuck, signo);
        if (how == Ended::signal)
            break;
        if (how == Ended::idle) {
            // Not a device: nothing was served, nothing to re-plug.
            LOG_INFO("a front-end left without a word; waiting for the next");
            continue;
        }
        if (!o.reconnect) {
            // Like virtiofsd: the front-end went away, and so do we.
            status = how == Ended::dropped ? 1 : 0;
            break;
        }
        // What the workers finished since is in the journal now: resends of
        // those requests are answered from it, not executed twice.
        size_t n = journal.load_previous();
        LOG_INFO("waiting for the next front-end on %s (%zu journal records for resent requests)",
                 o.socket_path.empty() ? "--fd" : o.socket_path.c_str(), n);
        if (agent)
            agent->request();
    }

    lis.unlink_path();
    log_totals(engine, total);
    if (notifier.available())
        notifier.send("STOPPING=1\n");
    return status;
}

} // namespace holdfast::daemon
