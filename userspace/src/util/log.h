// SPDX-License-Identifier: GPL-2.0
// Leveled logging to stderr.  One line per call; cheap when filtered out.
#pragma once

#include <cstdarg>

namespace holdfast::log {

enum class Level { error = 0, warn = 1, info = 2, debug = 3 };

void set_level(Level l);
Level level();
bool parse_level(const char *s, Level &out);
void write(Level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

} // namespace holdfast::log

#define HF_LOG(lvl, ...)                                                                           \
    do {                                                                                           \
        if (static_cast<int>(lvl) <= static_cast<int>(::holdfast::log::level()))                    \
            ::holdfast::log::write(lvl, __VA_ARGS__);                                              \
    } while (0)
#define LOG_ERR(...) HF_LOG(::holdfast::log::Level::error, __VA_ARGS__)
#define LOG_WARN(...) HF_LOG(::holdfast::log::Level::warn, __VA_ARGS__)
#define LOG_INFO(...) HF_LOG(::holdfast::log::Level::info, __VA_ARGS__)
#define LOG_DBG(...) HF_LOG(::holdfast::log::Level::debug, __VA_ARGS__)
