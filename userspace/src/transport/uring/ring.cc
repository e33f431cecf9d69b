// SPDX-License-Identifier: GPL-2.0
#include "transport/uring/ring.h"

#include <cerrno>
#include <cstring>
#include <poll.h>

namespace holdfast::uring {

static_assert(sizeof(fuse::fuse_uring_cmd_req) <= 80, "the SQE128 command area is 80 bytes");

Ring::~Ring()
{
    if (live_)
        io_uring_queue_exit(&ring_);
}

int Ring::init(unsigned sqes, int devfd)
{
    // SQE128 is required (the FUSE command lives in the big SQE's tail).
    // SINGLE_ISSUER and COOP_TASKRUN only save work: the kernel delivers a
    // request to an entry as task work on the thread that owns the ring, and
    // that thread is exactly the one waiting in io_uring_enter().
    const unsigned tries[] = {
        IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_SQE128 | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_SQE128,
    };
    int r = -EINVAL;
    for (unsigned f : tries) {
        io_uring_params p{};
        p.flags = f;
        r = io_uring_queue_init_params(sqes, &ring_, &p);
        if (r == 0) {
            flags_ = f;
            break;
        }
        if (r != -EINVAL)
            return r;
    }
    if (r)
        return r;
    live_ = true;
    devfd_ = devfd;
    // A fixed file spares an fdget per command; a registered ring fd spares
    // one per io_uring_enter().  Both are optional.
    fixed_ = io_uring_register_files(&ring_, &devfd, 1) == 0;
    io_uring_register_ring_fd(&ring_);
    return 0;
}

std::string Ring::flags_str() const
{
    std::string s = "SQE128";
    if (flags_ & IORING_SETUP_SINGLE_ISSUER)
        s += "|SINGLE_ISSUER";
    if (flags_ & IORING_SETUP_COOP_TASKRUN)
        s += "|COOP_TASKRUN";
    if (fixed_)
        s += ", fixed file";
    return s;
}

io_uring_sqe *Ring::prep_cmd(uint32_t cmd_op, const fuse::fuse_uring_cmd_req &req,
                             uint64_t user_data)
{
    io_uring_sqe *sqe = io_uring_get_sqe(&ring_);
    if (!sqe)
        return nullptr;
    // The whole 128 bytes: the kernel rejects stray bits in reserved fields,
    // and the command area is the SQE's second half.
    std::memset(sqe, 0, 2 * sizeof(*sqe));
    sqe->opcode = IORING_OP_URING_CMD;
    if (fixed_) {
        sqe->fd = 0;
        sqe->flags = IOSQE_FIXED_FILE;
    } else {
        sqe->fd = devfd_;
    }
    sqe->cmd_op = cmd_op;
    sqe->user_data = user_data;
    std::memcpy(sqe->cmd, &req, sizeof(req));
    return sqe;
}

bool Ring::prep_register(uint16_t qid, const iovec *iov, uint64_t user_data)
{
    fuse::fuse_uring_cmd_req req{};
    req.qid = qid;
    io_uring_sqe *sqe = prep_cmd(fuse::kUringCmdRegister, req, user_data);
    if (!sqe)
        return false;
    sqe->addr = reinterpret_cast<uint64_t>(iov);
    sqe->len = 2; // FUSE_URING_IOV_SEGS: header, payload
    return true;
}

bool Ring::prep_commit(uint16_t qid, uint64_t commit_id, uint64_t user_data)
{
    fuse::fuse_uring_cmd_req req{};
    req.qid = qid;
    req.commit_id = commit_id;
    return prep_cmd(fuse::kUringCmdCommitAndFetch, req, user_data) != nullptr;
}

bool Ring::prep_io(const fuse::BackendIo &io, uint64_t user_data)
{
    using Op = fuse::BackendIo::Op;
    io_uring_sqe *sqe = io_uring_get_sqe(&ring_);
    if (!sqe)
        return false;
    std::memset(sqe, 0, 2 * sizeof(*sqe));
    switch (io.op) {
    case Op::read:
        io_uring_prep_read(sqe, io.fd, io.next_buf(), io.next_len(), io.next_off());
        break;
    case Op::write:
        io_uring_prep_write(sqe, io.fd, io.next_buf(), io.next_len(), io.next_off());
        break;
    case Op::fsync:
        io_uring_prep_fsync(sqe, io.fd, 0);
        break;
    case Op::fdatasync:
        io_uring_prep_fsync(sqe, io.fd, IORING_FSYNC_DATASYNC);
        break;
    case Op::fallocate:
        io_uring_prep_fallocate(sqe, io.fd, io.mode, off_t(io.off), off_t(io.length));
        break;
    case Op::none:
        io_uring_prep_nop(sqe);
        break;
    }
    sqe->user_data = user_data;
    return true;
}

bool Ring::prep_poll(int fd, uint64_t user_data)
{
    io_uring_sqe *sqe = io_uring_get_sqe(&ring_);
    if (!sqe)
        return false;
    std::memset(sqe, 0, 2 * sizeof(*sqe));
    io_uring_prep_poll_add(sqe, fd, POLLIN);
    sqe->user_data = user_data;
    return true;
}

int Ring::submit_and_wait(unsigned wait)
{
    return io_uring_submit_and_wait(&ring_, wait);
}

int Ring::submit_and_wait_ms(int timeout_ms)
{
    int r = io_uring_submit(&ring_);
    if (r < 0)
        return r;
    __kernel_timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000LL};
    io_uring_cqe *cqe;
    return io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
}

} // namespace holdfast::uring
