// SPDX-License-Identifier: GPL-2.0
// Fault injection for the crash tests: make the next request of an opcode
// stop forever at a chosen point, so a test can kill the server exactly
// there.  Armed only through the control socket of a server started with
// --fault-injection; costs one relaxed load per point otherwise.
#pragma once

#include <cstdint>

namespace holdfast::fault {

enum class Point : uint32_t {
    before = 0, // request read, nothing done
    mid = 1,    // host operation done, journal not yet updated
    after = 2,  // done and journaled, reply not yet sent
};

// Arms a stall; `count` requests of `opcode` will stop at `p`.
void arm(uint32_t opcode, Point p, uint32_t count = 1);
void disarm();
// Blocks forever if armed for (opcode, p).
void point(uint32_t opcode, Point p);
bool parse_point(const char *s, Point &out);
// Number of requests currently stalled.
uint32_t stalled();
// True if a request of `opcode` would stall at some point now.  A transport
// that serves a queue's requests one after another (io_uring) serves such a
// request on a thread of its own, so the stall holds that request only, as
// it does over /dev/fuse, not everything behind it on the queue.
bool may_stall(uint32_t opcode);

} // namespace holdfast::fault
