// SPDX-License-Identifier: GPL-2.0
// Silences holdfast's logging for a scope: tests that feed hostile input
// expect the warnings it causes.
#pragma once

#include "util/log.h"

namespace holdfast::test {

class QuietLog {
  public:
    QuietLog() : old_(log::level()) { log::set_level(static_cast<log::Level>(-1)); }
    ~QuietLog() { log::set_level(old_); }
    QuietLog(const QuietLog &) = delete;
    QuietLog &operator=(const QuietLog &) = delete;

  private:
    log::Level old_;
};

} // namespace holdfast::test
