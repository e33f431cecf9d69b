// SPDX-License-Identifier: GPL-2.0
#include "transport/uring/entry.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

namespace holdfast::uring {

static_assert(sizeof(fuse::fuse_uring_req_header) <= Entry::kHeaderArea);
static_assert(sizeof(fuse_in_header) + fuse::kUringOpInOutSz <= Entry::kRebuildArea);

void Entry::FreeDeleter::operator()(void *p) const
{
    free(p);
}

size_t Entry::payload_size(uint32_t max_write, uint32_t max_pages, size_t reply_payload)
{
    // The kernel refuses a REGISTER whose payload buffer is smaller than
    // max(FUSE_MIN_READ_BUFFER, max_write, max_pages * PAGE_SIZE).
    size_t n = 8192;
    n = n > max_write ? n : max_write;
    n = n > size_t(max_pages) * 4096 ? n : size_t(max_pages) * 4096;
    n = n > reply_payload ? n : reply_payload;
    // Room to put an out struct in front of reply data (see put_reply()).
    n += fuse::Reply::kArgMax;
    return (n + 4095) & ~size_t(4095);
}

Entry::Entry(size_t payload_cap) : payload_cap_(payload_cap)
{
    void *p = nullptr;
    // Page-aligned payload: data the host fs reads or writes with O_DIRECT
    // needs no bounce buffer.
    if (posix_memalign(&p, 4096, kHeadroom + payload_cap) != 0)
        throw std::bad_alloc();
    block_.reset(static_cast<std::byte *>(p));
    base_ = block_.get();
    std::memset(p, 0, kHeadroom);
    init();
}

Entry::Entry(std::byte *block, size_t payload_cap) : base_(block), payload_cap_(payload_cap)
{
    // Not cleared: a successor reads what its predecessor and the kernel
    // left here (a fresh memfd is zero anyway).
    init();
}

void Entry::init()
{
    hdr_ = reinterpret_cast<fuse::fuse_uring_req_header *>(base_);
    payload_ = base_ + kHeadroom;
    iov_[0] = {hdr_, sizeof(*hdr_)};
    iov_[1] = {payload_, payload_cap_};
    reply_ = std::make_unique<fuse::Reply>(
        std::span<std::byte>(payload_, payload_cap_ - fuse::Reply::kArgMax));
}

uint64_t Entry::unique() const
{
    uint64_t u;
    std::memcpy(&u, hdr_->in_out + offsetof(fuse_in_header, unique), sizeof(u));
    return u;
}

std::span<const std::byte> Entry::request(const char **why)
{
    fuse_in_header ih;
    std::memcpy(&ih, hdr_->in_out, sizeof(ih));
    const size_t psz = hdr_->ring_ent_in_out.payload_sz;
    if (psz > payload_cap_) {
        *why = "payload_sz exceeds the payload buffer";
        return {};
    }
    if (ih.len < sizeof(ih) + psz) {
        *why = "header length shorter than header + payload";
        return {};
    }
    // Whatever the header's length does not put in the payload is op_in.
    const size_t op = ih.len - sizeof(ih) - psz;
    if (op > fuse::kUringOpInOutSz) {
        *why = "first argument larger than op_in";
        return {};
    }
    const size_t total = ih.len;
    std::byte *dst;
    large_ = total > kRebuildArea;
    if (!large_) {
        dst = base_ + kHeaderArea;
        std::memcpy(dst + sizeof(ih) + op, payload_, psz);
    } else {
        dst = payload_ - sizeof(ih) - op;
    }
    std::memcpy(dst, &ih, sizeof(ih));
    std::memcpy(dst + sizeof(ih), hdr_->op_in, op);
    return {dst, total};
}

void Entry::put_reply()
{
    const fuse::Reply &r = *reply_;
    auto arg = r.arg_bytes();
    auto data = r.payload(); // already at payload_[0]
    if (!arg.empty() && large_ && rec_) {
        // The request's data starts at payload_[0] and the out struct goes
        // there: keep the bytes it overwrites, so a successor that has to
        // serve the request again (we die before the reply is complete)
        // sees the data the kernel sent.  Only WRITE and SETXATTR have
        // large requests, and their replies are a few bytes.
        uint16_t n = arg.size() <= kSaveArea ? uint16_t(arg.size()) : UINT16_MAX;
        if (n != UINT16_MAX)
            std::memcpy(base_ + sizeof(fuse::fuse_uring_req_header), payload_, n);
        std::atomic_ref<uint16_t>(rec_->saved).store(n, std::memory_order_release);
    }
    if (!arg.empty()) {
        if (!data.empty())
            std::memmove(payload_ + arg.size(), payload_, data.size());
        std::memcpy(payload_, arg.data(), arg.size());
    }
    fuse_out_header oh = r.header();
    oh.unique &= ~fuse::kUniqueResend;
    std::memcpy(hdr_->in_out, &oh, sizeof(oh));
    hdr_->ring_ent_in_out.payload_sz = uint32_t(arg.size() + data.size());
}

void Entry::restore_saved(size_t n)
{
    if (n && n <= kSaveArea)
        std::memcpy(payload_, base_ + sizeof(fuse::fuse_uring_req_header), n);
}

void Entry::put_error(uint64_t unique, int negative_errno)
{
    fuse_out_header oh{sizeof(fuse_out_header), negative_errno, unique};
    std::memcpy(hdr_->in_out, &oh, sizeof(oh));
    hdr_->ring_ent_in_out.payload_sz = 0;
}

} // namespace holdfast::uring
