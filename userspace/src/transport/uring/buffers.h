// SPDX-License-Identifier: GPL-2.0
// The memory every ring entry's buffers live in: one memfd, mapped at the
// same address in every server process of a mount.
//
// Why a memfd at a fixed address: the kernel records the user addresses an
// entry was registered with (fuse_uring_create_ring_ent()), and when a reply
// is committed it copies from those addresses in the committing task's
// address space.  A request the kernel handed to a server that then died is
// held by that server's entry until someone commits it; a successor that
// maps the same memory at the same address can do so from its own ring
// (Documentation/io-uring.rst, "Adopting requests in flight").  The fd store
// keeps the memfd (name "uring") so the buffers outlive the process.
#pragma once

#include "util/fd.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace holdfast::uring {

class Buffers {
  public:
    // Where a new mount's buffers go, the first of these ranges that is
    // free: high enough to stay clear of the heap, low enough to stay clear
    // of the mmap area and the stacks (x86-64 and arm64 with 47/48-bit
    // user space).  A successor must find the same range free, so it must
    // be one nothing else in a fresh process takes; the second is for
    // AddressSanitizer builds, whose allocator sits at the first.
    static constexpr uint64_t kPreferredBases[] = {0x600000000000ULL, 0x500000000000ULL};

    Buffers() = default;
    // A new memfd of `size` bytes (a multiple of 4096), mapped at one of
    // kPreferredBases if one is free, else wherever the kernel puts it.
    // Throws std::runtime_error.
    static Buffers create(size_t size);
    // A predecessor's memfd, mapped at exactly `base` (never over anything
    // already mapped there).  Throws std::runtime_error saying why not.
    static Buffers adopt(Fd memfd, uint64_t base, size_t size);

    Buffers(Buffers &&o) noexcept;
    Buffers &operator=(Buffers &&o) noexcept;
    Buffers(const Buffers &) = delete;
    Buffers &operator=(const Buffers &) = delete;
    ~Buffers();

    explicit operator bool() const { return base_ != nullptr; }
    std::byte *base() const { return base_; }
    size_t size() const { return size_; }
    int fd() const { return fd_.get(); }

  private:
    Buffers(Fd fd, std::byte *base, size_t size) : fd_(std::move(fd)), base_(base), size_(size) {}
    Fd fd_;
    std::byte *base_ = nullptr;
    size_t size_ = 0;
};

} // namespace holdfast::uring
