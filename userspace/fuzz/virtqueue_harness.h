// SPDX-License-Identifier: GPL-2.0
// fuzz_virtqueue's harness: a hostile guest.  A synthetic memory table
// (regions at guest-physical and front-end addresses the input chooses,
// backed by memfds mapped through MemoryTable::map, or by exactly sized
// heap buffers so ASan sees one byte too far), a split ring laid out in it
// where the input says, and then the input writes descriptors (direct,
// indirect, nested, looping, out of the table, overflowing), offers heads,
// moves the avail index, sets used_event, and has the back-end pop and
// complete chains, stop and restart the ring, and walk chains directly
// with small limits.  An inflight buffer (heap, sized by the input, filled
// by it) can be attached, as one a previous back-end left behind.
//
// Checked: no crash, hang or access outside a region (ASan/UBSan,
// libFuzzer's timeout); every chain handed out lies inside the table, its
// byte counts add up and respect the limits; a completion puts exactly
// that head on the used ring with no more than the writable length.
//
// Input format:
//   byte 0   bit0 INDIRECT_DESC, bit1 EVENT_IDX, bit2 memfd-backed regions
//            (else heap), bit3 inflight buffer, bit4 no call fd, bits5-7:
//            segment limit (0: default, else 1 << k)
//   byte 1   ring size 1 << (b % 16)
//   byte 2   regions: 1 + b % 4; each u64 gpa, u32 size (1 + v % 256 KiB),
//            u64 uva
//   u64 desc, u64 avail, u64 used (front-end addresses), u16 base
//   if inflight: u8 queue size 1 << (b % 16), then 16 header bytes
//   ops, by byte % 12:
//     0 guest write: u64 gpa, u8 n, n bytes      1 descriptor: u16 i, 16 bytes
//     2 offer head: u16                          3 avail idx := u16
//     4 pop up to u8 & 15 chains, complete now with u32 len
//     5 pop one and hold it (up to 8)            6 complete the oldest held: u32
//     7 stop (GET_VRING_BASE), base := u16, restart (kick)
//     8 used_event := u16, avail flags := u16
//     9 walk_chain directly: u16 head, u8 max_iov, u16 max_indirect
//    10 inflight write: u16 offset, u8 n, n bytes
//    11 set the memory table again (a new SET_MEM_TABLE, same layout)
// Shared by the libFuzzer target, the seed generator and the GoogleTest
// regression test.
#pragma once

#include "input.h"
#include "vhost_check.h"

#include "transport/vhost_user/inflight.h"
#include "transport/vhost_user/memory.h"
#include "transport/vhost_user/protocol.h"
#include "transport/vhost_user/virtqueue.h"
#include "util/log.h"

#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

