// SPDX-License-Identifier: GPL-2.0
#include "transport/devfuse/mount.h"

#include "fuse/abi.h"
#include "util/log.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <linux/capability.h>
#include <spawn.h>
#include <stdexcept>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

extern char **environ;

namespace holdfast::devfuse {

namespace {

std::runtime_error err(const std::string &what, int e = errno)
{
    return std::runtime_error(what + ": " + strerror(e));
}

// Runs fusermount3 and receives the /dev/fuse fd it opened, over the
// _FUSE_COMMFD socket (the protocol libfuse's fuse_mount_fusermount uses).
Fd fusermount(const MountOptions &o, const std::string &opts)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        throw err("socketpair");
    Fd ours(sv[0]), theirs(sv[1]);
    // The child must inherit its end: clear CLOEXEC on that one only.
    fcntl(theirs.get(), F_SETFD, 0);
    std::string env = "_FUSE_COMMFD=" + std::to_string(theirs.get());
    std::vector<std::string> envs;
    for (char **e = environ; *e; e++)
        envs.emplace_back(*e);
    envs.push_back(env);
    std::vector<char *> envp;
    for (auto &s : envs)
        envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string prog = "fusermount3", o_flag = "-o", dashdash = "--";
    std::string mp = o.mountpoint, optcopy = opts;
    char *argv[] = {prog.data(), o_flag.data(), optcopy.data(), dashdash.data(), mp.data(),
                    nullptr};
    pid_t pid;
    int r = posix_spawnp(&pid, "fusermount3", nullptr, nullptr, argv, envp.data());
    theirs.reset();
    if (r != 0)
        throw std::runtime_error(
            std::string("cannot run fusermount3 (install the Debian package fuse3): ") +
            strerror(r));

