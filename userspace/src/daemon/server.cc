// SPDX-License-Identifier: GPL-2.0
#include "daemon/server.h"

#include "daemon/init_record.h"
#include "daemon/startup.h"

#include "fdstore/client.h"
#include "fdstore/protocol.h"
#include "fs/passthrough.h"
#include "fuse/engine.h"
#include "fuse/opcodes.h"
#include "state/handle_table.h"
#include "state/inode_table.h"
#include "state/journal.h"
#include "state/region.h"
#include "transport/devfuse/mount.h"
#include "transport/devfuse/session.h"
#include "transport/uring/buffers.h"
#include "transport/uring/entry.h"
#include "transport/uring/transport.h"
#include "util/control.h"
#include "util/fault.h"
#include "util/log.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <optional>
#include <pthread.h>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#ifndef HOLDFAST_VERSION
#define HOLDFAST_VERSION "0.1.0"
#endif

namespace holdfast::daemon {

namespace {

void on_wake_signal(int) {}

// What the status command reports about recovery.
struct RecoveryInfo {
    bool recovered = false;
    unsigned restarts = 0;
    double attach_ms = 0;      // process start -> serving
    double since_crash_ms = 0; // predecessor's death (seen by the store) -> serving
    size_t journal_records = 0;
    size_t stored_fds = 0;
    bool resend_sent = false;
    uint64_t generation = 0;
};

// Requests from the control thread to the main thread.
std::mutex g_req_mu;
std::string g_upgrade_binary;

std::string status_json(const Options &o, const fuse::Engine &engine, const fs::Passthrough &pfs,
                        const state::InodeTable &inodes, const state::HandleTable &handles,
                        const devfuse::Session &session, const RecoveryInfo &ri,
                        std::chrono::steady_clock::time_point started, const uring::Transport *ring,
                        bool ring_persistent)
{
    const auto &st = engine.stats();
    const fuse::Negotiated n = engine.negotiated_snapshot();
    std::string req = "{", errs = "{";
    uint64_t total = 0, total_err = 0;
    for (uint32_t op = 0; op < fuse::kMaxOpcode; op++) {
        uint64_t c = st.requests[op].load(std::memory_order_relaxed);
        uint64_t e = st.errors[op].load(std::memory_order_relaxed);
        const char *name = fuse::opcode_name(op);
        std::string key = name ? name : "OP_" + std::to_string(op);
        if (c) {
            req += (req.size() > 1 ? ",\"" : "\"") + key + "\":" + std::to_string(c);
            total += c;
        }
        if (e) {
            errs += (errs.size() > 1 ? ",\"" : "\"") + key + "\":" + std::to_string(e);
            total_err += e;
        }
    }
    req += "}";
    errs += "}";
    double up = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\"pid\":%d,\"version\":\"%s\",\"transport\":\"%s\",\"threads\":%u,"
             "\"workers\":%u,\"max_threads\":%u,"
             "\"mountpoint\":\"%s\",\"shared_dir\":\"%s\",\"cache\":\"%s\",\"uptime_s\":%.3f,"
             "\"inodes\":%zu,\"handles\":%zu,\"protocol\":\"7.%u\",\"init_flags\":\"%#llx\","
             "\"kernel_has_resend\":%s,\"recovery\":{\"enabled\":%s,\"restarts\":%u,"
             "\"recovered\":%s,\"generation\":%llu,\"last_attach_ms\":%.3f,"
             "\"last_crash_to_serving_ms\":%.3f,\"resend_sent\":%s,\"journal_records\":%zu,"
             "\"stored_fds\":%zu,\"resent_requests\":%llu,\"replayed_from_journal\":%llu},"
             "\"requests_total\":%llu,\"errors_total\":%llu,"
             "\"malformed\":%llu,\"unknown_opcodes\":%llu,\"stalled\":%u,",
             getpid(), HOLDFAST_VERSION, ring ? "uring" : "dev", session.threads(),
             session.workers(), session.max_threads(), control::json_escape(o.mountpoint).c_str(),
             control::json_escape(o.fs.shared_dir).c_str(), fs::cache_mode_name(o.fs.cache), up,
             inodes.live(), handles.live(), n.minor, (unsigned long long)n.flags,
             n.kernel_has(fuse::kHasResend) ? "true" : "false", o.recovery ? "true" : "false",
             ri.restarts, ri.recovered ? "true" : "false", (unsigned long long)ri.generation,
             ri.attach_ms, ri.since_crash_ms, ri.resend_sent ? "true" : "false", ri.journal_records,
             ri.stored_fds, (unsigned long long)st.resent.load(std::memory_order_relaxed),
             (unsigned long long)pfs.replayed(), (unsigned long long)total,
             (unsigned long long)total_err,
             (unsigned long long)st.malformed.load(std::memory_order_relaxed),
             (unsigned long long)st.unknown.load(std::memory_order_relaxed), fault::stalled());
    std::string out = std::string(buf) + "\"requests\":" + req + ",\"errors\":" + errs;
    snprintf(buf, sizeof(buf),
             ",\"passthrough\":{\"active\":%s,\"backing_inodes\":%zu,\"opens\":%llu}",
             pfs.passing_through() ? "true" : "false", pfs.backing_inodes(),
             (unsigned long long)pfs.passthrough_opens());
    out += buf;
    if (ring) {
        // Per queue: what the ring carried (the rest came through /dev/fuse).
        uint64_t rq = 0, re = 0;
        std::string qs;
        for (const auto &q : ring->snapshot()) {
            rq += q.requests;
            re += q.errors;
            char b[400];
            snprintf(b, sizeof(b),
                     "%s{\"qid\":%u,\"cpu\":%d,\"live\":%u,\"requests\":%llu,"
                     "\"errors\":%llu,\"malformed\":%llu,\"offloaded\":%llu,"
                     "\"reregistered\":%llu,\"adopted\":%llu,\"backend_ops\":%llu,"
                     "\"backend_max\":%u}",
                     qs.empty() ? "" : ",", q.qid, q.cpu, q.live, (unsigned long long)q.requests,
                     (unsigned long long)q.errors, (unsigned long long)q.malformed,
                     (unsigned long long)q.offloaded, (unsigned long long)q.reregistered,
                     (unsigned long long)q.adopted, (unsigned long long)q.backend_ops,
                     q.backend_max);
            qs += b;
        }
        char b[320];
        snprintf(b, sizeof(b),
                 ",\"uring\":{\"queues\":%u,\"depth\":%u,\"payload_bytes\":%zu,"
                 "\"setup\":\"%s\",\"backend_io\":\"%s\",\"persistent\":%s,"
                 "\"adopted\":%llu,\"kicked\":%llu,"
                 "\"ring_requests\":%llu,\"ring_errors\":%llu,\"per_queue\":[",
                 ring->queues(), ring->depth(), ring->payload_size(), ring->setup().c_str(),
                 ring->backend_io() ? "uring" : "sync", ring_persistent ? "true" : "false",
                 (unsigned long long)ring->adopted(), (unsigned long long)ring->kicked(),
                 (unsigned long long)rq, (unsigned long long)re);
        out += b + qs + "]}";
    }
    return out + "}\n";
}

// `ring_volatile`: serving io_uring entries whose buffers die with us.
std::string handle_command(const Options &o, const std::string &cmd, bool ring_volatile)
{
    // "stall OPCODE POINT [COUNT]" | "unstall" | "upgrade [BINARY]"
    char a[64], b[64];
    unsigned count = 1;
    if (!strncmp(cmd.c_str(), "upgrade", 7)) {
        // Every commit on the ring also fetches the next request, so the old
        // server cannot stop taking requests.  Only a successor that adopts
        // our entries (their buffers are in the fd store) answers what the
        // kernel hands them meanwhile: otherwise refuse rather than lose it.
        if (ring_volatile)
            return "{\"error\":\"upgrade is not supported with the io_uring transport yet: "
                   "requests on the ring would be lost (Documentation/io-uring.rst)\"}\n";
        std::string bin = cmd.size() > 8 ? cmd.substr(8) : "";
        if (!bin.empty() && access(bin.c_str(), X_OK) != 0)
            return "{\"error\":\"cannot execute " + control::json_escape(bin) + "\"}\n";
        {
            std::lock_guard g(g_req_mu);
            g_upgrade_binary = bin.empty() ? "-" : bin;
        }
        kill(getpid(), SIGUSR1);
        return "{\"upgrade\":\"started\",\"pid\":" + std::to_string(getpid()) + "}\n";
    }
    if (!o.fault_injection)
        return "{\"error\":\"unknown command (fault injection is off)\"}\n";
    if (cmd == "unstall") {
        fault::disarm();
        return "{\"ok\":true}\n";
    }
    int k = sscanf(cmd.c_str(), "stall %63s %63s %u", a, b, &count);
    fault::Point p;
    if (k >= 2 && fault::parse_point(b, p)) {
        for (uint32_t op = 0; op < fuse::kMaxOpcode; op++) {
            const char *name = fuse::opcode_name(op);
            if (name && !strcasecmp(name, a)) {
                fault::arm(op, p, count);
                return "{\"ok\":true}\n";
            }
        }
    }
    return "{\"error\":\"usage: stall OPCODE before|mid|after [COUNT]\"}\n";
}

// The memory the io_uring entries live in, so that a successor can answer
// the requests the kernel handed us (uring/buffers.h): the predecessor's
// buffers if the fd store kept them and the region describes them, else a
// new memfd that goes to the fd store.  `depth` and `payload` become the
// predecessor's when its buffers are adopted (the entries keep their
// layout).  Without an fd store or a ring table, entries get private
// memory: crash recovery of requests in flight is then off.
uring::Persist ring_memory(state::Region &region, fdstore::Notifier *store, Fd stored,
                           unsigned queues, unsigned &depth, size_t &payload, uring::Buffers &bufs)
{
    auto &a = region.header().uring;
    state::UringEntryRecord *recs = region.uring_entries();
    const uint64_t cap = recs ? region.header().uring_capacity : 0;
    if (stored && a.state.load(std::memory_order_acquire) == state::kLive) {
        const size_t slot = uring::Entry::slot_size(a.payload_cap);
        std::string why;
        if (a.queues != queues)
            why = "they were made for " + std::to_string(a.queues) + " queues, not " +
                  std::to_string(queues);
        else if (a.depth < 1 || a.depth > 256 || uint64_t(a.queues) * a.depth > cap)
            why = "their depth " + std::to_string(a.depth) + " does not fit the region";
        else if (a.payload_cap < payload || a.payload_cap % 4096 || a.payload_cap > (1u << 30) ||
                 a.slot_size != slot)
            why = "their payload buffers do not fit what INIT settled";
        if (why.empty()) {
            try {
                bufs = uring::Buffers::adopt(std::move(stored), a.base,
                                             size_t(a.queues) * a.depth * slot);
                depth = a.depth;
                payload = a.payload_cap;
                return {bufs.base(), recs, true};
            } catch (const std::runtime_error &e) {
                why = e.what();
            }
        }
        LOG_ERR("cannot adopt the io_uring entries of the previous server (%s): requests it "
                "held stay unanswered until the mount is aborted",
                why.c_str());
    }
    if (!store || !recs || uint64_t(queues) * depth > cap) {
        if (store)
            LOG_WARN("io_uring entries in private memory (%s): requests in flight on the "
                     "ring are lost if this server dies",
                     recs ? "more entries than the region has records" : "no ring table");
        return {};
    }
    const size_t slot = uring::Entry::slot_size(payload);
    try {
        bufs = uring::Buffers::create(size_t(queues) * depth * slot);
    } catch (const std::runtime_error &e) {
        LOG_WARN("io_uring entries in private memory (%s)", e.what());
        return {};
    }
    // Describe the new memfd before it is stored; a successor trusts only
    // a live description, and only with the memfd next to it.
    a.state.store(state::kFree, std::memory_order_release);
    std::memset(static_cast<void *>(recs), 0, size_t(queues) * depth * sizeof(*recs));
    a.queues = queues;
    a.depth = depth;
    a.base = reinterpret_cast<uint64_t>(bufs.base());
    a.slot_size = slot;
    a.payload_cap = payload;
    a.state.store(state::kLive, std::memory_order_release);
    store->remove("uring");
    if (int r = store->store("uring", bufs.fd()); r < 0) {
        LOG_WARN("cannot keep the io_uring buffers in the fd store: %s", strerror(-r));
        a.state.store(state::kFree, std::memory_order_release);
    }
    return {bufs.base(), recs, false};
}

} // namespace