namespace holdfast::fuzz {

// Input writer (seed generator, tests).
struct VirtqueueSeed {
    std::vector<uint8_t> b;
    void raw(const void *p, size_t n)
    {
        auto *c = static_cast<const uint8_t *>(p);
        b.insert(b.end(), c, c + n);
    }
    template <class T> void put(T v) { raw(&v, sizeof(v)); }
    struct Region {
        uint64_t gpa;
        uint32_t size;
        uint64_t uva;
    };
    VirtqueueSeed(uint8_t flags, uint8_t log2num, std::vector<Region> regions, uint64_t desc,
                  uint64_t avail, uint64_t used, uint16_t base = 0)
    {
        put(flags);
        put(log2num);
        put<uint8_t>(uint8_t(regions.size() - 1));
        for (auto &r : regions) {
            put(r.gpa);
            put<uint32_t>(r.size - 1);
            put(r.uva);
        }
        put(desc);
        put(avail);
        put(used);
        put(base);
    }
    void inflight(uint8_t log2size, uint16_t version, uint16_t desc_num, uint16_t last_batch,
                  uint16_t used_idx)
    {
        put(log2size);
        put<uint64_t>(0);
        put(version);
        put(desc_num);
        put(last_batch);
        put(used_idx);
    }
    void write(uint64_t gpa, const void *p, uint8_t n)
    {
        put<uint8_t>(0);
        put(gpa);
        put(n);
        raw(p, n);
    }
    void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
    {
        put<uint8_t>(1);
        put(i);
        vhost::Desc d{addr, len, flags, next};
        raw(&d, sizeof(d));
    }
    void offer(uint16_t head) { put<uint8_t>(2), put(head); }
    void avail_idx(uint16_t v) { put<uint8_t>(3), put(v); }
    void pop(uint8_t k, uint32_t len) { put<uint8_t>(4), put(k), put(len); }
    void hold() { put<uint8_t>(5); }
    void complete_held(uint32_t len) { put<uint8_t>(6), put(len); }
    void restart(uint16_t base) { put<uint8_t>(7), put(base); }
    void event(uint16_t used_event, uint16_t avail_flags)
    {
        put<uint8_t>(8), put(used_event), put(avail_flags);
    }
    void walk(uint16_t head, uint8_t max_iov, uint16_t max_indirect)
    {
        put<uint8_t>(9), put(head), put(max_iov), put(max_indirect);
    }
    void inflight_write(uint16_t off, const void *p, uint8_t n)
    {
        put<uint8_t>(10), put(off), put(n);
        raw(p, n);
    }
    void remap() { put<uint8_t>(11); }
};

class VirtqueueHarness {
  public:
    static constexpr uint32_t kMaxRegion = 256 * 1024;

    VirtqueueHarness()
    {
        log::set_level(getenv("HOLDFAST_FUZZ_LOG") ? log::Level::debug
                                                   : static_cast<log::Level>(-1));
    }

    std::string run(const uint8_t *data, size_t size)
    {
        Session s(data, size);
        return s.run();
    }

  private:
    class Session {
      public:
        Session(const uint8_t *data, size_t size) : in_(data, size) {}

