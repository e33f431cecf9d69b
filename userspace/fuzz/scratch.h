// SPDX-License-Identifier: GPL-2.0
// The scratch tree a fuzzed passthrough server exports, rebuilt before every
// input so each input starts from the same state (libFuzzer needs inputs to
// be reproducible), and the checks that nothing outside it changed.
//
//   jail/                     the shared directory
//     file, empty, big        regular files (file has a user.* xattr)
//     hard                    a second name of file
//     suid                    mode 04755, for the kill-suid paths
//     dir/nested, dir/sub/    a subtree
//     link_rel  -> file
//     link_up   -> ../outside/secret      (escapes if ever followed)
//     link_abs  -> <base>/outside         (escapes if ever followed)
//     link_dangling -> nowhere
//   outside/secret            a marker the server must never read or change
//
// No FIFO is created, and MKNOD requests for FIFOs are turned into regular
// files by the engine harness: opening a FIFO blocks until a peer appears,
// which would hang the single-threaded harness (see README.md).
#pragma once

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include <dirent.h>
#include <set>
#include <string>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <vector>

namespace holdfast::fuzz {

// Reading this from any reply means the server read outside its jail.
inline constexpr char kSecret[] = "HOLDFAST-FUZZ-SECRET-5f0c2a9e1d";

class Scratch {
  public:
    // `base` holds jail/ and outside/: "" inside the sandbox (sandbox.h).
    explicit Scratch(std::string base) : base_(std::move(base)) {}

    std::string jail() const { return path("/jail"); }

