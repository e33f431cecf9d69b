// SPDX-License-Identifier: GPL-2.0
// The migration dirty log (VHOST_USER_SET_LOG_BASE, PROTOCOL_F_LOG_SHMFD):
// one bit per 4 KiB page of guest physical memory, in memory shared with
// the front-end.  While VHOST_F_LOG_ALL is negotiated, every page the
// back-end writes (reply buffers, the used ring) is marked, and the
// front-end sends those pages again before the guest stops.  Without it
// QEMU refuses to migrate a vhost-user device at all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace holdfast::vhost {

constexpr uint64_t kLogPageSize = 4096;

class DirtyLog {
  public:
    // Maps `size` bytes at `offset` of `fd` (which stays the caller's).
    // Returns "" or what is wrong with them.
    static std::string map(int fd, uint64_t size, uint64_t offset, std::shared_ptr<DirtyLog> &out);
    ~DirtyLog();
    DirtyLog(const DirtyLog &) = delete;
    DirtyLog &operator=(const DirtyLog &) = delete;

    // Marks every page of [gpa, gpa + len).  Pages beyond the log (which
    // the front-end sizes to the guest's memory) are ignored.
    void mark(uint64_t gpa, uint64_t len);
    // Bit of one page, for tests.
    bool marked(uint64_t gpa) const;
    uint64_t size() const { return size_; }

  private:
    DirtyLog(void *map, size_t map_len, uint8_t *bits, uint64_t size)
        : map_(map), map_len_(map_len), bits_(bits), size_(size)
    {
    }
    void *map_;
    size_t map_len_;
    uint8_t *bits_;
    uint64_t size_;
};

} // namespace holdfast::vhost
