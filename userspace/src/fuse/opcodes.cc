// SPDX-License-Identifier: GPL-2.0
#include "fuse/opcodes.h"

#include "fuse/abi.h"

namespace holdfast::fuse {

const char *opcode_name(uint32_t op)
{
    switch (op) {
#define N(x)                                                                                       \
    case FUSE_##x:                                                                                 \
        return #x
        N(LOOKUP);
        N(FORGET);
        N(GETATTR);
        N(SETATTR);
        N(READLINK);
        N(SYMLINK);
        N(MKNOD);
        N(MKDIR);
        N(UNLINK);
        N(RMDIR);
        N(RENAME);
        N(LINK);
        N(OPEN);
        N(READ);
        N(WRITE);
        N(STATFS);
        N(RELEASE);
        N(FSYNC);
        N(SETXATTR);
        N(GETXATTR);
        N(LISTXATTR);
        N(REMOVEXATTR);
        N(FLUSH);
        N(INIT);
        N(OPENDIR);
        N(READDIR);
        N(RELEASEDIR);
        N(FSYNCDIR);
        N(GETLK);
        N(SETLK);
        N(SETLKW);
        N(ACCESS);
        N(CREATE);
        N(INTERRUPT);
        N(BMAP);
        N(DESTROY);
        N(IOCTL);
        N(POLL);
        N(NOTIFY_REPLY);
        N(BATCH_FORGET);
        N(FALLOCATE);
        N(READDIRPLUS);
        N(RENAME2);
        N(LSEEK);
        N(COPY_FILE_RANGE);
        N(SETUPMAPPING);
        N(REMOVEMAPPING);
        N(SYNCFS);
        N(TMPFILE);
#undef N
    case kOpStatx:
        return "STATX";
    }
    return nullptr;
}

} // namespace holdfast::fuse
