// SPDX-License-Identifier: GPL-2.0
// The FUSE wire ABI: Debian bookworm's <linux/fuse.h> is protocol 7.38; the
// few newer constants and structs holdfast relies on are defined here, once,
// with the protocol minor that introduced them.  Values are ABI: they must
// match upstream include/uapi/linux/fuse.h exactly.
#pragma once

#include <linux/fuse.h>
#include <linux/ioctl.h>
#include <cstdint>

#if FUSE_KERNEL_VERSION != 7 || FUSE_KERNEL_MINOR_VERSION < 38
#error "holdfast needs <linux/fuse.h> 7.38 or newer (Debian: linux-libc-dev)"
#endif

namespace holdfast::fuse {

// The protocol minor holdfast speaks.  7.40 brings FUSE_HAS_RESEND and the
// resend unique bit; nothing between 7.38 and 7.40 changed a struct size we use.
constexpr uint32_t kOurMinor = 40;

// 7.39
constexpr uint64_t kCreateSuppGroup = 1ULL << 34; // FUSE_CREATE_SUPP_GROUP
constexpr uint32_t kOpStatx = 52;                 // FUSE_STATX
// The request extension FUSE_CREATE_SUPP_GROUP makes the kernel append to
// MKNOD/MKDIR/SYMLINK/CREATE/TMPFILE: a fuse_ext_header (7.38) of type
// FUSE_EXT_GROUPS followed by fuse_supp_groups.
constexpr uint32_t kExtGroups = 32; // FUSE_EXT_GROUPS
struct fuse_supp_groups {
    uint32_t nr_groups;
    // uint32_t groups[nr_groups] follows
};
// 7.40
constexpr uint64_t kDirectIoAllowMmap = 1ULL << 36; // FUSE_DIRECT_IO_ALLOW_MMAP
constexpr uint64_t kPassthrough = 1ULL << 37;       // FUSE_PASSTHROUGH
constexpr uint64_t kNoExportSupport = 1ULL << 38;   // FUSE_NO_EXPORT_SUPPORT
constexpr uint64_t kHasResend = 1ULL << 39;         // FUSE_HAS_RESEND
constexpr uint64_t kUniqueResend = 1ULL << 63;      // FUSE_UNIQUE_RESEND
constexpr int32_t kNotifyResend = 7;                // FUSE_NOTIFY_RESEND
// 7.41 / 7.42
constexpr uint64_t kAllowIdmap = 1ULL << 40;   // FUSE_ALLOW_IDMAP
constexpr uint64_t kOverIoUring = 1ULL << 41;  // FUSE_OVER_IO_URING
constexpr uint64_t kRequestTimeout = 1ULL << 42; // FUSE_REQUEST_TIMEOUT (7.43)
// FOPEN_* bits newer than 7.38
constexpr uint32_t kFopenPassthrough = 1U << 7; // FOPEN_PASSTHROUGH
// fuse_init_out.max_stack_depth we announce with FUSE_PASSTHROUGH (the
// kernel accepts 1 to FILESYSTEM_MAX_STACK_DEPTH, 2).
constexpr uint32_t kPassthroughStackDepth = 1;

// Bit 0 of a unique marks an INTERRUPT request (FUSE_INT_REQ_BIT).
constexpr uint64_t kInterruptBit = 1ULL << 0;

// FUSE_STATX (7.39) wire structs.
struct fuse_sx_time {
    int64_t tv_sec;
    uint32_t tv_nsec;
    int32_t __reserved;
};

struct fuse_statx {
    uint32_t mask;
    uint32_t blksize;
    uint64_t attributes;
    uint32_t nlink;
    uint32_t uid;
    uint32_t gid;
    uint16_t mode;
    uint16_t __spare0[1];
    uint64_t ino;
    uint64_t size;
    uint64_t blocks;
    uint64_t attributes_mask;
    fuse_sx_time atime;
    fuse_sx_time btime;
    fuse_sx_time ctime;
    fuse_sx_time mtime;
    uint32_t rdev_major;
    uint32_t rdev_minor;
    uint32_t dev_major;
    uint32_t dev_minor;
    uint64_t __spare2[14];
};

struct fuse_statx_in {
    uint32_t getattr_flags;
    uint32_t reserved;
    uint64_t fh;
    uint32_t sx_flags;
    uint32_t sx_mask;
};

struct fuse_statx_out {
    uint64_t attr_valid;
    uint32_t attr_valid_nsec;
    uint32_t flags;
    uint64_t spare[2];
    fuse_statx stat;
};

static_assert(sizeof(fuse_statx) == 256);
static_assert(sizeof(fuse_statx_out) == 288);

// Kernel passthrough (7.40): register a backing file, get an id for open_out.
struct fuse_backing_map {
    int32_t fd;
    uint32_t flags;
    uint64_t padding;
};

// FUSE-over-io_uring (7.42, Linux 6.14): IORING_OP_URING_CMD on /dev/fuse
// with 128-byte SQEs.  Negotiated with kOverIoUring; the kernel offers it
// only while the fuse module's enable_uring parameter is Y.
constexpr uint32_t kUringInOutHeaderSz = 128; // FUSE_URING_IN_OUT_HEADER_SZ
constexpr uint32_t kUringOpInOutSz = 128;     // FUSE_URING_OP_IN_OUT_SZ
constexpr uint32_t kUringCmdRegister = 1;       // FUSE_IO_URING_CMD_REGISTER
constexpr uint32_t kUringCmdCommitAndFetch = 2; // FUSE_IO_URING_CMD_COMMIT_AND_FETCH

// The trailer of each entry's header buffer: written by the kernel with a
// request, by us with its reply.
struct fuse_uring_ent_in_out {
    uint64_t flags;
    uint64_t commit_id; // echo in fuse_uring_cmd_req.commit_id
    uint32_t payload_sz; // bytes used in the entry's payload buffer
    uint32_t padding;
    uint64_t reserved;
};

// An entry's header buffer (iovec 0 of a REGISTER).  in_out holds the
// fuse_in_header of a request, then the fuse_out_header of its reply;
// op_in the request's first argument (the per-opcode struct) if non-empty.
struct fuse_uring_req_header {
    char in_out[kUringInOutHeaderSz];
    char op_in[kUringOpInOutSz];
    fuse_uring_ent_in_out ring_ent_in_out;
};

// The command in the 80-byte area of an SQE128.
struct fuse_uring_cmd_req {
    uint64_t flags;
    uint64_t commit_id;
    uint16_t qid;
    uint8_t padding[6];
};

static_assert(sizeof(fuse_uring_ent_in_out) == 32);
static_assert(sizeof(fuse_uring_req_header) == 288);
static_assert(sizeof(fuse_uring_cmd_req) == 24);

} // namespace holdfast::fuse

#ifndef FUSE_DEV_IOC_MAGIC
#define FUSE_DEV_IOC_MAGIC 229
#endif
#ifndef FUSE_DEV_IOC_CLONE
#define FUSE_DEV_IOC_CLONE _IOR(FUSE_DEV_IOC_MAGIC, 0, uint32_t)
#endif
#define HOLDFAST_FUSE_DEV_IOC_BACKING_OPEN \
    _IOW(FUSE_DEV_IOC_MAGIC, 1, struct holdfast::fuse::fuse_backing_map)
#define HOLDFAST_FUSE_DEV_IOC_BACKING_CLOSE _IOW(FUSE_DEV_IOC_MAGIC, 2, uint32_t)
