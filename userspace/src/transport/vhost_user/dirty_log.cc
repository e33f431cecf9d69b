// SPDX-License-Identifier: GPL-2.0
#include "transport/vhost_user/dirty_log.h"

#include <cerrno>
#include <cstring>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace holdfast::vhost {

namespace {
// 1 TiB of guest memory is 32 MiB of log: anything larger is not a log.
constexpr uint64_t kMaxLogSize = uint64_t(1) << 25;
} // namespace

std::string DirtyLog::map(int fd, uint64_t size, uint64_t offset, std::shared_ptr<DirtyLog> &out)
{
    if (fd < 0)
        return "SET_LOG_BASE without an fd";
    if (size == 0 || size > kMaxLogSize)
        return "dirty log of " + std::to_string(size) + " bytes";
    if (offset > kMaxLogSize)
        return "dirty log offset " + std::to_string(offset) + " is out of range";
    struct stat st;
    if (fstat(fd, &st) < 0)
        return std::string("dirty log fd: ") + strerror(errno);
    if (uint64_t(st.st_size) < offset + size)
        return "dirty log fd is smaller than the log it should hold";
    const uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
    const uint64_t skew = offset % page;
    const size_t len = size_t(size + skew);
    void *m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(offset - skew));
    if (m == MAP_FAILED)
        return std::string("mapping the dirty log: ") + strerror(errno);
    out.reset(new DirtyLog(m, len, static_cast<uint8_t *>(m) + skew, size));
    return "";
}

DirtyLog::~DirtyLog()
{
    munmap(map_, map_len_);
}

void DirtyLog::mark(uint64_t gpa, uint64_t len)
{
    if (len == 0)
        return;
    uint64_t last = gpa + len - 1;
    if (last < gpa)
        last = UINT64_MAX;
    for (uint64_t p = gpa / kLogPageSize; p <= last / kLogPageSize; p++) {
        uint64_t byte = p / 8;
        if (byte >= size_)
            return;
        __atomic_fetch_or(&bits_[byte], uint8_t(1u << (p % 8)), __ATOMIC_RELAXED);
    }
}

bool DirtyLog::marked(uint64_t gpa) const
{
    uint64_t p = gpa / kLogPageSize;
    if (p / 8 >= size_)
        return false;
    return __atomic_load_n(&bits_[p / 8], __ATOMIC_RELAXED) & (1u << (p % 8));
}

} // namespace holdfast::vhost
