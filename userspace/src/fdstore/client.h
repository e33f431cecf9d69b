// SPDX-License-Identifier: GPL-2.0
// The daemon's side of the fd store protocol (see protocol.h): works the
// same under holdfast-fdstore and under systemd (FileDescriptorStoreMax=).
#pragma once

#include "util/fd.h"

#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

namespace holdfast::fdstore {

struct NamedFd {
    std::string name;
    Fd fd;
};

// Takes the fds passed by LISTEN_FDS/LISTEN_FDNAMES (if meant for us),
// marks them close-on-exec and clears the variables.
std::vector<NamedFd> take_listen_fds();

class Notifier {
  public:
    // Connects to $NOTIFY_SOCKET if set.
    Notifier();
    bool available() const { return bool(sock_); }
    // How many fds the store keeps at most, from $FDSTORE (set by systemd
    // 254+ to FileDescriptorStoreMax=, and by holdfast-fdstore); 0 when it
    // does not say.
    size_t capacity() const { return capacity_; }

    // Keeps `fd` in the store under `name`.  Returns 0 or -errno.
    int store(const std::string &name, int fd);
    int store(const std::string &name, const std::vector<int> &fds);
    int remove(const std::string &name);
    int send(const std::string &text);

  private:
    int send_with_fds(const std::string &text, const int *fds, size_t n);
    Fd sock_;
    size_t capacity_ = 0;
    std::mutex mu_;
};

} // namespace holdfast::fdstore
