// SPDX-License-Identifier: GPL-2.0
// holdfast-fdstore: keeps a daemon's fds alive across its crashes and
// restarts it with them.  Small on purpose, and harder to kill by accident
// than what it protects: it ignores hangups, forwards termination to the
// daemon instead of dying, and never allocates after start-up.
#include "fdstore/protocol.h"

#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstddef>
#include <initializer_list>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace holdfast::fdstore;

namespace {

struct Slot {
    int fd; // -1: free
    char name[kMaxNameLen + 1];
};

// Everything lives in static storage sized at start-up: the store must not
// fail for lack of memory while it holds a mount's life in its hands.
struct Store {
    Slot *slots = nullptr;
    int *tmp = nullptr; // scratch for spawn(), allocated up front
    unsigned cap = 0;
    unsigned used = 0;
    int sock = -1;
    char sock_name[108];
    pid_t child = 0;
    char **argv = nullptr;
    char exec_override[PATH_MAX] = "";
    char good_exec[PATH_MAX] = ""; // binary of the last daemon that served
    bool started_by_handover = false;
    bool handover = false;
    bool handover_done = false;
    bool inherited_closed = false;
    int sfd = -1;
    bool ready = false;
    bool ever_ready = false;
    bool stopping = false; // we were asked to stop: do not restart
    unsigned restarts = 0;
    unsigned restart_max = 20;
    unsigned window_s = 60;
    time_t window_start = 0;
    unsigned window_count = 0;
    long long crash_ns = 0;
    long long ready_ns = 0; // when the running daemon said READY
    char status[256] = "";
} S;

long long mono_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void logf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void logf(const char *fmt, ...)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "holdfast-fdstore[%d]: ", getpid());
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 2)
        n = sizeof(buf) - 2;
    buf[n++] = '\n';
    if (write(STDERR_FILENO, buf, n) < 0) {
    }
}

void store_fd(int fd, const char *name)
{
    if (S.used == S.cap) {
        logf("fd store full (%u fds): refusing '%s'", S.cap, name);
        close(fd);
        return;
    }
    for (unsigned i = 0; i < S.cap; i++) {
        if (S.slots[i].fd < 0) {
            S.slots[i].fd = fd;
            snprintf(S.slots[i].name, sizeof(S.slots[i].name), "%s", name);
            S.used++;
            return;
        }
    }
}

void remove_name(const char *name)
{
    for (unsigned i = 0; i < S.cap; i++) {
        if (S.slots[i].fd >= 0 && strcmp(S.slots[i].name, name) == 0) {
            close(S.slots[i].fd);
            S.slots[i].fd = -1;
            S.used--;
        }
    }
}

