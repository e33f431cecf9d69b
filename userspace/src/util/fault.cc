// SPDX-License-Identifier: GPL-2.0
#include "util/fault.h"

#include "util/log.h"

#include <atomic>
#include <cstring>
#include <unistd.h>

namespace holdfast::fault {

namespace {
std::atomic<bool> g_armed{false};
std::atomic<uint32_t> g_opcode{0};
std::atomic<uint32_t> g_point{0};
std::atomic<int32_t> g_count{0};
std::atomic<uint32_t> g_stalled{0};
} // namespace

void arm(uint32_t opcode, Point p, uint32_t count)
{
    g_opcode.store(opcode, std::memory_order_relaxed);
    g_point.store(uint32_t(p), std::memory_order_relaxed);
    g_count.store(int32_t(count), std::memory_order_relaxed);
    g_armed.store(true, std::memory_order_release);
}

void disarm() { g_armed.store(false, std::memory_order_release); }

uint32_t stalled() { return g_stalled.load(std::memory_order_relaxed); }

bool may_stall(uint32_t opcode)
{
    return g_armed.load(std::memory_order_relaxed) &&
           g_opcode.load(std::memory_order_acquire) == opcode &&
           g_count.load(std::memory_order_relaxed) > 0;
}

void point(uint32_t opcode, Point p)
{
    if (!g_armed.load(std::memory_order_relaxed))
        return;
    if (g_opcode.load(std::memory_order_acquire) != opcode ||
        g_point.load(std::memory_order_relaxed) != uint32_t(p))
        return;
    if (g_count.fetch_sub(1, std::memory_order_acq_rel) <= 0)
        return;
    LOG_INFO("fault injection: opcode %u stalled at point %u", opcode, uint32_t(p));
    g_stalled.fetch_add(1, std::memory_order_relaxed);
    // Until the test kills us.  A disarm releases the request instead.
    while (g_armed.load(std::memory_order_acquire))
        usleep(1000);
    g_stalled.fetch_sub(1, std::memory_order_relaxed);
}

bool parse_point(const char *s, Point &out)
{
    if (!strcmp(s, "before"))
        out = Point::before;
    else if (!strcmp(s, "mid"))
        out = Point::mid;
    else if (!strcmp(s, "after"))
        out = Point::after;
    else
        return false;
    return true;
}

} // namespace holdfast::fault