        std::string run()
        {
            uint8_t flags = in_.u8();
            features_ = vhost::kFVersion1 | vhost::kFProtocolFeatures;
            if (flags & 1)
                features_ |= vhost::kFIndirectDesc;
            if (flags & 2)
                features_ |= vhost::kFEventIdx;
            memfd_ = flags & 4;
            if (flags >> 5)
                vq_.limits.max_iov = size_t(1) << (flags >> 5);
            num_ = uint16_t(1u << (in_.u8() % 16));
            size_t nreg = 1 + in_.u8() % 4;
            for (size_t i = 0; i < nreg; i++) {
                vhost::MemRegionDesc d{};
                d.guest_phys_addr = in_.u64();
                d.memory_size = 1 + in_.u32() % kMaxRegion;
                d.userspace_addr = in_.u64();
                descs_.push_back(d);
            }
            addr_.index = 0;
            addr_.desc_user_addr = in_.u64();
            addr_.avail_user_addr = in_.u64();
            addr_.used_user_addr = in_.u64();
            uint16_t base = in_.u16();
            if (!make_table())
                return ""; // refused: nothing more to do with this input
            if (flags & 8)
                make_inflight();

            vq_.set_features(features_);
            std::string e = vq_.set_num(num_);
            if (e.empty())
                e = vq_.set_addr(addr_);
            vq_.set_memory(mem_);
            if (!e.empty())
                return "";
            vq_.set_base(base);
            if (!(flags & 16)) {
                Fd call(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
                call_ = call.get();
                vq_.set_call(std::move(call));
            }
            vq_.set_inflight(inflight_q_, inflight_.queue_size());
            vq_.set_kick(Fd());
            vq_.set_enabled(true);
            desc_ = mem_->uva_ptr(addr_.desc_user_addr, uint64_t(num_) * 16);
            avail_ = mem_->uva_ptr(addr_.avail_user_addr, 6 + 2 * uint64_t(num_));
            used_ = mem_->uva_ptr(addr_.used_user_addr, 6 + 8 * uint64_t(num_));
            // UBSan does not check the alignment of atomic builtins: a ring
            // the back-end runs must have its atomics aligned on the host.
            if (vq_.running() && ((reinterpret_cast<uintptr_t>(avail_) & 1) ||
                                  (reinterpret_cast<uintptr_t>(used_) & 3)))
                return "a ring misaligned in host memory is served";

            std::string err;
            while (!in_.empty() && err.empty())
                err = op(in_.u8() % 12);
            while (err.empty() && !held_.empty())
                err = complete_held(0);
            return err;
        }

      private:
        bool make_table()
        {
            std::string err;
            if (!memfd_) {
                std::vector<uint8_t *> hosts;
                for (auto &d : descs_) {
                    heap_.emplace_back(new uint8_t[d.memory_size]());
                    hosts.push_back(heap_.back().get());
                }
                mem_ = vhost::MemoryTable::over(descs_, hosts, err);
                return bool(mem_);
            }
            std::vector<Fd> fds;
            std::vector<int> raw;
            for (auto &d : descs_) {
                Fd fd(memfd_create("fuzz-vq", MFD_CLOEXEC));
                if (!fd || ftruncate(fd.get(), off_t(d.memory_size)) < 0)
                    return false;
                raw.push_back(fd.get());
                fds.push_back(std::move(fd));
            }
            mem_ = vhost::MemoryTable::map(descs_, raw, err);
            return bool(mem_);
        }

        void make_inflight()
        {
            uint16_t qs = uint16_t(1u << (in_.u8() % 16));
            inflight_len_ = vhost::inflight_queue_bytes(qs);
            inflight_mem_.reset(new uint8_t[inflight_len_]());
            const uint8_t *p;
            size_t n = in_.bytes(16, p);
            std::memcpy(inflight_mem_.get(), p, n);
            inflight_ = vhost::InflightArea::over(inflight_mem_.get(), inflight_len_, 1, qs);
            inflight_q_ = inflight_.queue(0);
        }

        std::string check_chain(const vhost::Chain &c, const vhost::WalkLimits &lim)
        {
            return fuzz::check_chain(c, *mem_, lim);
        }

        uint16_t used_idx() const
        {
            uint16_t v;
            std::memcpy(&v, used_ + 2, 2);
            return v;
        }

        std::string complete(const vhost::Chain &c, uint32_t len)
        {
            if (!used_) {
                vq_.complete(c, len);
                return "";
            }
            uint16_t before = used_idx();
            vq_.complete(c, len);
            uint16_t after = used_idx();
            if (after == before)
                return ""; // dropped: the ring was stopped since
            // used->idx is the back-end's: what the guest scribbled there
            // (op 0) is overwritten with its own count.
            uint16_t slot = uint16_t(after - 1) % num_;
            uint32_t id, l;
            std::memcpy(&id, used_ + 4 + 8 * size_t(slot), 4);
            std::memcpy(&l, used_ + 8 + 8 * size_t(slot), 4);
            if (id != c.head)
                return "used entry names another head";
            if (l > c.out_bytes || l > len)
                return "used length larger than the writable room or the reply";
            return "";
        }

        std::string complete_held(uint32_t len)
        {
            if (held_.empty())
                return "";
            vhost::Chain c = std::move(held_.front());
            held_.pop_front();
            if (std::string e = check_chain(c, vq_.limits); !e.empty())
                return e;
            return complete(c, len);
        }

        std::string op(unsigned o)
        {
            switch (o) {
            case 0: { // guest write
                uint64_t gpa = in_.u64();
                const uint8_t *p;
                size_t n = in_.bytes(in_.u8(), p);
                if (uint8_t *h = mem_->gpa_ptr(gpa, n))
                    std::memcpy(h, p, n);
                return "";
            }
            case 1: { // descriptor
                uint16_t i = in_.u16();
                vhost::Desc d = in_.get<vhost::Desc>();
                if (desc_)
                    std::memcpy(desc_ + 16 * size_t(i % num_), &d, sizeof(d));
                return "";
            }
            case 2: { // offer
                uint16_t head = in_.u16();
                if (avail_) {
                    uint16_t idx;
                    std::memcpy(&idx, avail_ + 2, 2);
                    std::memcpy(avail_ + 4 + 2 * size_t(idx % num_), &head, 2);
                    idx++;
                    std::memcpy(avail_ + 2, &idx, 2);
                }
                return "";
            }
            case 3: { // avail idx
                uint16_t idx = in_.u16();
                if (avail_)
                    std::memcpy(avail_ + 2, &idx, 2);
                return "";
            }
            case 4: { // pop and complete
                unsigned k = in_.u8() & 15;
                uint32_t len = in_.u32();
                for (unsigned i = 0; i < k; i++) {
                    vhost::Chain c;
                    if (vq_.try_pop(c) != 1)
                        break;
                    if (std::string e = check_chain(c, vq_.limits); !e.empty())
                        return e;
                    if (std::string e = complete(c, len); !e.empty())
                        return e;
                }
                return "";
            }
            case 5: { // pop and hold
                vhost::Chain c;
                if (held_.size() < 8 && vq_.try_pop(c) == 1) {
                    if (std::string e = check_chain(c, vq_.limits); !e.empty())
                        return e;
                    held_.push_back(std::move(c));
                }
                return "";
            }
            case 6:
                return complete_held(in_.u32());
            case 7: { // GET_VRING_BASE, SET_VRING_BASE, SET_VRING_KICK
                uint16_t base = in_.u16();
                vq_.stop(0);
                vq_.set_base(base);
                vq_.set_inflight(inflight_q_, inflight_.queue_size());
                vq_.set_kick(Fd());
                return "";
            }
            case 8: { // used_event, avail flags
                uint16_t ev = in_.u16(), fl = in_.u16();
                if (avail_) {
                    std::memcpy(avail_ + 4 + 2 * size_t(num_), &ev, 2);
                    std::memcpy(avail_, &fl, 2);
                }
                if (call_ >= 0) {
                    uint64_t v;
                    (void)!read(call_, &v, sizeof(v));
                }
                return "";
            }
            case 9: { // walk directly
                uint16_t head = in_.u16();
                vhost::WalkLimits lim;
                lim.max_iov = 1 + in_.u8();
                lim.max_indirect = in_.u16();
                vhost::Chain c;
                if (!desc_)
                    return "";
                vhost::ChainError e = vhost::walk_chain(*mem_, desc_, num_, head,
                                                        features_ & vhost::kFIndirectDesc, lim, c);
                if (e == vhost::ChainError::ok) {
                    c.mem = mem_;
                    return check_chain(c, lim);
                }
                return "";
            }
            case 10: { // inflight write
                uint16_t off = in_.u16();
                const uint8_t *p;
                size_t n = in_.bytes(in_.u8(), p);
                if (inflight_mem_ && off < inflight_len_)
                    std::memcpy(inflight_mem_.get() + off, p, std::min(n, inflight_len_ - off));
                return "";
            }
            case 11: // SET_MEM_TABLE with the same layout
                vq_.set_memory(mem_);
                return "";
            }
            return "";
        }

        Input in_;
        uint64_t features_ = 0;
        bool memfd_ = false;
        uint16_t num_ = 0;
        std::vector<vhost::MemRegionDesc> descs_;
        vhost::VringAddr addr_{};
        std::vector<std::unique_ptr<uint8_t[]>> heap_;
        std::shared_ptr<vhost::MemoryTable> mem_;
        std::unique_ptr<uint8_t[]> inflight_mem_;
        size_t inflight_len_ = 0;
        vhost::InflightArea inflight_;
        vhost::QueueRegionSplit *inflight_q_ = nullptr;
        uint8_t *desc_ = nullptr, *avail_ = nullptr, *used_ = nullptr;
        int call_ = -1;
        std::deque<vhost::Chain> held_;
        vhost::Virtqueue vq_{0}; // last: goes first, before the memory it points into
    };
};

} // namespace holdfast::fuzz
