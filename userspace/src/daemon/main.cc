// SPDX-License-Identifier: GPL-2.0
// holdfastd: serves a host directory over FUSE.
#include "daemon/options.h"
#include "fs/passthrough.h"
#include "fuse/engine.h"
#include "fuse/opcodes.h"
#include "state/handle_table.h"
#include "state/inode_table.h"
#include "state/region.h"
#include "transport/devfuse/mount.h"
#include "transport/devfuse/session.h"
#include "util/control.h"
#include "util/log.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <pthread.h>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

#ifndef HOLDFAST_VERSION
#define HOLDFAST_VERSION "0.1.0"
#endif

using namespace holdfast;

namespace {

void on_wake_signal(int) {}

std::string status_json(const daemon::Options &o, const fuse::Engine &engine,
                        const state::InodeTable &inodes, const state::HandleTable &handles,
                        unsigned threads, std::chrono::steady_clock::time_point started)
{
    const auto &st = engine.stats();
    const auto &n = engine.negotiated();
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
    char buf[1024];
    snprintf(buf, sizeof(buf),
             "{\"pid\":%d,\"version\":\"%s\",\"transport\":\"dev\",\"threads\":%u,"
             "\"mountpoint\":\"%s\",\"shared_dir\":\"%s\",\"cache\":\"%s\",\"uptime_s\":%.3f,"
             "\"inodes\":%zu,\"handles\":%zu,\"protocol\":\"7.%u\",\"init_flags\":\"%#llx\","
             "\"kernel_has_resend\":%s,\"requests_total\":%llu,\"errors_total\":%llu,"
             "\"malformed\":%llu,\"unknown_opcodes\":%llu,",
             getpid(), HOLDFAST_VERSION, threads, control::json_escape(o.mountpoint).c_str(),
             control::json_escape(o.fs.shared_dir).c_str(), fs::cache_mode_name(o.fs.cache), up,
             inodes.live(), handles.live(), n.minor, (unsigned long long)n.flags,
             n.kernel_has(fuse::kHasResend) ? "true" : "false", (unsigned long long)total,
             (unsigned long long)total_err,
             (unsigned long long)st.malformed.load(std::memory_order_relaxed),
             (unsigned long long)st.unknown.load(std::memory_order_relaxed));
    return std::string(buf) + "\"requests\":" + req + ",\"errors\":" + errs + "}\n";
}

int run(const daemon::Options &o)
{
    struct stat st;
    if (stat(o.fs.shared_dir.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "holdfastd: --shared-dir '%s': %s\n", o.fs.shared_dir.c_str(),
                errno ? strerror(errno) : "not a directory");
        return 1;
    }
    if (stat(o.mountpoint.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "holdfastd: --mountpoint '%s': %s\n", o.mountpoint.c_str(),
                errno ? strerror(errno) : "not a directory");
        return 1;
    }

    // Signals: the main thread waits for them; workers never see them,
    // except the wake-up signal that interrupts a blocking lock wait.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa {};
    sa.sa_handler = on_wake_signal; // no SA_RESTART: we want the EINTR
    sigaction(SIGUSR2, &sa, nullptr);
    // We never negotiate FUSE_DONT_MASK: the kernel applies the caller's umask.
    umask(0);

    state::Region region = state::Region::create({o.max_inodes, o.max_handles});
    state::InodeTable inodes(region);
    state::HandleTable handles(region);
    fs::Options fo = o.fs;
    fs::Passthrough pfs(fo, inodes, handles);
    fuse::Engine engine(pfs, {});

    devfuse::Mount mount = devfuse::Mount::create(
        {o.mountpoint, o.fs.shared_dir, o.allow_other, o.default_permissions, o.fs.readonly});
    unsigned threads = o.threads;
    if (!threads) {
        unsigned n = std::thread::hardware_concurrency();
        threads = n < 2 ? 2 : n;
    }
    devfuse::Session session(engine, mount.fd(), threads);
    unsigned cloned = session.start();
    auto started = std::chrono::steady_clock::now();

    std::unique_ptr<control::Server> ctl;
    std::string ctl_path = control::socket_path(o.mountpoint);
    try {
        ctl = std::make_unique<control::Server>(ctl_path, [&](const std::string &cmd) {
            if (cmd == "status")
                return status_json(o, engine, inodes, handles, threads, started);
            return std::string("{\"error\":\"unknown command\"}\n");
        });
    } catch (const std::exception &e) {
        LOG_WARN("no control socket: %s", e.what());
    }
    LOG_INFO("serving %s on %s (%u threads, %u on cloned fds, cache=%s%s)",
             o.fs.shared_dir.c_str(), o.mountpoint.c_str(), threads, cloned,
             fs::cache_mode_name(o.fs.cache), o.fs.writeback ? ", writeback" : "");
    if (o.ready_fd >= 0) {
        if (write(o.ready_fd, "ready\n", 6) < 0)
            LOG_WARN("--ready-fd %d: %s", o.ready_fd, strerror(errno));
        close(o.ready_fd);
    }

    // Wait for a signal, or for the connection to go away (external umount).
    std::thread waiter([&session] { session.join(); kill(getpid(), SIGHUP); });
    int sig = 0;
    sigwait(&set, &sig);
    LOG_INFO("%s: unmounting %s", strsignal(sig), o.mountpoint.c_str());
    mount.unmount();
    waiter.join();
    ctl.reset();
    LOG_INFO("stopped after %llu requests",
             (unsigned long long)[&] {
                 uint64_t t = 0;
                 for (auto &c : engine.stats().requests)
                     t += c.load();
                 return t;
             }());
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    daemon::Options o;
    std::string e = daemon::parse(argc, argv, o);
    if (!e.empty()) {
        fprintf(stderr, "holdfastd: %s\nTry 'holdfastd --help' for more information.\n",
                e.c_str());
        return 2;
    }
    if (o.help) {
        fputs(daemon::usage(), stdout);
        return 0;
    }
    if (o.version) {
        printf("holdfastd %s (FUSE protocol 7.%u)\n", HOLDFAST_VERSION, fuse::kOurMinor);
        return 0;
    }
    log::set_level(o.log_level);
    try {
        return run(o);
    } catch (const std::exception &ex) {
        fprintf(stderr, "holdfastd: %s\n", ex.what());
        return 1;
    }
}
