// SPDX-License-Identifier: GPL-2.0
#include "util/log.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <unistd.h>

namespace holdfast::log {

namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};
const char *const kNames[] = {"error", "warn", "info", "debug"};
} // namespace

void set_level(Level l) { g_level.store(static_cast<int>(l), std::memory_order_relaxed); }
Level level() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }

bool parse_level(const char *s, Level &out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, kNames[i]) == 0) {
            out = static_cast<Level>(i);
            return true;
        }
    }
    return false;
}

void write(Level l, const char *fmt, ...)
{
    char buf[1024];
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int n = snprintf(buf, sizeof(buf), "holdfastd[%d] %ld.%03ld %s: ", getpid(), (long)ts.tv_sec,
                     ts.tv_nsec / 1000000, kNames[static_cast<int>(l)]);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(buf) - 1)
        n = sizeof(buf) - 2;
    buf[n++] = '\n';
    // One write(2) per line keeps lines from concurrent threads whole.
    ssize_t r = ::write(STDERR_FILENO, buf, n);
    (void)r;
}

} // namespace holdfast::log
