// SPDX-License-Identifier: GPL-2.0
#include "daemon/sandbox.h"

#include "util/log.h"

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstring>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace holdfast::daemon {

namespace {

std::string fail(const char *what)
{
    return std::string(what) + ": " + strerror(errno);
}

// A directory that exists in every sane root, to mount the new root on
// (only inside our private mount namespace).
const char *scratch_mountpoint()
{
    for (const char *d : {"/tmp", "/run", "/mnt", "/var/tmp"}) {
        struct stat st;
        if (stat(d, &st) == 0 && S_ISDIR(st.st_mode))
            return d;
    }
    return nullptr;
}

std::string enter_namespace()
{
    if (unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC) < 0)
        return fail("unshare(mount, net, ipc namespaces)");
    // Nothing we mount from here on propagates back to the host.
    if (mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) < 0)
        return fail("making / a slave mount");
    const char *base = scratch_mountpoint();
    if (!base)
        return "no directory to build the sandbox root on";
    if (mount("holdfast-root", base, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=16k,mode=0755") < 0)
        return fail("mounting the sandbox root (tmpfs)");
    std::string proc = std::string(base) + "/proc";
    if (mkdir(proc.c_str(), 0555) < 0)
        return fail("mkdir /proc in the sandbox root");
    // The passthrough reopens inodes through /proc/self/fd: a fresh procfs.
    if (mount("proc", proc.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0)
        return fail("mounting /proc in the sandbox root");
    if (chdir(base) < 0)
        return fail("chdir to the sandbox root");
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return fail("pivot_root");
    // The old root is now stacked on top of the new one: detach it.
    if (umount2(".", MNT_DETACH) < 0)
        return fail("detaching the old root");
    if (chdir("/") < 0)
        return fail("chdir /");
    if (mount(nullptr, "/", nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              nullptr) < 0)
        return fail("remounting the sandbox root read-only");
    return "";
}

std::string enter_chroot(const std::string &shared_dir)
{
    if (chdir(shared_dir.c_str()) < 0)
        return fail("chdir to the shared directory");
    if (chroot(".") < 0)
        return fail("chroot to the shared directory");
    if (chdir("/") < 0)
        return fail("chdir /");
    return "";
}

} // namespace

std::string drop_capabilities()
{
    const unsigned keep[] = {CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
                             CAP_FOWNER, CAP_FSETID,       CAP_SETGID,
                             CAP_SETUID, CAP_MKNOD,        CAP_SETFCAP};
    auto kept = [&](unsigned c) {
        for (unsigned k : keep)
            if (k == c)
                return true;
        return false;
    };
    // Bounding set first: dropping from it needs CAP_SETPCAP, which goes next.
    for (unsigned c = 0; c <= 63; c++) {
        if (kept(c))
            continue;
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
            return fail("PR_CAPBSET_DROP");
    }
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (syscall(SYS_capget, &hdr, data) < 0)
        return fail("capget");
    __user_cap_data_struct want[2] = {};
    for (unsigned k : keep) {
        uint32_t bit = 1u << (k % 32);
        if (data[k / 32].permitted & bit) {
            want[k / 32].permitted |= bit;
            want[k / 32].effective |= bit;
        }
    }
    if (syscall(SYS_capset, &hdr, want) < 0)
        return fail("capset");
    return "";
}

namespace {

// Every system call the server makes once serving (glibc, libstdc++ and
// our code), on x86_64.  Anything else is the default action.
const int kAllowed[] = {
    SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_pread64, SYS_pwrite64, SYS_preadv,
    SYS_pwritev, SYS_preadv2, SYS_pwritev2, SYS_close, SYS_open, SYS_openat, SYS_creat,
    SYS_open_by_handle_at, SYS_name_to_handle_at, SYS_stat, SYS_fstat, SYS_lstat,
    SYS_newfstatat, SYS_statx, SYS_lseek, SYS_mmap, SYS_munmap, SYS_mprotect, SYS_madvise,
    SYS_mremap, SYS_brk, SYS_futex, SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn,
    SYS_rt_sigtimedwait, SYS_sigaltstack, SYS_exit, SYS_exit_group, SYS_getdents64,
    SYS_mkdir, SYS_mkdirat, SYS_mknod, SYS_mknodat, SYS_symlink, SYS_symlinkat, SYS_link,
    SYS_linkat, SYS_unlink, SYS_unlinkat, SYS_rmdir, SYS_rename, SYS_renameat, SYS_renameat2,
    SYS_readlink, SYS_readlinkat, SYS_chmod, SYS_fchmod, SYS_fchmodat, SYS_chown, SYS_fchown,
    SYS_lchown, SYS_fchownat, SYS_utimensat, SYS_utimes, SYS_futimesat, SYS_truncate,
    SYS_ftruncate, SYS_fallocate, SYS_fsync, SYS_fdatasync, SYS_syncfs, SYS_sync_file_range,
    SYS_fadvise64, SYS_statfs, SYS_fstatfs, SYS_getxattr, SYS_lgetxattr, SYS_fgetxattr,
    SYS_setxattr, SYS_lsetxattr, SYS_fsetxattr, SYS_listxattr, SYS_llistxattr,
    SYS_flistxattr, SYS_removexattr, SYS_lremovexattr, SYS_fremovexattr, SYS_fcntl, SYS_flock,
    SYS_copy_file_range, SYS_dup, SYS_dup2, SYS_dup3, SYS_eventfd2, SYS_poll, SYS_ppoll,
    SYS_epoll_create1, SYS_epoll_ctl, SYS_epoll_wait, SYS_epoll_pwait, SYS_recvmsg,
    SYS_sendmsg, SYS_recvfrom, SYS_sendto, SYS_accept, SYS_accept4, SYS_shutdown, SYS_clone,
    SYS_clone3, SYS_set_robust_list, SYS_rseq, SYS_set_tid_address, SYS_gettid, SYS_getpid,
    SYS_getppid, SYS_tgkill, SYS_tkill, SYS_nanosleep, SYS_clock_nanosleep, SYS_clock_gettime,
    SYS_gettimeofday, SYS_getrandom, SYS_setresuid, SYS_setresgid, SYS_setgroups,
    SYS_getresuid, SYS_getresgid, SYS_getuid, SYS_geteuid, SYS_getgid, SYS_getegid,
    SYS_getgroups, SYS_capget, SYS_prctl, SYS_umask, SYS_fchdir, SYS_chdir, SYS_getcwd,
    SYS_sched_yield, SYS_sched_getaffinity, SYS_membarrier, SYS_restart_syscall,
    SYS_access, SYS_faccessat, SYS_faccessat2, SYS_signalfd4, SYS_madvise, SYS_uname,
    SYS_sysinfo, SYS_getrusage, SYS_getrlimit, SYS_prlimit64, SYS_ioctl, SYS_mincore,
    // Migration: taking the fds a source lent (daemon/state_mover.cc), and
    // finding its files by path, never out of the shared directory.
    SYS_pidfd_open, SYS_pidfd_getfd, SYS_openat2,
};

void on_sigsys(int, siginfo_t *si, void *)
{
    char msg[96];
    int n = snprintf(msg, sizeof(msg), "holdfastd: seccomp: system call %d not allowed\n",
                     si->si_syscall);
    (void)!write(2, msg, size_t(n));
    _exit(159);
}

} // namespace

std::string install_seccomp(const std::string &action)
{
    if (action == "none")
        return "";
    uint32_t dflt = SECCOMP_RET_KILL_PROCESS;
    if (action == "log")
        dflt = SECCOMP_RET_LOG;
    else if (action == "trap") {
        dflt = SECCOMP_RET_TRAP;
        struct sigaction sa {};
        sa.sa_sigaction = on_sigsys;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSYS, &sa, nullptr);
    }
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    // Sanitizer runtimes make system calls of their own (LeakSanitizer
    // stops the world with clone and ptrace at exit): in those test builds
    // anything outside the list is logged, not fatal.
    if (action == "kill" || action == "trap")
        dflt = SECCOMP_RET_LOG;
#endif
    std::vector<sock_filter> f;
    f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
    // x32 system calls (bit 30) are a second ABI on the same arch: refuse.
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    for (int nr : kAllowed) {
        f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(nr), 0, 1));
        f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    }
    // unshare(CLONE_FS) and nothing else: a thread's own cwd for xattr ops
    // under --sandbox chroot (fs/xattr.cc).  Last, as it overwrites A.
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_unshare, 0, 3));
    f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])));
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, CLONE_FS, 0, 1));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, dflt));
    sock_fprog prog{uint16_t(f.size()), f.data()};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return fail("PR_SET_NO_NEW_PRIVS");
    // TSYNC: every thread, should there already be any.
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
        return fail("seccomp");
    return "";
}

std::string enter_sandbox(const std::string &mode, const std::string &shared_dir)
{
    if (mode == "none")
        return "";
    std::string e = mode == "chroot" ? enter_chroot(shared_dir) : enter_namespace();
    if (!e.empty())
        return e;
    return drop_capabilities();
}

} // namespace holdfast::daemon