    char byte;
    iovec iov{&byte, 1};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof(cbuf);
    ssize_t n;
    while ((n = recvmsg(ours.get(), &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    int status = 0;
    waitpid(pid, &status, 0);
    cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : nullptr;
    if (!c || c->cmsg_type != SCM_RIGHTS)
        throw std::runtime_error("fusermount3 failed to mount " + o.mountpoint +
                                 " (exit status " + std::to_string(WEXITSTATUS(status)) + ")");
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(fd));
    return Fd(fd);
}

} // namespace

Mount Mount::create(const MountOptions &o)
{
    struct stat st;
    if (stat(o.mountpoint.c_str(), &st) < 0)
        throw err("mountpoint '" + o.mountpoint + "'");
    if (!S_ISDIR(st.st_mode))
        throw std::runtime_error("mountpoint '" + o.mountpoint + "' is not a directory");

    std::string common = "default_permissions";
    if (!o.default_permissions)
        common.clear();
    if (o.allow_other)
        common += std::string(common.empty() ? "" : ",") + "allow_other";

    Mount m;
    m.mountpoint_ = o.mountpoint;
    // Resolved now: once mounted, resolving the path would ask the new
    // mount, which answers nothing before INIT.
    char canon[PATH_MAX];
    if (realpath(o.mountpoint.c_str(), canon))
        m.canonical_ = canon;
    if (geteuid() == 0) {
        Fd fd(::open("/dev/fuse", O_RDWR | O_CLOEXEC));
        if (!fd)
            throw err("cannot open /dev/fuse (is the fuse module loaded?)");
        char opts[256];
        snprintf(opts, sizeof(opts), "fd=%d,rootmode=%o,user_id=%u,group_id=%u%s%s", fd.get(),
                 st.st_mode & S_IFMT, getuid(), getgid(), common.empty() ? "" : ",",
                 common.c_str());
        unsigned long flags = MS_NOSUID | MS_NODEV | (o.readonly ? MS_RDONLY : 0);
        if (mount(o.source.c_str(), o.mountpoint.c_str(), "fuse.holdfast", flags, opts) < 0)
            throw err("mount " + o.mountpoint);
        m.fd_ = std::move(fd);
    } else {
        std::string opts = "fsname=" + o.source + ",subtype=holdfast";
        if (!common.empty())
            opts += "," + common;
        if (o.readonly)
            opts += ",ro";
        m.fd_ = fusermount(o, opts);
        m.fusermount_ = true;
    }
    m.mounted_ = true;
    return m;
}

Mount Mount::adopt(Fd fd, const std::string &mountpoint)
{
    Mount m;
    m.fd_ = std::move(fd);
    m.mountpoint_ = mountpoint;
    m.fusermount_ = geteuid() != 0;
    m.mounted_ = true;
    return m;
}

namespace {
// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_octal(std::string_view s)
{
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        auto octal = [&](size_t k, char hi) { return s[k] >= '0' && s[k] <= hi; };
        if (s[i] == '\\' && i + 3 < s.size() && octal(i + 1, '3') && octal(i + 2, '7') &&
            octal(i + 3, '7')) {
            out += char((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}
} // namespace

std::optional<dev_t> mountinfo_dev(std::string_view mountinfo, std::string_view mountpoint,
                                   std::string_view fstype)
{
    // "36 35 0:40 / /mnt rw,nosuid - fuse.holdfast /src rw,..." : field 3 is
    // MAJ:MIN, field 5 the mount point; the type follows the " - ".
    std::optional<dev_t> found;
    std::istringstream in{std::string(mountinfo)};
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream f(line);
        std::string id, parent, majmin, root, mp;
        if (!(f >> id >> parent >> majmin >> root >> mp))
            continue;
        size_t sep = line.find(" - ");
        if (sep == std::string::npos)
            continue;
        std::istringstream t(line.substr(sep + 3));
        std::string type;
        if (!(t >> type) || type != fstype || unescape_octal(mp) != mountpoint)
            continue;
        unsigned maj, min;
        char colon, extra;
        std::istringstream d(majmin);
        if (!(d >> maj >> colon >> min) || colon != ':' || (d >> extra))
            continue;
        found = makedev(maj, min); // later lines are newer mounts on top
    }
    return found;
}

std::string Mount::set_readahead(unsigned kib) const
{
    if (canonical_.empty())
        return "the mountpoint's canonical path is unknown";
    std::ifstream mi("/proc/self/mountinfo");
    if (!mi)
        return std::string("/proc/self/mountinfo: ") + strerror(errno);
    std::stringstream text;
    text << mi.rdbuf();
    std::optional<dev_t> dev = mountinfo_dev(text.str(), canonical_, "fuse.holdfast");
    if (!dev)
        return "no fuse.holdfast mount at " + canonical_ + " in /proc/self/mountinfo";
    // Each FUSE superblock has its own bdi, named after its device.
    std::string path = "/sys/class/bdi/" + std::to_string(major(*dev)) + ":" +
                       std::to_string(minor(*dev)) + "/read_ahead_kb";
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd)
        return path + ": " + strerror(errno);
    std::string v = std::to_string(kib) + "\n";
    if (::write(fd.get(), v.data(), v.size()) != ssize_t(v.size()))
        return path + ": " + strerror(errno);
    return "";
}

void Mount::unmount()
{
    if (!mounted_)
        return;
    mounted_ = false;
    if (fusermount_) {
        std::string prog = "fusermount3", u = "-uqz", mp = mountpoint_;
        char *argv[] = {prog.data(), u.data(), mp.data(), nullptr};
        pid_t pid;
        if (posix_spawnp(&pid, "fusermount3", nullptr, nullptr, argv, environ) == 0) {
            int status;
            waitpid(pid, &status, 0);
        }
        return;
    }
    if (umount2(mountpoint_.c_str(), UMOUNT_NOFOLLOW) == 0)
        return;
    if (errno == EBUSY && umount2(mountpoint_.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) {
        LOG_INFO("%s was busy: detached lazily", mountpoint_.c_str());
        return;
    }
    if (errno != EINVAL && errno != ENOENT)
        LOG_WARN("umount %s: %s", mountpoint_.c_str(), strerror(errno));
}

namespace {
// The kernel writes to a backing file with the credentials of the thread
// that registered it.  We are root with CAP_FSETID, whose writes never clear
// set-user-ID; and with FUSE_HANDLE_KILLPRIV_V2 the kernel leaves that to the
// server's WRITE, which passthrough never sends.  Registering without
// CAP_FSETID makes every write through the mount clear the bits as a
// non-root writer's would (a root writer's too: the safe side).
class NoFsetid {
  public:
    NoFsetid()
    {
        if (syscall(SYS_capget, &hdr_, old_) < 0)
            return;
        __user_cap_data_struct want[2] = {old_[0], old_[1]};
        want[CAP_FSETID / 32].effective &= ~(1u << (CAP_FSETID % 32));
        dropped_ = syscall(SYS_capset, &hdr_, want) == 0;
    }
    ~NoFsetid()
    {
        if (dropped_)
            syscall(SYS_capset, &hdr_, old_);
    }
    NoFsetid(const NoFsetid &) = delete;
    NoFsetid &operator=(const NoFsetid &) = delete;

  private:
    __user_cap_header_struct hdr_{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct old_[2] = {};
    bool dropped_ = false;
};
} // namespace

int BackingDevice::open(int fd)
{
    fuse::fuse_backing_map map{};
    map.fd = fd;
    NoFsetid creds;
    int r = ioctl(fd_, HOLDFAST_FUSE_DEV_IOC_BACKING_OPEN, &map);
    return r < 0 ? -errno : r;
}

int BackingDevice::close(int32_t id)
{
    uint32_t u = uint32_t(id);
    return ioctl(fd_, HOLDFAST_FUSE_DEV_IOC_BACKING_CLOSE, &u) < 0 ? -errno : 0;
}

} // namespace holdfast::devfuse
