// SPDX-License-Identifier: GPL-2.0
#include "transport/uring/transport.h"

#include "transport/uring/ring.h"
#include "util/fd.h"
#include "util/log.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <liburing.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/statfs.h>
#include <system_error>
#include <thread>
#include <unistd.h>

namespace holdfast::uring {

namespace {

// First line of a small file, without the newline; "" if unreadable.
std::string read_line(const char *path)
{
    char buf[256];
    Fd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd)
        return "";
    ssize_t n = ::read(fd.get(), buf, sizeof(buf) - 1);
    if (n <= 0)
        return "";
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    return buf;
}

constexpr const char *kEnableUring = "/sys/module/fuse/parameters/enable_uring";

} // namespace

unsigned possible_cpus()
{
    // "0-3,8-11": the kernel sizes its queue array by num_possible_cpus().
    std::string s = read_line("/sys/devices/system/cpu/possible");
    unsigned n = 0;
    const char *p = s.c_str();
    while (*p) {
        char *end;
        unsigned long a = strtoul(p, &end, 10), b = a;
        if (end == p)
            break;
        if (*end == '-')
            b = strtoul(end + 1, &end, 10);
        if (b >= a)
            n += unsigned(b - a + 1);
        p = *end == ',' ? end + 1 : end;
        if (*end != ',')
            break;
    }
    if (!n) {
        long c = sysconf(_SC_NPROCESSORS_CONF);
        n = c > 0 ? unsigned(c) : 1;
    }
    return n;
}

std::string unavailable_reason()
{
    if (access("/sys/module/fuse", F_OK) != 0) {
        // fuse may be a module nobody loaded yet: opening the device loads it.
        Fd f(::open("/dev/fuse", O_RDWR | O_CLOEXEC));
    }
    std::string v = read_line(kEnableUring);
    if (v.empty())
        return std::string("this kernel has no FUSE-over-io_uring (") + kEnableUring +
               " is missing: it needs Linux 6.14+ built with CONFIG_FUSE_IO_URING)";
    if (v != "Y" && v != "y" && v != "1")
        return std::string("FUSE-over-io_uring is disabled: ") + kEnableUring + " is " + v +
               " (echo Y > " + kEnableUring + " enables it)";
    std::string d = read_line("/proc/sys/kernel/io_uring_disabled");
    if (d == "2")
        return "io_uring is disabled (sysctl kernel.io_uring_disabled=2)";

    io_uring ring;
    io_uring_params p{};
    p.flags = IORING_SETUP_SQE128;
    int r = io_uring_queue_init_params(2, &ring, &p);
    if (r)
        return std::string("cannot create an io_uring with 128-byte SQEs: ") + strerror(-r) +
               (d == "1" ? " (sysctl kernel.io_uring_disabled=1)" : "");
    std::string why;
    io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    if (probe && !io_uring_opcode_supported(probe, IORING_OP_URING_CMD))
        why = "this kernel's io_uring lacks IORING_OP_URING_CMD";
    if (probe)
        io_uring_free_probe(probe);
    io_uring_queue_exit(&ring);
    return why;
}

size_t Transport::payload_for(const fuse::Engine &engine)
{
    const auto &n = engine.negotiated();
    return Entry::payload_size(n.max_write, n.max_pages, engine.reply_payload_size());
}

Transport::Transport(fuse::Engine &engine, int devfd, unsigned depth, size_t payload,
                     bool backend_io)
    : engine_(engine), devfd_(devfd), depth_(depth ? depth : 1),
      payload_(payload ? payload : payload_for(engine)), backend_io_(backend_io)
{
}

Transport::~Transport()
{
    stop();
    join();
}

std::string Transport::start(bool fresh, const Persist &mem, int timeout_ms)
{
    unsigned n = possible_cpus();
    std::string why;
    try {
        for (unsigned q = 0; q < n; q++) {
            QueueMemory qm;
            if (mem.base) {
                qm.base = mem.base + size_t(q) * depth_ * Entry::slot_size(payload_);
                qm.records = mem.records ? mem.records + size_t(q) * depth_ : nullptr;
                qm.adopt = mem.adopt;
            }
            queues_.push_back(std::make_unique<Queue>(engine_, devfd_, q, depth_, payload_,
                                                      fresh ? 20 : 1, qm, backend_io_));
            queues_.back()->start();
        }
    } catch (const std::exception &e) {
        why = std::string("starting io_uring queue ") + std::to_string(queues_.size()) + ": " +
              e.what();
    }
    for (auto &q : queues_) {
        std::string w = q->wait_armed(timeout_ms);
        if (!w.empty() && why.empty())
            why = w;
    }
    if (!why.empty()) {
        // A queue without entries keeps the kernel from ever using the ring:
        // take the others down too, and make sure the kernel gives up on it.
        stop();
        join();
        queues_.clear();
        std::string f = refuse(devfd_);
        if (!f.empty())
            why += "; " + f;
        return why;
    }
    return "";
}

