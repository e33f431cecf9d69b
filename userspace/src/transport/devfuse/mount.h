// SPDX-License-Identifier: GPL-2.0
// Mounting a FUSE filesystem: directly with mount(2) as root, or through
// the setuid fusermount3 helper (from the fuse3 package) as a normal user.
#pragma once

#include "fuse/backing.h"
#include "util/fd.h"

#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <utility>

namespace holdfast::devfuse {

struct MountOptions {
    std::string mountpoint;
    std::string source; // shown as the mount's source (the shared dir)
    bool allow_other = false;
    bool default_permissions = false;
    bool readonly = false;
};

class Mount {
  public:
    // Mounts and returns the /dev/fuse fd; throws std::runtime_error.
    static Mount create(const MountOptions &o);

    Mount(Mount &&o) noexcept
        : fd_(std::move(o.fd_)), mountpoint_(std::move(o.mountpoint_)),
          canonical_(std::move(o.canonical_)), fusermount_(o.fusermount_), mounted_(std::exchange(o.mounted_, false))
    {
    }
    Mount &operator=(Mount &&) = delete;
    ~Mount() { unmount(); }

    // A mount made by a previous server (its fd came from the fd store).
    static Mount adopt(Fd fd, const std::string &mountpoint);

    int fd() const { return fd_.get(); }
    // Forget the mount without unmounting (a handover keeps it alive).
    void release() { mounted_ = false; }
    bool via_fusermount() const { return fusermount_; }
    // Idempotent.  Lazily detaches if the mount is busy, so shutdown never
    // blocks on a process sitting in the mount.
    void unmount();

    // Sets the readahead of a mount create() made (its bdi's read_ahead_kb).
    // Must run before INIT is answered: it touches no file on the mount,
    // which would wait for INIT, and the kernel applies the smaller of this
    // and INIT's max_readahead when the answer comes.  Returns what went
    // wrong, or "".
    std::string set_readahead(unsigned kib) const;

  private:
    Mount() = default;
    Fd fd_;
    std::string mountpoint_;
    std::string canonical_; // mountpoint_ as /proc/self/mountinfo shows it
    bool fusermount_ = false;
    bool mounted_ = false;
};

// The device (st_dev) of the newest mount of type `fstype` at `mountpoint`
// (a canonical path) in a /proc/PID/mountinfo text.
std::optional<dev_t> mountinfo_dev(std::string_view mountinfo, std::string_view mountpoint,
                                   std::string_view fstype);

// Kernel passthrough backing files, registered through a /dev/fuse fd of
// the connection (the fd store keeps that fd, so ids outlive a server).
class BackingDevice final : public fuse::BackingFiles {
  public:
    explicit BackingDevice(int devfd) : fd_(devfd) {}
    int open(int fd) override;
    int close(int32_t id) override;

  private:
    int fd_; // not owned: the Mount's
};

} // namespace holdfast::devfuse
