// SPDX-License-Identifier: GPL-2.0
#include "util/control.h"

#include "util/log.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace holdfast::control {

namespace {
std::runtime_error err(const std::string &what)
{
    return std::runtime_error(what + ": " + strerror(errno));
}

uint64_t fnv1a(const std::string &s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : s)
        h = (h ^ c) * 0x100000001b3ULL;
    return h;
}

std::string run_dir()
{
    if (const char *d = getenv("HOLDFAST_RUN_DIR"))
        return d;
    if (geteuid() == 0)
        return "/run/holdfast";
    if (const char *x = getenv("XDG_RUNTIME_DIR"))
        return std::string(x) + "/holdfast";
    return "/tmp/holdfast-" + std::to_string(geteuid());
}

sockaddr_un make_addr(const std::string &path)
{
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof(a.sun_path))
        throw std::runtime_error("control socket path too long: " + path);
    memcpy(a.sun_path, path.c_str(), path.size() + 1);
    return a;
}
} // namespace

std::string socket_path(const std::string &mountpoint)
{
    char real[PATH_MAX];
    // realpath() of a live FUSE mountpoint would ask the server; resolve the
    // parent instead and append the last component.
    std::string mp = mountpoint;
    while (mp.size() > 1 && mp.back() == '/')
        mp.pop_back();
    auto slash = mp.rfind('/');
    std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : mp.substr(0, slash));
    std::string leaf = slash == std::string::npos ? mp : mp.substr(slash + 1);
    std::string canon = realpath(parent.c_str(), real) ? std::string(real) : parent;
    if (canon.back() != '/')
        canon += '/';
    canon += leaf;
    char name[64];
    snprintf(name, sizeof(name), "/ctl-%016llx.sock", (unsigned long long)fnv1a(canon));
    return run_dir() + name;
}

Server::Server(std::string path, Handler h) : path_(std::move(path)), handler_(std::move(h))
{
    std::string dir = path_.substr(0, path_.rfind('/'));
    mkdir(dir.c_str(), 0700);
    listen_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listen_)
        throw err("control socket");
    sockaddr_un a = make_addr(path_);
    unlink(path_.c_str());
    if (bind(listen_.get(), reinterpret_cast<sockaddr *>(&a), sizeof(a)) < 0)
        throw err("bind " + path_);
    chmod(path_.c_str(), 0600);
    if (listen(listen_.get(), 8) < 0)
        throw err("listen " + path_);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        throw err("pipe");
    wake_[0].reset(p[0]);
    wake_[1].reset(p[1]);
    thread_ = std::thread([this] { loop(); });
}

Server::~Server()
{
    if (write(wake_[1].get(), "x", 1) < 0) {
    }
    if (thread_.joinable())
        thread_.join();
    unlink(path_.c_str());
}

void Server::loop()
{
    for (;;) {
        pollfd p[2] = {{listen_.get(), POLLIN, 0}, {wake_[0].get(), POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (p[1].revents)
            return;
        Fd c(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c)
            continue;
        // Only root and the server's own user may talk to it.
        ucred cr;
        socklen_t len = sizeof(cr);
        if (getsockopt(c.get(), SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 ||
            (cr.uid != 0 && cr.uid != geteuid())) {
            LOG_WARN("control: refused peer uid %u", cr.uid);
            continue;
        }
        timeval tv{2, 0};
        setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[512];
        ssize_t n = recv(c.get(), buf, sizeof(buf) - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = 0;
        std::string cmd(buf);
        while (!cmd.empty() && (cmd.back() == '\n' || cmd.back() == '\r'))
            cmd.pop_back();
        std::string reply = handler_(cmd);
        send(c.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
    }
}

std::string request(const std::string &path, const std::string &command)
{
    Fd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s)
        throw err("socket");
    sockaddr_un a = make_addr(path);
    if (connect(s.get(), reinterpret_cast<sockaddr *>(&a), sizeof(a)) < 0)
        throw err("connect " + path);
    std::string line = command + "\n";
    if (send(s.get(), line.data(), line.size(), MSG_NOSIGNAL) < 0)
        throw err("send");
    shutdown(s.get(), SHUT_WR);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = recv(s.get(), buf, sizeof(buf), 0)) > 0)
        out.append(buf, size_t(n));
    return out;
}

std::string json_escape(const std::string &s)
{
    std::string o;
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            o += '\\';
            o += char(c);
        } else if (c < 0x20) {
            char b[8];
            snprintf(b, sizeof(b), "\\u%04x", c);
            o += b;
        } else {
            o += char(c);
        }
    }
    return o;
}

} // namespace holdfast::control
