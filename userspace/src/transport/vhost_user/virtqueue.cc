// SPDX-License-Identifier: GPL-2.0
#include "transport/vhost_user/virtqueue.h"

#include "util/log.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace holdfast::vhost {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "virtio 1.x rings are little-endian; big-endian hosts need byte swaps");

const char *chain_error_str(ChainError e)
{
    switch (e) {
    case ChainError::ok: return "ok";
    case ChainError::head_out_of_range: return "head index out of range";
    case ChainError::next_out_of_range: return "next index out of range";
    case ChainError::too_long: return "chain longer than its table (loop?)";
    case ChainError::out_of_table: return "buffer outside the memory table";
    case ChainError::too_many_segments: return "too many segments";
    case ChainError::too_large: return "total length too large";
    case ChainError::readable_after_writable: return "readable descriptor after a writable one";
    case ChainError::indirect_not_negotiated: return "indirect descriptor not negotiated";
    case ChainError::indirect_bad_size: return "indirect table of a bad size";
    case ChainError::indirect_nested: return "nested indirect table";
    case ChainError::indirect_with_next: return "indirect descriptor with NEXT set";
    }
    return "?";
}

ChainError walk_chain(const MemoryTable &mem, const uint8_t *table, uint16_t num, uint16_t head,
                      bool indirect_ok, const WalkLimits &lim, Chain &out)
{
    out.in.clear();
    out.out.clear();
    out.in_bytes = out.out_bytes = 0;
    out.head = head;
    if (head >= num)
        return ChainError::head_out_of_range;

    const uint8_t *t = table;
    uint32_t tnum = num;
    uint32_t idx = head;
    uint32_t count = 0;
    bool in_indirect = false;
    bool seen_write = false;
    for (;;) {
        if (++count > tnum)
            return ChainError::too_long;
        Desc d;
        // One copy: the guest may change the table while we look at it.
        std::memcpy(&d, t + size_t(idx) * sizeof(Desc), sizeof(Desc));
        if (d.flags & kDescIndirect) {
            if (!indirect_ok)
                return ChainError::indirect_not_negotiated;
            if (in_indirect)
                return ChainError::indirect_nested;
            if (d.flags & kDescNext)
                return ChainError::indirect_with_next;
            if (d.len == 0 || d.len % sizeof(Desc) || d.len / sizeof(Desc) > lim.max_indirect)
                return ChainError::indirect_bad_size;
            const uint8_t *it = mem.gpa_ptr(d.addr, d.len);
            if (!it)
                return ChainError::out_of_table;
            t = it;
            tnum = d.len / sizeof(Desc);
            idx = 0;
            count = 0;
            in_indirect = true;
            continue;
        }
        bool w = d.flags & kDescWrite;
        if (!w && seen_write)
            return ChainError::readable_after_writable;
        seen_write |= w;
        uint64_t &total = w ? out.out_bytes : out.in_bytes;
        if (d.len > lim.max_bytes - total)
            return ChainError::too_large;
        total += d.len;
        if (w)
            out.out_gpa.emplace_back(d.addr, d.len);
        std::vector<iovec> &v = w ? out.out : out.in;
        size_t other = w ? out.in.size() : out.out.size();
        if (other >= lim.max_iov)
            return ChainError::too_many_segments;
        if (!mem.gpa_to_iov(d.addr, d.len, v, lim.max_iov - other)) {
            // Tell "not mapped" from "too fragmented".
            std::vector<iovec> probe;
            return mem.gpa_to_iov(d.addr, d.len, probe, SIZE_MAX) ? ChainError::too_many_segments
                                                                  : ChainError::out_of_table;
        }
        if (!(d.flags & kDescNext))
            return ChainError::ok;
        idx = d.next;
        if (idx >= tnum)
            return ChainError::next_out_of_range;
    }
}

namespace {

inline uint16_t load16(const uint8_t *p)
{
    return __atomic_load_n(reinterpret_cast<const uint16_t *>(p), __ATOMIC_ACQUIRE);
}
inline void store16(uint8_t *p, uint16_t v)
{
    __atomic_store_n(reinterpret_cast<uint16_t *>(p), v, __ATOMIC_RELEASE);
}
inline void store32(uint8_t *p, uint32_t v)
{
    __atomic_store_n(reinterpret_cast<uint32_t *>(p), v, __ATOMIC_RELAXED);
}

} // namespace