// Finds KEY= at a line start in msg; copies the value into out.
bool field(const char *msg, size_t len, const char *key, char *out, size_t outlen)
{
    size_t kl = strlen(key);
    const char *p = msg, *end = msg + len;
    while (p < end) {
        const char *nl = static_cast<const char *>(memchr(p, '\n', end - p));
        const char *le = nl ? nl : end;
        if (size_t(le - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t vl = le - p - kl - 1;
            if (vl >= outlen)
                vl = outlen - 1;
            memcpy(out, p + kl + 1, vl);
            out[vl] = 0;
            return true;
        }
        p = le + 1;
    }
    return false;
}

// A name must survive the LISTEN_FDNAMES round trip (':'-separated).
bool valid_name(const char *n)
{
    if (!*n)
        return false;
    for (; *n; n++)
        if (*n == ':' || (unsigned char)*n < 0x20 || (unsigned char)*n > 0x7e)
            return false;
    return true;
}

void handle_message()
{
    static char buf[4096];
    static char cbuf[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage) + CMSG_SPACE(sizeof(ucred))];
    iovec iov{buf, sizeof(buf) - 1};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof(cbuf);
    ssize_t n = recvmsg(S.sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0)
        return;
    buf[n] = 0;

    int fds[kMaxFdsPerMessage];
    int nfds = 0;
    ucred *cred = nullptr;
    for (cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET)
            continue;
        if (c->cmsg_type == SCM_RIGHTS) {
            int k = int((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < k && nfds < int(kMaxFdsPerMessage); i++)
                memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        } else if (c->cmsg_type == SCM_CREDENTIALS) {
            cred = reinterpret_cast<ucred *>(CMSG_DATA(c));
        }
    }
    // Only our daemon (same uid, or root) may store or drop fds.
    bool trusted = cred && (cred->uid == 0 || cred->uid == getuid()) && S.child &&
                   cred->pid == S.child;
    if (!trusted || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        logf("ignored a message from pid %d uid %d%s", cred ? cred->pid : -1,
             cred ? int(cred->uid) : -1,
             (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ? " (truncated)" : "");
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        return;
    }

    char val[PATH_MAX], name[kMaxNameLen + 1] = "stored";
    bool has_name = field(buf, n, "FDNAME", name, sizeof(name));
    if (field(buf, n, "FDSTORE", val, sizeof(val)) && strcmp(val, "1") == 0) {
        if (has_name && !valid_name(name)) {
            logf("refused fds with invalid FDNAME '%s'", name);
        } else {
            for (int i = 0; i < nfds; i++)
                store_fd(fds[i], name);
            nfds = 0;
        }
    }
    if (field(buf, n, "FDSTOREREMOVE", val, sizeof(val)) && strcmp(val, "1") == 0 && has_name)
        remove_name(name);
    if (field(buf, n, "READY", val, sizeof(val)) && strcmp(val, "1") == 0) {
        S.ready = S.ever_ready = true;
        S.ready_ns = mono_ns();
        snprintf(S.good_exec, sizeof(S.good_exec), "%s",
                 S.exec_override[0] ? S.exec_override : S.argv[0]);
    }
    if (field(buf, n, "STATUS", val, sizeof(val)))
        snprintf(S.status, sizeof(S.status), "%s", val);
    if (field(buf, n, "HOLDFAST_EXEC", val, sizeof(val)))
        snprintf(S.exec_override, sizeof(S.exec_override), "%s", val);
    if (field(buf, n, "HOLDFAST_RESTART", val, sizeof(val)) && strcmp(val, "1") == 0)
        S.handover = true;
    for (int i = 0; i < nfds; i++)
        close(fds[i]); // fds without FDSTORE=1 are not ours to keep
}

// Starts the daemon; on a restart it gets every stored fd from 3 on.
void spawn()
{
    // Build the environment additions before fork: the child must not allocate.
    // LISTEN_FDNAMES is one string of the environment: the kernel takes at
    // most 128 KiB (MAX_ARG_STRLEN) for it, with its "LISTEN_FDNAMES=".
    static char e_fds[32], e_names[128 * 1024 - 32], e_restarts[32], e_crash[48], e_notify[128],
        e_cap[32];
    unsigned n = 0, unnamed = 0;
    size_t off = 0;
    e_names[0] = 0;
    for (unsigned i = 0; i < S.cap; i++) {
        if (S.slots[i].fd < 0)
            continue;
        // Once a name does not fit, no later one may: the daemon matches
        // names to fds by position, and an fd without a name is dropped.
        int w = unnamed ? -1
                        : snprintf(e_names + off, sizeof(e_names) - off, "%s%s", n ? ":" : "",
                                   S.slots[i].name);
        if (w > 0 && size_t(w) < sizeof(e_names) - off) {
            off += w;
        } else {
            e_names[off] = 0;
            unnamed++;
        }
        n++;
    }
    if (unnamed)
        logf("%u fds do not fit in LISTEN_FDNAMES: the daemon gets them without a name", unnamed);
    snprintf(e_fds, sizeof(e_fds), "%u", n);
    // What systemd 254+ says in $FDSTORE: how many fds the store keeps.
    snprintf(e_cap, sizeof(e_cap), "FDSTORE=%u", S.cap);
    snprintf(e_restarts, sizeof(e_restarts), "HOLDFAST_RESTARTS=%u", S.restarts);
    snprintf(e_crash, sizeof(e_crash), "HOLDFAST_CRASH_NS=%lld", S.crash_ns);
    snprintf(e_notify, sizeof(e_notify), "NOTIFY_SOCKET=@%s", S.sock_name + 1);

    pid_t pid = fork();
    if (pid < 0) {
        logf("fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, nullptr);
        signal(SIGHUP, SIG_DFL);
        // Move the stored fds to 3.. in order: first out of the way, to
        // fds above the target range (F_DUPFD never clobbers a live fd),
        // then into place.
        int *tmp = S.tmp;
        unsigned k = 0;
        for (unsigned i = 0; i < S.cap; i++)
            if (S.slots[i].fd >= 0)
                tmp[k++] = fcntl(S.slots[i].fd, F_DUPFD, int(kListenFdsStart + S.used));
        for (unsigned i = 0; i < k; i++) {
            dup2(tmp[i], kListenFdsStart + int(i));
            close(tmp[i]);
        }
        const int base = 1 << 30;
        // The first daemon keeps what its starter gave it (a --ready-fd
        // pipe); a restarted one gets exactly the stored fds.
        if (S.restarts || S.handover_done)
            close_range(kListenFdsStart + k, base, 0);
        char e_pid[32];
        snprintf(e_pid, sizeof(e_pid), "%d", getpid());
        if (k) {
            setenv("LISTEN_FDS", e_fds, 1);
            setenv("LISTEN_PID", e_pid, 1);
            setenv("LISTEN_FDNAMES", e_names, 1);
        } else {
            unsetenv("LISTEN_FDS");
            unsetenv("LISTEN_PID");
            unsetenv("LISTEN_FDNAMES");
        }
        putenv(e_notify);
        putenv(e_cap);
        putenv(e_restarts);
        putenv(e_crash);
        const char *prog = S.exec_override[0] ? S.exec_override : S.argv[0];
        execvp(prog, S.argv);
        fprintf(stderr, "holdfast-fdstore: exec %s: %s\n", prog, strerror(errno));
        _exit(127);
    }
    S.child = pid;
    S.ready = false;
    S.started_by_handover = S.handover;
    if (S.handover)
        S.handover_done = true;
    S.handover = false;
    if (!S.inherited_closed) {
        // We hold nothing of our starter's: an fd it gave the daemon must
        // reach EOF when the daemon closes it.
        S.inherited_closed = true;
        for (int fd = kListenFdsStart; fd < 1024; fd++)
            if (fd != S.sock && fd != S.sfd)
                close(fd);
    }
}

void usage(FILE *f)
{
    fputs("Usage: holdfast-fdstore [--max-fds N] [--restart-max N] [--restart-window SECONDS]\n"
          "                        -- COMMAND [ARGS...]\n"
          "Runs COMMAND with $NOTIFY_SOCKET pointing at a store for its file descriptors\n"
          "(systemd's FDSTORE protocol) and restarts it with them when it dies.\n",
          f);
}

} // namespace

int main(int argc, char **argv)
{
    static const option opts[] = {{"max-fds", required_argument, nullptr, 'm'},
                                  {"restart-max", required_argument, nullptr, 'r'},
                                  {"restart-window", required_argument, nullptr, 'w'},
                                  {"help", no_argument, nullptr, 'h'},
                                  {nullptr, 0, nullptr, 0}};
    unsigned max_fds = 8192;
    int c;
    while ((c = getopt_long(argc, argv, "+h", opts, nullptr)) != -1) {
        char *end;
        unsigned long v;
        switch (c) {
        case 'm':
        case 'r':
        case 'w':
            v = strtoul(optarg, &end, 10);
            if (*end || !*optarg || v == 0 || v > 1000000) {
                fprintf(stderr, "holdfast-fdstore: --%s: '%s' is not a number in 1..1000000\n",
                        c == 'm' ? "max-fds" : c == 'r' ? "restart-max" : "restart-window",
                        optarg);
                return 2;
            }
            (c == 'm' ? max_fds : c == 'r' ? S.restart_max : S.window_s) = unsigned(v);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "holdfast-fdstore: no command given\n");
        usage(stderr);
        return 2;
    }
    S.argv = argv + optind;

    // Pre-allocate and pre-fault everything; raise the fd limit to hold it.
    S.cap = max_fds;
    S.slots = static_cast<Slot *>(calloc(S.cap, sizeof(Slot)));
    S.tmp = static_cast<int *>(calloc(S.cap, sizeof(int)));
    if (!S.slots || !S.tmp) {
        fprintf(stderr, "holdfast-fdstore: cannot allocate %u slots\n", S.cap);
        return 1;
    }
    for (unsigned i = 0; i < S.cap; i++)
        S.slots[i].fd = -1;
    rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rlim_t(S.cap) + 64) {
        rl.rlim_cur = rl.rlim_max < rlim_t(S.cap) + 64 ? rl.rlim_max : rlim_t(S.cap) + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        // Twice the slots: a restart briefly holds each fd twice.
        if (rlim_t(S.cap) * 2 + 64 > rl.rlim_cur) {
            S.cap = unsigned((rl.rlim_cur - 64) / 2);
            logf("fd limit %llu: keeping at most %u fds", (unsigned long long)rl.rlim_cur, S.cap);
        }
    }
    // Prefer the OOM killer take the server, not the keeper of its mount.
    int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (oom >= 0) {
        if (write(oom, "-900", 4) < 0) {
        }
        close(oom);
    }

    S.sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(S.sock, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
    int rcv = 1 << 20;
    setsockopt(S.sock, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    // Abstract namespace: nothing on disk to clean up or to be deleted.
    unsigned rnd = unsigned(mono_ns());
    int len = snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "holdfast-fdstore/%d/%08x",
                       getpid(), rnd);
    memcpy(S.sock_name, a.sun_path, sizeof(S.sock_name));
    if (bind(S.sock, reinterpret_cast<sockaddr *>(&a), socklen_t(offsetof(sockaddr_un, sun_path) + 1 + len)) < 0) {
        fprintf(stderr, "holdfast-fdstore: bind notify socket: %s\n", strerror(errno));
        return 1;
    }

    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1})
        sigaddset(&set, s);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    S.sfd = sfd;

    spawn();
    int exit_code = 0;
    for (;;) {
        pollfd p[2] = {{S.sock, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[0].revents & POLLIN)
            handle_message();
        if (!(p[1].revents & POLLIN))
            continue;
        signalfd_siginfo si;
        if (read(sfd, &si, sizeof(si)) != sizeof(si))
            continue;
        if (si.ssi_signo != SIGCHLD) {
            // Termination is for the daemon to carry out (it unmounts);
            // a hangup of our terminal must not take the mount with it.
            if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGQUIT)
                S.stopping = true;
            if (S.child && si.ssi_signo != SIGHUP)
                kill(S.child, si.ssi_signo == SIGQUIT ? SIGTERM : int(si.ssi_signo));
            if (!S.child && S.stopping) {
                logf("stopping with no daemon running; %u fds released", S.used);
                exit_code = 1;
                goto out;
            }
            continue;
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid != S.child)
                continue;
            // Collect what the daemon said just before it went.
            while (true) {
                pollfd q{S.sock, POLLIN, 0};
                if (poll(&q, 1, 0) <= 0)
                    break;
                handle_message();
            }
            S.child = 0;
            bool crashed = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status));
            if (WIFEXITED(status) && WEXITSTATUS(status) == kExitNoRestart) {
                logf("daemon exited with status %d: restarting cannot help; giving up",
                     kExitNoRestart);
                exit_code = kExitNoRestart;
                goto out;
            }
            if (crashed && !S.ready && S.started_by_handover && S.good_exec[0]) {
                // The binary we were asked to hand over to does not come up:
                // go back to the last one that served instead of looping on it.
                logf("%s died before serving; falling back to %s",
                     S.exec_override[0] ? S.exec_override : S.argv[0], S.good_exec);
                snprintf(S.exec_override, sizeof(S.exec_override), "%s", S.good_exec);
                S.started_by_handover = false;
                S.restarts++;
                spawn();
                continue;
            }
            if (!S.ever_ready) {
                // It never served: a bad option or a missing directory is not
                // something a restart fixes.  Pass its verdict on.
                exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                goto out;
            }
            if (!crashed && !S.handover) {
                logf("daemon exited cleanly; %u fds released", S.used);
                exit_code = 0;
                goto out;
            }
            if (crashed && S.stopping) {
                logf("daemon died while stopping (%s %d)",
                     WIFSIGNALED(status) ? "signal" : "status",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                exit_code = 1;
                goto out;
            }
            S.crash_ns = mono_ns();
            time_t now = time(nullptr);
            // A daemon that got as far as serving (READY=1) and was killed
            // from outside (SIGKILL) is not looping: only other deaths count
            // toward the crash loop.  One that dies by itself right after
            // READY, every time (a bug on its exit path), is looping all
            // the same.
            const bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
            const bool served =
                S.ready && (killed || S.crash_ns - S.ready_ns > 250000000LL);
            if (now - S.window_start >= time_t(S.window_s) || served) {
                S.window_start = now;
                S.window_count = 0;
            }
            if (crashed && ++S.window_count > S.restart_max) {
                logf("crash loop: %u restarts within %u s, giving up (last: %s %d)",
                     S.window_count - 1, S.window_s, WIFSIGNALED(status) ? "signal" : "status",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                exit_code = 1;
                goto out;
            }
            S.restarts++;
            if (crashed)
                logf("daemon pid %d died (%s %d); restarting with %u fds (restart %u)", pid,
                     WIFSIGNALED(status) ? "signal" : "exit status",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), S.used,
                     S.restarts);
            else
                logf("handover: starting %s with %u fds",
                     S.exec_override[0] ? S.exec_override : S.argv[0], S.used);
            // Back off only when the daemon keeps dying young.
            if (crashed && S.window_count > 3)
                usleep(useconds_t(100000) << (S.window_count > 8 ? 5 : S.window_count - 4));
            spawn();
        }
    }
out:
    for (unsigned i = 0; i < S.cap; i++)
        if (S.slots[i].fd >= 0)
            close(S.slots[i].fd);
    return exit_code;
}