int exec_under_fdstore(int argc, char **argv)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        perror("holdfastd: /proc/self/exe");
        return 1;
    }
    self[n] = 0;
    std::string dir(self, strrchr(self, '/') - self);
    std::string store = dir + "/holdfast-fdstore";
    if (access(store.c_str(), X_OK) != 0) {
        fprintf(stderr,
                "holdfastd: %s not found: cannot protect the mount against crashes "
                "(run with --recovery off to serve without it)\n",
                store.c_str());
        return 1;
    }
    std::vector<char *> args;
    std::string dashdash = "--";
    args.push_back(store.data());
    args.push_back(dashdash.data());
    args.push_back(self);
    for (int i = 1; i < argc; i++)
        args.push_back(argv[i]);
    args.push_back(nullptr);
    execv(store.c_str(), args.data());
    fprintf(stderr, "holdfastd: exec %s: %s\n", store.c_str(), strerror(errno));
    return 1;
}

int serve(const Options &o)
{
    const long long t_start = mono_ns();
    raise_fd_limit();
    struct stat st;
    if (stat(o.fs.shared_dir.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "holdfastd: --shared-dir '%s': %s\n", o.fs.shared_dir.c_str(),
                errno ? strerror(errno) : "not a directory");
        return 1;
    }

    // Signals: the main thread waits for them; workers never see them,
    // except the wake-up signal that interrupts a blocking wait.
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1})
        sigaddset(&set, s);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa {};
    sa.sa_handler = on_wake_signal; // no SA_RESTART: we want the EINTR
    sigaction(SIGUSR2, &sa, nullptr);
    // We never negotiate FUSE_DONT_MASK: the kernel applies the caller's umask.
    umask(0);

    auto stored = fdstore::take_listen_fds();
    fdstore::Notifier notifier;
    RecoveryInfo ri;
    ri.stored_fds = stored.size();
    if (const char *r = getenv("HOLDFAST_RESTARTS"))
        ri.restarts = unsigned(atoi(r));
    Fd devfd = take_named(stored, "devfuse");
    const bool recovering = bool(devfd);
    if (!recovering && o.recovery && !notifier.available())
        LOG_WARN("no fd store: a crash of this process will take the mount down");

    // FUSE-over-io_uring: ask for it in INIT only if it can work here.  A
    // recovering server follows what its predecessor negotiated instead.
    bool want_uring = false;
    if (o.transport != Options::Transport::dev) {
        std::string why = uring::unavailable_reason();
        want_uring = why.empty();
        if (!want_uring && o.transport == Options::Transport::uring && !recovering) {
            fprintf(stderr, "holdfastd: --transport uring: %s\n", why.c_str());
            return 1;
        }
        if (!want_uring)
            LOG_INFO("transport: /dev/fuse, not io_uring: %s", why.c_str());
    }

    std::optional<state::Region> region;
    if (recovering) {
        Fd memfd = take_named(stored, "state");
        if (!memfd)
            throw std::runtime_error("the fd store holds a FUSE connection but no state region");
        if (!attach_region(std::move(memfd), region, ri.generation))
            return fdstore::kExitNoRestart;
    } else {
        if (stat(o.mountpoint.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "holdfastd: --mountpoint '%s': %s\n", o.mountpoint.c_str(),
                    errno ? strerror(errno) : "not a directory");
            return 1;
        }
        region.emplace(state::Region::create({o.max_inodes, o.max_handles, 1024}));
        ri.generation = 1;
    }
    state::InodeTable inodes(*region);
    state::HandleTable handles(*region);
    state::Journal journal(*region);
    fs::Recovery rec;
    if (o.recovery) {
        rec.journal = &journal;
        rec.store = notifier.available() ? &notifier : nullptr;
    }
    fs::Options fso = o.fs;
    fs::Passthrough pfs(fso, inodes, handles, rec);
    fuse::EngineLimits limits;
    if (want_uring)
        limits.extra_flags = fuse::kOverIoUring;
    limits.max_readahead = o.readahead_kib * 1024;
    fuse::Engine engine(pfs, limits);

    std::vector<Fd> clones;
    Fd ring_fd; // the predecessor's io_uring entry buffers
    std::optional<devfuse::Mount> mount;
    if (recovering) {
        LOG_DBG("recovery: region attached after %.2f ms", double(mono_ns() - t_start) / 1e6);
        ri.journal_records = journal.load_previous();
        std::vector<fdstore::NamedFd> rest;
        for (auto &nf : stored) {
            if (nf.name == "uring")
                ring_fd = std::move(nf.fd);
            else if (nf.name == "clone")
                clones.push_back(std::move(nf.fd));
            else
                rest.push_back(std::move(nf));
        }
        if (!recover_tables(pfs, engine, *region, std::move(rest)))
            return fdstore::kExitNoRestart;
        LOG_DBG("recovery: tables rebuilt after %.2f ms", double(mono_ns() - t_start) / 1e6);
        mount.emplace(devfuse::Mount::adopt(std::move(devfd), o.mountpoint));
        ri.recovered = true;
    } else {
        pfs.start_fresh();
        mount.emplace(devfuse::Mount::create(
            {o.mountpoint, o.fs.shared_dir, o.allow_other, o.default_permissions, o.fs.readonly}));
        // A restarted server finds the readahead set: it belongs to the mount.
        if (o.readahead_kib) {
            if (std::string why = mount->set_readahead(o.readahead_kib); why.empty())
                LOG_DBG("readahead: %u KiB", o.readahead_kib);
            else if (o.readahead_set || geteuid() == 0)
                LOG_WARN("--readahead %u: %s: the kernel's readahead stays", o.readahead_kib,
                         why.c_str());
            else // the default, and only root may write a bdi's readahead
                LOG_INFO("readahead: the kernel's (%s)", why.c_str());
        }
        if (rec.store) {
            rec.store->store("state", region->memfd());
            rec.store->store("devfuse", mount->fd());
        }
    }
    // Kernel passthrough registers backing files on the /dev/fuse fd, which
    // the fd store keeps: ids a predecessor registered stay valid for us.
    devfuse::BackingDevice backing(mount->fd());
    pfs.set_backing(&backing);
    std::mutex init_mu;
    std::condition_variable init_cv;
    bool init_seen = false;
    engine.set_on_init([&](const fuse::Negotiated &n) {
        persist_init(region->header(), n);
        std::lock_guard g(init_mu);
        init_seen = true;
        init_cv.notify_all();
    });

    unsigned threads = o.threads;
    if (!threads) {
        unsigned n = std::thread::hardware_concurrency();
        threads = n < 2 ? 2 : n;
        if (o.max_threads && threads > o.max_threads)
            threads = o.max_threads;
    }
    // Settled by a predecessor: no INIT will come (read before the readers run).
    const bool adopted = engine.negotiated().done;
    // libfuse's loop grows to 10 threads: as many blocking backend calls in
    // flight, on any number of CPUs.
    const unsigned max_threads = o.max_threads ? o.max_threads : std::max(threads, 10u);
    devfuse::Session session(engine, mount->fd(), threads, std::move(clones), max_threads);
    if (recovering) {
        // Everything the dead server had read goes back to the queue, marked
        // FUSE_UNIQUE_RESEND; the journal answers what already happened.
        // Before our readers start: a resend takes every request read and
        // not yet answered, and would hand ours back to us as if they were
        // our predecessor's, to be executed twice.
        if (engine.negotiated().kernel_has(fuse::kHasResend)) {
            int r = session.notify_resend();
            ri.resend_sent = r == 0;
            if (r)
                LOG_ERR("FUSE_NOTIFY_RESEND failed: %s", strerror(-r));
        } else {
            LOG_WARN("this kernel lacks FUSE_NOTIFY_RESEND (6.9+): requests the previous "
                     "server had read are lost; their callers wait until the mount is aborted");
        }
    }
    std::vector<int> made = session.start();
    if (rec.store && !made.empty())
        rec.store->store("clone", made);
    threads = session.threads();

    // FUSE-over-io_uring queues, next to the /dev/fuse readers: after INIT
    // for a new connection (INIT comes through /dev/fuse, and sizes the
    // buffers), at once when a predecessor negotiated the ring (the kernel
    // sends its requests there whatever we were asked for).
    uring::Buffers ring_bufs; // outlives `ring`, whose entries live in it
    bool ring_persistent = false;
    std::unique_ptr<uring::Transport> ring;
    if (adopted ? engine.negotiated().has(fuse::kOverIoUring) : want_uring) {
        std::string why;
        if (!adopted) {
            std::unique_lock l(init_mu);
            if (!init_cv.wait_for(l, std::chrono::seconds(10), [&] { return init_seen; }))
                why = "no FUSE_INIT from the kernel within 10 s";
            else if (!engine.negotiated().has(fuse::kOverIoUring))
                why = "the kernel did not offer FUSE_OVER_IO_URING in INIT";
        } else if (o.transport == Options::Transport::dev) {
            LOG_INFO("the connection was set up for io_uring by a predecessor: serving its queues");
        }
        if (why.empty()) {
            unsigned depth = o.uring_queue_depth;
            size_t payload = uring::Transport::payload_for(engine);
            uring::Persist mem = ring_memory(*region, rec.store, std::move(ring_fd),
                                             uring::possible_cpus(), depth, payload, ring_bufs);
            ring_persistent = mem.base != nullptr;
            ring = std::make_unique<uring::Transport>(engine, mount->fd(), depth, payload,
                                                      o.uring_backend_io);
            why = ring->start(!adopted, mem);
            if (!why.empty())
                ring.reset();
            else {
                if (ring->adopted())
                    LOG_INFO("io_uring: answered %llu requests our predecessor held on its "
                             "entries",
                             (unsigned long long)ring->adopted());
                if (adopted)
                    ring->kick(o.mountpoint);
            }
        }
        if (ring) {
            LOG_INFO("transport: io_uring, %u queues x %u entries of %zu KiB (%s), /dev/fuse "
                     "for FORGET and INTERRUPT",
                     ring->queues(), ring->depth(), ring->payload_size() / 1024,
                     ring->setup().c_str());
        } else if (adopted) {
            LOG_ERR("cannot serve the io_uring queues this connection depends on (%s): "
                    "requests the kernel queues for the ring will wait",
                    why.c_str());
        } else if (o.transport == Options::Transport::uring) {
            fprintf(stderr, "holdfastd: --transport uring: %s\n", why.c_str());
            mount->unmount();
            return 1;
        } else {
            LOG_INFO("transport: /dev/fuse, not io_uring: %s", why.c_str());
        }
    }

    if (recovering) {
        long long now = mono_ns();
        ri.attach_ms = double(now - t_start) / 1e6;
        if (const char *c = getenv("HOLDFAST_CRASH_NS"); c && atoll(c) > 0)
            ri.since_crash_ms = double(now - atoll(c)) / 1e6;
        LOG_INFO("recovered %s: %zu inodes, %zu handles, %zu journal records, %zu stored fds, "
                 "attach %.2f ms, crash-to-serving %.2f ms (restart %u)",
                 o.mountpoint.c_str(), inodes.live(), handles.live(), ri.journal_records,
                 ri.stored_fds, ri.attach_ms, ri.since_crash_ms, ri.restarts);
    }
    auto started = std::chrono::steady_clock::now();

    std::unique_ptr<control::Server> ctl;
    try {
        ctl = std::make_unique<control::Server>(
            control::socket_path(o.mountpoint), [&](const std::string &cmd) {
                if (cmd == "status")
                    return status_json(o, engine, pfs, inodes, handles, session, ri, started,
                                       ring.get(), ring_persistent);
                return handle_command(o, cmd, ring != nullptr && !ring_persistent);
            });
    } catch (const std::exception &e) {
        LOG_WARN("no control socket: %s", e.what());
    }
    if (!recovering)
        LOG_INFO("serving %s on %s (%u threads, up to %u, cache=%s%s%s)", o.fs.shared_dir.c_str(),
                 o.mountpoint.c_str(), threads, session.max_threads(),
                 fs::cache_mode_name(o.fs.cache), o.fs.writeback ? ", writeback" : "",
                 rec.store ? ", crash recovery on" : "");
    if (notifier.available())
        notifier.send("READY=1\nSTATUS=serving " + o.mountpoint + "\n");
    // The ready fd is for whoever started the very first server; a restarted
    // one may find a stored fd at that number.
    if (o.ready_fd >= 0 && !recovering && ri.restarts == 0) {
        if (write(o.ready_fd, "ready\n", 6) < 0)
            LOG_WARN("--ready-fd %d: %s", o.ready_fd, strerror(errno));
        close(o.ready_fd);
    }

    // Wait for a signal, or for the connection to go away (external umount).
    std::atomic<bool> gone{false};
    std::thread waiter([&] {
        session.join();
        if (ring)
            ring->join();
        gone.store(true);
        kill(getpid(), SIGHUP);
    });
    for (;;) {
        int sig = 0;
        sigwait(&set, &sig);
        if (sig == SIGUSR1) {
            std::string bin;
            {
                std::lock_guard g(g_req_mu);
                bin = std::move(g_upgrade_binary);
            }
            if (bin.empty() || !notifier.available()) {
                LOG_WARN("upgrade requested but no fd store to hand over through");
                continue;
            }
            long long t0 = mono_ns();
            if (bin != "-")
                notifier.send("HOLDFAST_EXEC=" + bin + "\n");
            notifier.send("STOPPING=1\nHOLDFAST_RESTART=1\n");
            if (ring) {
                // A commit also fetches the next request: whatever the kernel
                // hands our entries from here on stays in their buffers, for
                // the successor to answer (it adopts them, as after a crash).
                // Without persistent buffers the upgrade was refused.
                ring->park();
            }
            // A worker blocked in a lock wait never finishes: its request is
            // resent to our successor, which waits in its place.
            unsigned busy = session.stop(500);
            LOG_INFO("handover: stopped taking requests in %.2f ms (%u still busy; the kernel "
                     "resends theirs to our successor)",
                     double(mono_ns() - t0) / 1e6, busy);
            mount->release();
            ctl.reset();
            // Workers still blocked (a lock wait) die with us; quick_exit
            // skips destructors that would wait for them.
            fflush(nullptr);
            std::quick_exit(0);
        }
        if (sig == SIGHUP && !gone.load())
            continue; // a hangup of our terminal is not a stop
        LOG_INFO("%s: unmounting %s", gone.load() ? "connection gone" : strsignal(sig),
                 o.mountpoint.c_str());
        break;
    }
    if (notifier.available())
        notifier.send("STOPPING=1\n");
    mount->unmount();
    waiter.join();
    ctl.reset();
    return 0;
}

} // namespace holdfast::daemon
