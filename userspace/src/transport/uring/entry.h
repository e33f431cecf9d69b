// SPDX-License-Identifier: GPL-2.0
// One FUSE-over-io_uring ring entry: the two buffers the kernel copies a
// request into (REGISTER's iovecs), and the reply written back in place.
//
// The kernel splits a request three ways: fuse_in_header into the header
// buffer's in_out, the first argument (the per-opcode struct, if it is not
// empty) into op_in, and every other argument back to back into the
// payload buffer (ring_ent_in_out.payload_sz bytes).  The engine wants one
// contiguous request, so the payload buffer has headroom in front of it:
//
//   block: [ header (512) | rebuild area (7680) | payload (payload_cap) ]
//                                       in_hdr|op_in^payload...
//
// A large request (WRITE data, big xattr values) is made contiguous by
// copying the header and op_in into the bytes right before the payload:
// the data is never copied.  A small one is copied whole into the rebuild
// area, so the payload buffer is free for the reply (GETXATTR reads its name
// from the request while it writes the value into the payload).
//
// A reply goes back the same way: fuse_out_header into in_out, the out
// arguments (struct, then data) into the payload, their total length into
// ring_ent_in_out.payload_sz.  The engine's Reply builds data directly in
// the payload buffer, so READ data is never copied either.
#pragma once

#include "fuse/abi.h"
#include "fuse/request.h"
#include "state/layout.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <sys/uio.h>

namespace holdfast::uring {

class Entry {
  public:
    static constexpr size_t kHeaderArea = 512;
    static constexpr size_t kHeadroom = 8192; // header area + rebuild area
    static constexpr size_t kRebuildArea = kHeadroom - kHeaderArea;

    // Bytes of the header area after the kernel's fuse_uring_req_header: where
    // put_reply() keeps the request bytes its reply overwrites (see below).
    static constexpr size_t kSaveArea = kHeaderArea - sizeof(fuse::fuse_uring_req_header);

    // `payload_cap`: bytes of payload buffer (at least the kernel's
    // max_payload_sz, see payload_size()).  Throws std::bad_alloc.
    explicit Entry(size_t payload_cap);
    // The same over memory someone else owns: `block` (page-aligned) holds
    // slot_size(payload_cap) bytes and outlives the entry.
    Entry(std::byte *block, size_t payload_cap);
    static size_t slot_size(size_t payload_cap) { return kHeadroom + payload_cap; }
    Entry(const Entry &) = delete;
    Entry &operator=(const Entry &) = delete;

    // The payload buffer an entry needs so the kernel accepts it and any
    // reply the engine builds fits (out struct + data).
    static size_t payload_size(uint32_t max_write, uint32_t max_pages, size_t reply_payload);

    fuse::fuse_uring_req_header *header() { return hdr_; }
    std::byte *payload() { return payload_; }
    size_t payload_cap() const { return payload_cap_; }
    // REGISTER's two iovecs; they stay valid for the entry's lifetime.
    const iovec *iov() const { return iov_; }

    // What the kernel wrote: the request's unique and the commit id.
    uint64_t unique() const;
    uint64_t commit_id() const { return hdr_->ring_ent_in_out.commit_id; }

    // Makes the request the kernel just wrote contiguous and returns it, or
    // an empty span with `why` set when the buffers do not describe a
    // well-formed request (then answer it with put_error()).
    std::span<const std::byte> request(const char **why);

    // The reply for the engine to fill; its data area is the payload buffer.
    fuse::Reply &reply() { return *reply_; }
    // Writes reply() where the kernel reads it on COMMIT_AND_FETCH.  The
    // reply's unique is the request's without FUSE_UNIQUE_RESEND (the kernel
    // compares it with the one it sent; see adopt in queue.cc).
    void put_reply();
    // Writes an error reply for `unique`.
    void put_error(uint64_t unique, int negative_errno);

    // Crash recovery: the entry's record in the state region, kept up to
    // date by put_reply() (which request bytes it overwrote), or nullptr.
    void set_record(state::UringEntryRecord *r) { rec_ = r; }
    std::byte *block() const { return base_; }
    // Puts back the `n` request bytes a predecessor's put_reply() saved
    // before overwriting them (record.saved).
    void restore_saved(size_t n);

  private:
    struct FreeDeleter {
        void operator()(void *p) const;
    };
    void init();

    std::unique_ptr<std::byte, FreeDeleter> block_; // when the entry owns its memory
    std::byte *base_;
    state::UringEntryRecord *rec_ = nullptr;
    bool large_ = false; // the last request stayed in the payload buffer
    fuse::fuse_uring_req_header *hdr_;
    std::byte *payload_;
    size_t payload_cap_;
    iovec iov_[2];
    std::unique_ptr<fuse::Reply> reply_;
};

} // namespace holdfast::uring