    // Creates the tree the first time, rebuilds jail/ every time.  Runs on
    // the sandbox thread.  Returns "" or what failed.
    std::string reset()
    {
        if (!made_) {
            std::string err = make_outside();
            if (!err.empty())
                return err;
            made_ = true;
        }
        int base = open(root_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (base < 0)
            return errmsg("open base");
        int j = openat(base, "jail", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (j < 0) {
            // Gone or replaced: both would be bugs the escape check reports;
            // rebuild so the next input starts clean.
            unlinkat(base, "jail", 0);
            if (mkdirat(base, "jail", 0755) < 0 && errno != EEXIST) {
                close(base);
                return errmsg("mkdir jail");
            }
            j = openat(base, "jail", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        close(base);
        if (j < 0)
            return errmsg("open jail");
        empty_dir(j);
        // The root itself: mode, owner, times and xattrs may have been changed.
        fchmod(j, 0755);
        fchown(j, 0, 0);
        clear_xattrs(j);
        std::string err = populate(j);
        close(j);
        if (!err.empty())
            return err;
        if (!snap_taken_) {
            snap_ = snapshot();
            snap_taken_ = true;
        }
        return "";
    }

    // "" if nothing outside jail/ changed since the first reset().
    std::string check_outside() const
    {
        Snap now = snapshot();
        if (now.entries != snap_.entries)
            return "jail escape: entries next to jail/ changed: " + join(now.entries) +
                   " (was " + join(snap_.entries) + ")";
        if (now.outside_entries != snap_.outside_entries)
            return "jail escape: outside/ now holds " + join(now.outside_entries);
        if (!same(now.base, snap_.base))
            return "jail escape: the directory holding jail/ was modified";
        if (!same(now.outside, snap_.outside))
            return "jail escape: outside/ was modified";
        if (!same(now.secret, snap_.secret))
            return "jail escape: outside/secret was modified (mode/owner/size/links/times)";
        if (now.secret_xattrs != 0)
            return "jail escape: outside/secret gained extended attributes";
        return "";
    }

    // The absolute path symlinks use to point outside.
    std::string outside_abs() const { return path("/outside"); }

  private:
    struct Snap {
        std::set<std::string> entries, outside_entries;
        struct stat base {}, outside{}, secret{};
        ssize_t secret_xattrs = 0;
    };

    std::string path(const char *rel) const { return base_ + rel; }
    std::string root_path() const { return base_.empty() ? "/" : base_; }

    static std::string errmsg(const char *what)
    {
        return std::string("scratch: ") + what + ": " + strerror(errno);
    }

    static std::string join(const std::set<std::string> &s)
    {
        std::string r;
        for (auto &e : s)
            r += (r.empty() ? "" : ",") + e;
        return "{" + r + "}";
    }

    static bool same(const struct stat &a, const struct stat &b)
    {
        return a.st_ino == b.st_ino && a.st_mode == b.st_mode && a.st_uid == b.st_uid &&
               a.st_gid == b.st_gid && a.st_size == b.st_size && a.st_nlink == b.st_nlink &&
               a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
               a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
    }

    static std::set<std::string> list(const std::string &dir)
    {
        std::set<std::string> out;
        DIR *d = opendir(dir.c_str());
        if (!d)
            return {"<unreadable: " + std::string(strerror(errno)) + ">"};
        while (dirent *e = readdir(d))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                out.insert(e->d_name);
        closedir(d);
        return out;
    }

    Snap snapshot() const
    {
        Snap s;
        s.entries = list(root_path());
        s.outside_entries = list(path("/outside"));
        lstat(root_path().c_str(), &s.base);
        lstat(path("/outside").c_str(), &s.outside);
        lstat(path("/outside/secret").c_str(), &s.secret);
        s.secret_xattrs = llistxattr(path("/outside/secret").c_str(), nullptr, 0);
        return s;
    }

    std::string make_outside()
    {
        if (mkdir(path("/outside").c_str(), 0700) < 0 && errno != EEXIST)
            return errmsg("mkdir outside");
        if (mkdir(jail().c_str(), 0755) < 0 && errno != EEXIST)
            return errmsg("mkdir jail");
        int fd = open(path("/outside/secret").c_str(),
                      O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            return errmsg("create outside/secret");
        bool ok = write(fd, kSecret, sizeof(kSecret) - 1) == ssize_t(sizeof(kSecret) - 1);
        close(fd);
        return ok ? "" : errmsg("write outside/secret");
    }

    static void clear_xattrs(int fd)
    {
        char names[4096];
        ssize_t n = flistxattr(fd, names, sizeof(names));
        for (ssize_t i = 0; i < n;) {
            fremovexattr(fd, names + i);
            i += ssize_t(strlen(names + i)) + 1;
        }
    }

    // Removes everything below the directory `dfd` (never follows links).
    static void empty_dir(int dfd)
    {
        int dup_fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dup_fd < 0)
            return;
        DIR *d = fdopendir(dup_fd);
        if (!d) {
            close(dup_fd);
            return;
        }
        std::vector<std::string> names;
        while (dirent *e = readdir(d))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                names.push_back(e->d_name);
        closedir(d);
        for (auto &n : names) {
            if (unlinkat(dfd, n.c_str(), 0) == 0)
                continue;
            int sub = openat(dfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                fchmod(sub, 0755); // a mode-000 directory is still ours to empty (root)
                empty_dir(sub);
                close(sub);
            }
            unlinkat(dfd, n.c_str(), AT_REMOVEDIR);
        }
    }

    static bool put(int dir, const char *name, const std::string &data, mode_t mode)
    {
        int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd < 0)
            return false;
        bool ok = data.empty() || write(fd, data.data(), data.size()) == ssize_t(data.size());
        fchmod(fd, mode); // past the umask
        close(fd);
        return ok;
    }

    std::string populate(int j)
    {
        std::string big(65536, '\0');
        for (size_t i = 0; i < big.size(); i++)
            big[i] = char('a' + i % 26);
        if (!put(j, "file", "hello holdfast\n", 0644) || !put(j, "empty", "", 0600) ||
            !put(j, "big", big, 0644) || !put(j, "suid", "#!/bin/sh\n", 04755))
            return errmsg("create files");
        fsetxattr_at(j, "file", "user.holdfast", "value");
        if (linkat(j, "file", j, "hard", 0) < 0)
            return errmsg("link");
        if (mkdirat(j, "dir", 0755) < 0)
            return errmsg("mkdir dir");
        int d = openat(j, "dir", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d < 0)
            return errmsg("open dir");
        bool ok = put(d, "nested", "nested\n", 0644) && mkdirat(d, "sub", 0755) == 0;
        close(d);
        if (!ok)
            return errmsg("populate dir");
        if (symlinkat("file", j, "link_rel") < 0 ||
            symlinkat("../outside/secret", j, "link_up") < 0 ||
            symlinkat(outside_abs().c_str(), j, "link_abs") < 0 ||
            symlinkat("nowhere", j, "link_dangling") < 0)
            return errmsg("symlink");
        return "";
    }

    static void fsetxattr_at(int dir, const char *name, const char *key, const char *value)
    {
        int fd = openat(dir, name, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            fsetxattr(fd, key, value, strlen(value), 0);
            close(fd);
        }
    }

    std::string base_;
    bool made_ = false;
    bool snap_taken_ = false;
    Snap snap_;
};

} // namespace holdfast::fuzz
