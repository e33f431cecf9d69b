// SPDX-License-Identifier: GPL-2.0
// One io_uring with 128-byte SQEs, as FUSE-over-io_uring needs them, and
// the two FUSE commands prepared by hand (liburing 2.3, Debian bookworm's,
// predates io_uring_prep_cmd()).  Owned and used by a single thread.
#pragma once

#include "fuse/abi.h"
#include "fuse/backend_io.h"

#include <cstdint>
#include <liburing.h>
#include <string>

namespace holdfast::uring {

class Ring {
  public:
    Ring() = default;
    Ring(const Ring &) = delete;
    Ring &operator=(const Ring &) = delete;
    ~Ring();

    // Creates the ring with room for `sqes` submissions, on the calling
    // thread (with IORING_SETUP_SINGLE_ISSUER it is the only one allowed to
    // submit).  Optional setup flags the kernel refuses are dropped.  Then
    // registers `devfd` as fixed file 0 when the kernel lets us.  Returns 0
    // or -errno.
    int init(unsigned sqes, int devfd);
    // The setup flags in use, for the log ("SQE128|SINGLE_ISSUER|...").
    std::string flags_str() const;

    // FUSE_IO_URING_CMD_REGISTER of an entry's header and payload buffers.
    // `iov` must stay valid until the SQE is submitted.
    bool prep_register(uint16_t qid, const iovec *iov, uint64_t user_data);
    // FUSE_IO_URING_CMD_COMMIT_AND_FETCH: the reply is in the entry's buffers.
    bool prep_commit(uint16_t qid, uint64_t commit_id, uint64_t user_data);
    // The next part of a backing-file operation (fuse/backend_io.h).
    bool prep_io(const fuse::BackendIo &io, uint64_t user_data);
    // One-shot POLLIN on `fd`.
    bool prep_poll(int fd, uint64_t user_data);

    // Submits what was prepared.
    int submit() { return io_uring_submit(&ring_); }
    // Submits what was prepared and waits for at least `wait` completions.
    // Returns the io_uring_submit_and_wait() result (-EINTR is harmless).
    int submit_and_wait(unsigned wait);
    // Like submit_and_wait(1), giving up after `timeout_ms` (-ETIME).
    int submit_and_wait_ms(int timeout_ms);

    // Calls fn(user_data, res) for every completion, then consumes them.
    template <class F> unsigned drain(F &&fn)
    {
        unsigned head, n = 0;
        io_uring_cqe *cqe;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            fn(cqe->user_data, cqe->res);
            n++;
        }
        io_uring_cq_advance(&ring_, n);
        return n;
    }

  private:
    io_uring_sqe *prep_cmd(uint32_t cmd_op, const fuse::fuse_uring_cmd_req &req,
                           uint64_t user_data);

    io_uring ring_{};
    bool live_ = false;
    unsigned flags_ = 0;
    int devfd_ = -1;
    bool fixed_ = false;
};

} // namespace holdfast::uring