Virtqueue::Virtqueue(unsigned index) : index_(index)
{
    wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

Virtqueue::~Virtqueue() { shutdown(); }

void Virtqueue::wake()
{
    uint64_t one = 1;
    if (wake_)
        (void)!::write(wake_.get(), &one, sizeof(one));
    cv_.notify_all();
}

void Virtqueue::set_features(uint64_t f)
{
    std::lock_guard g(mu_);
    features_ = f;
    event_idx_ = f & kFEventIdx;
    indirect_ = f & kFIndirectDesc;
    // Without protocol features a ring is enabled as soon as it starts.
    if (!(f & kFProtocolFeatures))
        enabled_ = true;
}

std::string Virtqueue::set_num(uint32_t num)
{
    std::lock_guard g(mu_);
    if (num == 0 || num > kMaxQueueSize || (num & (num - 1)))
        return "queue size " + std::to_string(num) + " is not a power of two up to 32768";
    if (started_)
        return "SET_VRING_NUM on a running ring";
    num_ = uint16_t(num == 32768 ? 32768 : num);
    return translate_locked();
}

std::string Virtqueue::set_addr(const VringAddr &a)
{
    std::lock_guard g(mu_);
    if (started_) {
        // Starting or ending a migration, QEMU re-sends the addresses of
        // running rings to switch used-ring logging (VHOST_VRING_F_LOG):
        // only the log fields may change under a running ring.
        if (a.desc_user_addr != addr_.desc_user_addr || a.used_user_addr != addr_.used_user_addr ||
            a.avail_user_addr != addr_.avail_user_addr || (a.flags & ~kVringFLog))
            return "SET_VRING_ADDR moves a running ring";
        addr_.flags = a.flags;
        addr_.log_guest_addr = a.log_guest_addr;
        return "";
    }
    // Ring alignment (virtio 1.x 2.7): descriptors 16, avail 2, used 4.
    if ((a.desc_user_addr & 15) || (a.avail_user_addr & 1) || (a.used_user_addr & 3))
        return "misaligned ring address";
    addr_ = a;
    addr_set_ = true;
    return translate_locked();
}

std::string Virtqueue::set_base(uint32_t base)
{
    std::lock_guard g(mu_);
    if (base > 0xffff)
        return "vring base out of range";
    if (started_)
        return "SET_VRING_BASE on a running ring";
    last_avail_ = uint16_t(base);
    broken_ = false;
    return "";
}

void Virtqueue::set_kick(Fd fd)
{
    std::lock_guard g(mu_);
    kick_ = fd ? std::make_shared<Fd>(std::move(fd)) : nullptr;
    kick_set_ = true;
    // The ring starts with its kick fd (the spec starts it on the first
    // kick; checking the avail ring right away is equivalent and covers a
    // kick that came before the fd).
    if (!started_) {
        started_ = true;
        if (!desc_ && addr_set_)
            mark_broken_locked("ring addresses are outside the memory table");
        signalled_valid_ = false;
        if (used_)
            used_idx_ = load16(used_ + 2);
        if (inflight_region_ && used_) {
            std::string e = num_ > inflight_capacity_
                                ? "the ring is larger than its inflight region"
                                : inflight_.attach(inflight_region_, num_, used_idx_);
            if (!e.empty())
                LOG_WARN("vq %u: inflight tracking off: %s", index_, e.c_str());
            else
                for (uint16_t h : inflight_.resubmit(used_idx_))
                    resubmit_.push_back(h);
            if (!resubmit_.empty())
                LOG_INFO("vq %u: resubmitting %zu requests left in flight", index_,
                         resubmit_.size());
        }
    }
    wake();
}

void Virtqueue::set_call(Fd fd)
{
    std::lock_guard g(mu_);
    call_ = std::move(fd);
}

void Virtqueue::set_err(Fd fd)
{
    std::lock_guard g(mu_);
    err_ = std::move(fd);
}

void Virtqueue::set_enabled(bool on)
{
    std::lock_guard g(mu_);
    enabled_ = on;
    wake();
}

std::string Virtqueue::set_memory(std::shared_ptr<const MemoryTable> mem)
{
    std::lock_guard g(mu_);
    mem_ = std::move(mem);
    std::string e = translate_locked();
    if (!e.empty() && started_)
        mark_broken_locked(e);
    return started_ ? "" : e;
}

void Virtqueue::set_log(std::shared_ptr<DirtyLog> log)
{
    std::lock_guard g(mu_);
    log_ = std::move(log);
}

std::string Virtqueue::set_inflight(QueueRegionSplit *r, uint16_t capacity)
{
    std::lock_guard g(mu_);
    inflight_region_ = r;
    inflight_capacity_ = capacity;
    // The region tracked so far may be unmapped once this returns.
    inflight_.detach();
    return "";
}

std::string Virtqueue::translate_locked()
{
    desc_ = avail_ = used_ = nullptr;
    if (!mem_ || !addr_set_ || !num_)
        return "";
    uint64_t n = num_;
    desc_ = mem_->uva_ptr(addr_.desc_user_addr, n * sizeof(Desc));
    avail_ = mem_->uva_ptr(addr_.avail_user_addr, 6 + 2 * n);
    used_ = mem_->uva_ptr(addr_.used_user_addr, 6 + 8 * n);
    if (!desc_ || !avail_ || !used_) {
        desc_ = avail_ = used_ = nullptr;
        return "vring " + std::to_string(index_) + " addresses are outside the memory table";
    }
    // Aligned front-end addresses can still land misaligned here when a
    // region's address and mmap offset disagree; the index and used-entry
    // atomics would then split across cache lines (SIGBUS with split lock
    // detection).
    if ((reinterpret_cast<uintptr_t>(avail_) & 1) || (reinterpret_cast<uintptr_t>(used_) & 3)) {
        desc_ = avail_ = used_ = nullptr;
        return "vring " + std::to_string(index_) + " is misaligned in the memory table";
    }
    return "";
}

bool Virtqueue::runnable_locked() const
{
    return started_ && enabled_ && !broken_ && desc_ && avail_ && used_;
}

bool Virtqueue::running() const
{
    std::lock_guard g(mu_);
    return runnable_locked();
}

bool Virtqueue::broken() const
{
    std::lock_guard g(mu_);
    return broken_;
}

void Virtqueue::mark_broken_locked(const std::string &why)
{
    if (!broken_)
        LOG_ERR("vq %u: %s; the ring is stopped until the driver resets it", index_, why.c_str());
    broken_ = true;
    if (err_) {
        uint64_t one = 1;
        (void)!::write(err_.get(), &one, sizeof(one));
    }
}

int Virtqueue::pop_locked(Chain &c)
{
    for (;;) {
        if (!runnable_locked())
            return broken_ ? -1 : 0;
        uint16_t head;
        bool resubmitted = false;
        if (!resubmit_.empty()) {
            head = resubmit_.front();
            resubmit_.pop_front();
            resubmitted = true;
        } else {
            uint16_t ai = load16(avail_ + 2);
            uint16_t pending = uint16_t(ai - last_avail_);
            if (pending == 0)
                return 0;
            if (pending > num_) {
                mark_broken_locked("available index moved by " + std::to_string(pending) +
                                   " on a ring of " + std::to_string(num_));
                return -1;
            }
            head = load16(avail_ + 4 + 2 * size_t(last_avail_ % num_));
            if (head >= num_) {
                mark_broken_locked("available ring names descriptor " + std::to_string(head));
                return -1;
            }
            last_avail_++;
            inflight_.popped(head);
        }
        ChainError e = walk_chain(*mem_, desc_, num_, head, indirect_, limits, c);
        if (e != ChainError::ok) {
            bad_chains_.fetch_add(1, std::memory_order_relaxed);
            LOG_WARN("vq %u: descriptor chain %u refused: %s", index_, head, chain_error_str(e));
            push_locked(head, 0);
            if (need_notify_locked())
                notify_locked();
            continue;
        }
        c.resubmitted = resubmitted;
        c.mem = mem_;
        c.gen = gen_;
        return 1;
    }
}

int Virtqueue::try_pop(Chain &c)
{
    std::lock_guard g(mu_);
    int r = pop_locked(c);
    if (r == 1)
        busy_++;
    return r;
}

// The used ring as the guest sees it (flags, idx, ring, avail_event), if
// the front-end asked for it to be logged (VHOST_VRING_F_LOG).
void Virtqueue::log_used_locked()
{
    if (log_ && (features_ & kFLogAll) && (addr_.flags & kVringFLog))
        log_->mark(addr_.log_guest_addr, 4 + 8 * uint64_t(num_) + 2);
}

void Virtqueue::push_locked(uint16_t head, uint32_t len)
{
    uint16_t idx = used_idx_;
    uint8_t *e = used_ + 4 + 8 * size_t(idx % num_);
    store32(e, head);
    store32(e + 4, len);
    inflight_.pushing(head);
    uint16_t next = uint16_t(idx + 1);
    store16(used_ + 2, next); // release: the entry is visible first
    inflight_.pushed(head, next);
    used_idx_ = next;
    completed_.fetch_add(1, std::memory_order_relaxed);
}

bool Virtqueue::need_notify_locked()
{
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (event_idx_) {
        uint16_t old = signalled_used_;
        uint16_t now = used_idx_;
        bool valid = signalled_valid_;
        signalled_used_ = now;
        signalled_valid_ = true;
        if (!valid)
            return true;
        uint16_t used_event = load16(avail_ + 4 + 2 * size_t(num_));
        return uint16_t(now - used_event - 1) < uint16_t(now - old);
    }
    return !(load16(avail_) & kAvailNoInterrupt);
}

void Virtqueue::notify_locked()
{
    if (!call_)
        return;
    uint64_t one = 1;
    if (::write(call_.get(), &one, sizeof(one)) == sizeof(one))
        notifies_.fetch_add(1, std::memory_order_relaxed);
}

bool Virtqueue::arm_notify_locked()
{
    if (!runnable_locked())
        return false;
    if (event_idx_) {
        // avail_event lives right after the used ring.
        store16(used_ + 4 + 8 * size_t(num_), last_avail_);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        log_used_locked();
    }
    return !resubmit_.empty() || load16(avail_ + 2) != last_avail_;
}

void Virtqueue::complete(const Chain &c, uint32_t len)
{
    std::lock_guard g(mu_);
    if (busy_)
        busy_--;
    if (c.gen == gen_ && started_ && used_ && !broken_) {
        if (len > c.out_bytes)
            len = uint32_t(c.out_bytes);
        if (log_ && (features_ & kFLogAll)) {
            // The reply is in guest memory already: its pages first.
            uint64_t left = len;
            for (auto [gpa, n] : c.out_gpa) {
                if (!left)
                    break;
                uint64_t k = std::min<uint64_t>(n, left);
                log_->mark(gpa, k);
                left -= k;
            }
        }
        push_locked(c.head, len);
        log_used_locked();
        if (need_notify_locked())
            notify_locked();
    }
    if (stopping_ && busy_ == 0)
        stop_cv_.notify_all();
}

bool Virtqueue::wait_pop(Chain &c)
{
    std::unique_lock lk(mu_);
    for (;;) {
        if (shutdown_)
            return false;
        if (!runnable_locked()) {
            cv_.wait(lk);
            continue;
        }
        int r = pop_locked(c);
        if (r == 1) {
            busy_++;
            // This worker is now busy (maybe for long: a lock wait); make
            // sure another one takes the next request or waits for the kick.
            if (!poller_)
                cv_.notify_one();
            return true;
        }
        if (r < 0)
            continue; // broken: waits above until reset
        if (arm_notify_locked())
            continue;
        if (poller_) {
            cv_.wait(lk);
            continue;
        }
        // This worker waits for the guest's kick; the others for it.
        poller_ = true;
        std::shared_ptr<Fd> kick = kick_;
        lk.unlock();
        pollfd p[2] = {{wake_.get(), POLLIN, 0}, {kick ? kick->get() : -1, POLLIN, 0}};
        int n = ::poll(p, kick ? 2 : 1, kick ? -1 : 10);
        uint64_t v;
        if (n > 0 && (p[0].revents & POLLIN))
            (void)!::read(wake_.get(), &v, sizeof(v));
        if (n > 0 && kick && (p[1].revents & POLLIN))
            (void)!::read(kick->get(), &v, sizeof(v));
        lk.lock();
        poller_ = false;
        // This worker goes on to serve what the kick announced; one other
        // takes over the waiting (waking them all would only thrash).
        cv_.notify_one();
    }
}

uint16_t Virtqueue::stop(int timeout_ms)
{
    std::unique_lock lk(mu_);
    started_ = false;
    gen_++;
    wake();
    stopping_ = true;
    stop_cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return busy_ == 0; });
    stopping_ = false;
    if (busy_)
        LOG_WARN("vq %u stopped with %u requests still being served; their replies are dropped",
                 index_, busy_);
    kick_.reset();
    kick_set_ = false;
    resubmit_.clear();
    inflight_.detach();
    return last_avail_;
}

void Virtqueue::reset()
{
    std::lock_guard g(mu_);
    started_ = false;
    gen_++;
    features_ = 0;
    event_idx_ = indirect_ = false;
    enabled_ = false;
    broken_ = false;
    num_ = 0;
    addr_set_ = false;
    desc_ = avail_ = used_ = nullptr;
    last_avail_ = used_idx_ = 0;
    signalled_valid_ = false;
    kick_.reset();
    kick_set_ = false;
    call_.reset();
    err_.reset();
    resubmit_.clear();
    inflight_.detach();
    inflight_region_ = nullptr;
    wake();
}

void Virtqueue::shutdown()
{
    std::lock_guard g(mu_);
    shutdown_ = true;
    wake();
}

} // namespace holdfast::vhost
