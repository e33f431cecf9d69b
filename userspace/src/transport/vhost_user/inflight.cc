// SPDX-License-Identifier: GPL-2.0
#include "transport/vhost_user/inflight.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace holdfast::vhost {

size_t inflight_queue_bytes(uint16_t queue_size)
{
    size_t n = sizeof(QueueRegionSplit) + size_t(queue_size) * sizeof(DescStateSplit);
    return (n + 63) & ~size_t(63);
}

InflightArea::InflightArea(InflightArea &&o) noexcept { *this = std::move(o); }

InflightArea &InflightArea::operator=(InflightArea &&o) noexcept
{
    if (this != &o) {
        if (base_ && owned_)
            munmap(base_, map_len_);
        fd_ = std::move(o.fd_);
        base_ = o.base_;
        map_len_ = o.map_len_;
        owned_ = o.owned_;
        size_ = o.size_;
        num_queues_ = o.num_queues_;
        queue_size_ = o.queue_size_;
        o.base_ = nullptr;
        o.owned_ = false;
    }
    return *this;
}

InflightArea::~InflightArea()
{
    if (base_ && owned_)
        munmap(base_, map_len_);
}

InflightArea InflightArea::create(uint16_t num_queues, uint16_t queue_size, std::string &err)
{
    InflightArea a;
    uint64_t size = uint64_t(num_queues) * inflight_queue_bytes(queue_size);
    Fd fd(memfd_create("holdfast-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd) {
        err = std::string("memfd_create: ") + strerror(errno);
        return a;
    }
    if (ftruncate(fd.get(), off_t(size)) < 0) {
        err = std::string("ftruncate inflight buffer: ") + strerror(errno);
        return a;
    }
    // The front-end must not shrink it under us (SIGBUS); growing is harmless.
    fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK);
    void *p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED) {
        err = std::string("mmap inflight buffer: ") + strerror(errno);
        return a;
    }
    a.fd_ = std::move(fd);
    a.base_ = static_cast<uint8_t *>(p);
    a.map_len_ = size;
    a.owned_ = true;
    a.size_ = size;
    a.num_queues_ = num_queues;
    a.queue_size_ = queue_size;
    return a;
}

InflightArea InflightArea::attach(int fd, uint64_t mmap_size, uint64_t offset,
                                  uint16_t num_queues, uint16_t queue_size, std::string &err)
{
    InflightArea a;
    uint64_t need = uint64_t(num_queues) * inflight_queue_bytes(queue_size);
    if (mmap_size < need || offset + mmap_size < offset || (offset & 4095)) {
        err = "inflight buffer too small or misaligned for its queues";
        return a;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        uint64_t(st.st_size) < offset + mmap_size) {
        err = "inflight fd is not a file of the announced size";
        return a;
    }
    void *p = mmap(nullptr, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(offset));
    if (p == MAP_FAILED) {
        err = std::string("mmap inflight buffer: ") + strerror(errno);
        return a;
    }
    a.fd_.reset(fcntl(fd, F_DUPFD_CLOEXEC, 3));
    a.base_ = static_cast<uint8_t *>(p);
    a.map_len_ = mmap_size;
    a.owned_ = true;
    a.size_ = mmap_size;
    a.num_queues_ = num_queues;
    a.queue_size_ = queue_size;
    return a;
}

InflightArea InflightArea::over(uint8_t *mem, size_t size, uint16_t num_queues,
                                uint16_t queue_size)
{
    InflightArea a;
    if (size < size_t(num_queues) * inflight_queue_bytes(queue_size))
        return a;
    a.base_ = mem;
    a.map_len_ = size;
    a.size_ = size;
    a.num_queues_ = num_queues;
    a.queue_size_ = queue_size;
    return a;
}

QueueRegionSplit *InflightArea::queue(uint16_t i) const
{
    if (!base_ || i >= num_queues_)
        return nullptr;
    return reinterpret_cast<QueueRegionSplit *>(base_ + size_t(i) * inflight_queue_bytes(queue_size_));
}

std::string InflightQueue::attach(QueueRegionSplit *r, uint16_t num, uint16_t ring_used_idx)
{
    r_ = nullptr;
    if (!r)
        return "no inflight region for this queue";
    if (r->version == 0) {
        std::memset(r->desc, 0, size_t(num) * sizeof(DescStateSplit));
        r->features = 0;
        r->desc_num = num;
        r->last_batch_head = 0;
        r->used_idx = ring_used_idx;
        std::atomic_thread_fence(std::memory_order_release);
        r->version = 1;
    } else if (r->version != 1) {
        return "inflight region has unknown version " + std::to_string(r->version);
    } else if (r->desc_num != num) {
        return "inflight region is for " + std::to_string(r->desc_num) +
               " descriptors, the ring has " + std::to_string(num);
    }
    r_ = r;
    num_ = num;
    uint64_t max = 0;
    for (uint16_t i = 0; i < num; i++)
        if (r->desc[i].inflight)
            max = std::max(max, r->desc[i].counter);
    counter_ = max + 1;
    return "";
}

void InflightQueue::popped(uint16_t head)
{
    if (!r_ || head >= num_)
        return;
    r_->desc[head].counter = counter_++;
    std::atomic_thread_fence(std::memory_order_release);
    r_->desc[head].inflight = 1;
}

void InflightQueue::pushing(uint16_t head)
{
    if (!r_ || head >= num_)
        return;
    r_->desc[head].next = r_->last_batch_head;
    r_->last_batch_head = head;
    std::atomic_thread_fence(std::memory_order_release);
}

void InflightQueue::pushed(uint16_t head, uint16_t new_used_idx)
{
    if (!r_ || head >= num_)
        return;
    std::atomic_thread_fence(std::memory_order_release);
    r_->desc[head].inflight = 0;
    std::atomic_thread_fence(std::memory_order_release);
    r_->used_idx = new_used_idx;
}

std::vector<uint16_t> InflightQueue::resubmit(uint16_t ring_used_idx)
{
    std::vector<uint16_t> out;
    if (!r_)
        return out;
    if (r_->used_idx != ring_used_idx) {
        // The predecessor moved used->idx but died before clearing the
        // batch's flags: those heads are done.  Walk at most the batch size
        // (and never more than the ring) along the list.
        uint16_t batch = uint16_t(ring_used_idx - r_->used_idx);
        uint16_t h = r_->last_batch_head;
        for (uint16_t i = 0; i < batch && i < num_ && h < num_; i++) {
            r_->desc[h].inflight = 0;
            h = r_->desc[h].next;
        }
        r_->used_idx = ring_used_idx;
    }
    std::vector<std::pair<uint64_t, uint16_t>> v;
    for (uint16_t i = 0; i < num_; i++)
        if (r_->desc[i].inflight == 1)
            v.push_back({r_->desc[i].counter, i});
    std::sort(v.begin(), v.end());
    for (auto &p : v)
        out.push_back(p.second);
    uint64_t max = v.empty() ? 0 : v.back().first;
    counter_ = max + 1;
    return out;
}

} // namespace holdfast::vhost
