// SPDX-License-Identifier: GPL-2.0
// What both vhost harnesses check of every chain the back-end hands out.
#pragma once

#include "transport/vhost_user/memory.h"
#include "transport/vhost_user/virtqueue.h"

#include <string>

namespace holdfast::fuzz {

// Every segment inside one region of `mem` (its first and last bytes are
// touched, so ASan sees a segment past a heap region), the byte counts
// adding up, within `lim`.
inline std::string check_chain(const vhost::Chain &c, const vhost::MemoryTable &mem,
                               const vhost::WalkLimits &lim)
{
    uint64_t bytes[2] = {0, 0};
    int dir = 0;
    if (c.in.size() + c.out.size() > lim.max_iov)
        return "chain has more segments than the limit";
    for (const auto *v : {&c.in, &c.out}) {
        for (const iovec &io : *v) {
            auto *b = static_cast<const uint8_t *>(io.iov_base);
            bool inside = false;
            for (size_t i = 0; i < mem.regions() && !inside; i++) {
                const auto &r = mem.region(i);
                inside = b >= r.host && io.iov_len <= r.size &&
                         size_t(b - r.host) <= r.size - io.iov_len;
            }
            if (!inside)
                return "chain segment outside the memory table";
            if (io.iov_len) {
                volatile uint8_t x = b[0];
                x = b[io.iov_len - 1];
                (void)x;
            }
            bytes[dir] += io.iov_len;
        }
        dir++;
    }
    if (bytes[0] != c.in_bytes || bytes[1] != c.out_bytes)
        return "chain byte counts do not add up";
    if (c.in_bytes > lim.max_bytes || c.out_bytes > lim.max_bytes)
        return "chain larger than the limit";
    return "";
}

} // namespace holdfast::fuzz