std::string refuse(int devfd)
{
    // An entry whose header buffer is too small: fuse_uring_cmd() answers
    // EINVAL and, doing so, clears fc->io_uring and wakes every waiter.
    Ring ring;
    int r = ring.init(2, devfd);
    if (r)
        return std::string("cannot even create a ring to release the connection: ") + strerror(-r);
    static char byte;
    static const iovec bad[2] = {{&byte, 0}, {&byte, 0}};
    ring.prep_register(0, bad, 1);
    r = ring.submit_and_wait(1);
    int res = 0;
    ring.drain([&](uint64_t, int v) { res = v; });
    if (r < 0)
        return std::string("io_uring_enter: ") + strerror(-r);
    if (res == -EINVAL || res == -EOPNOTSUPP)
        return ""; // refused: the connection is back on /dev/fuse
    return std::string("the kernel did not refuse a malformed REGISTER (") +
           (res ? strerror(-res) : "accepted") + ")";
}

void Transport::stop()
{
    for (auto &q : queues_)
        if (q)
            q->stop();
}

void Transport::park()
{
    for (auto &q : queues_)
        if (q)
            q->park();
}

void Transport::kick(const std::string &mountpoint)
{
    std::vector<int> cpus;
    for (auto &q : queues_)
        if (q && q->cpu() >= 0)
            cpus.push_back(q->cpu());
    if (cpus.size() < queues_.size())
        LOG_WARN("io_uring: %zu of %zu queues are not pinned to their CPU and cannot be kicked: "
                 "requests queued there before our entries wait for the next one",
                 queues_.size() - cpus.size(), queues_.size());
    // Not from a queue thread: each statfs waits for a queue to answer it.
    try {
        std::thread([kicked = kicked_, mountpoint, cpus] {
            Fd fd(::open(mountpoint.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
            if (!fd) {
                LOG_WARN("io_uring: cannot kick the queues: %s: %s", mountpoint.c_str(),
                         strerror(errno));
                return;
            }
            for (int cpu : cpus) {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(cpu, &set);
                struct statfs st;
                if (sched_setaffinity(0, sizeof(set), &set) < 0) {
                    LOG_WARN("io_uring: cannot kick queue %d: CPU %d: %s", cpu, cpu,
                             strerror(errno));
                    continue;
                }
                if (fstatfs(fd.get(), &st) < 0) {
                    LOG_WARN("io_uring: cannot kick queue %d: statfs: %s", cpu, strerror(errno));
                    continue;
                }
                if (st.f_type != FUSE_SUPER_MAGIC) {
                    // Something is mounted over ours: its statfs reaches no queue.
                    LOG_WARN("io_uring: cannot kick the queues: %s is not our mount",
                             mountpoint.c_str());
                    return;
                }
                kicked->fetch_add(1, std::memory_order_relaxed);
            }
            LOG_DBG("io_uring: kicked %llu queues", (unsigned long long)kicked->load());
        }).detach();
    } catch (const std::system_error &e) {
        LOG_WARN("io_uring: cannot kick the queues: %s", e.what());
    }
}

void Transport::join()
{
    for (auto &q : queues_) {
        if (q && !q->join()) {
            // A helper is still blocked in a request (SETLKW) and holds the
            // queue: keep it alive rather than pull memory from under it.
            LOG_WARN("io_uring queue %u: a request is still being served; leaving it", q->qid());
            (void)q.release();
        }
    }
}

std::string Transport::setup() const
{
    return queues_.empty() ? "" : queues_.front()->setup();
}

std::vector<QueueInfo> Transport::snapshot() const
{
    std::vector<QueueInfo> v;
    for (auto &q : queues_) {
        if (!q)
            continue;
        const auto &s = q->stats();
        v.push_back({q->qid(), q->cpu(), s.live.load(std::memory_order_relaxed),
                     s.requests.load(std::memory_order_relaxed),
                     s.errors.load(std::memory_order_relaxed),
                     s.malformed.load(std::memory_order_relaxed),
                     s.offloaded.load(std::memory_order_relaxed),
                     s.reregistered.load(std::memory_order_relaxed),
                     s.adopted.load(std::memory_order_relaxed),
                     s.backend_ops.load(std::memory_order_relaxed),
                     s.backend_max.load(std::memory_order_relaxed)});
    }
    return v;
}

uint64_t Transport::adopted() const
{
    uint64_t n = 0;
    for (auto &q : queues_)
        if (q)
            n += q->stats().adopted.load(std::memory_order_relaxed);
    return n;
}

} // namespace holdfast::uring
