// SPDX-License-Identifier: GPL-2.0
#include "fuse/dax.h"

#include <cstdint>

namespace holdfast::fuse {

const char *check_window_range(uint64_t off, uint64_t len, uint64_t window)
{
    if (len == 0)
        return "empty range";
    if ((off | len) & (kDaxPage - 1))
        return "window offset or length not page aligned";
    if (off + len < off)
        return "window range overflows";
    if (off + len > window)
        return "window range ends past the window";
    return nullptr;
}

const char *check_setupmapping(const fuse_setupmapping_in &in, uint64_t window)
{
    if (in.flags & ~kSetupMappingFlags)
        return "unknown flags";
    if (!(in.flags & kSetupMappingFlags))
        return "neither read nor write asked";
    if (in.foffset & (kDaxPage - 1))
        return "file offset not page aligned";
    // The file range must be a valid off_t range.
    if (in.foffset > uint64_t(INT64_MAX) || in.len > uint64_t(INT64_MAX) - in.foffset)
        return "file range overflows";
    return check_window_range(in.moffset, in.len, window);
}

} // namespace holdfast::fuse
