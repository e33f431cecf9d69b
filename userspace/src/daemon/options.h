// SPDX-License-Identifier: GPL-2.0
// holdfastd's command line, virtiofsd-style long options.
#pragma once

#include "fs/passthrough.h"
#include "util/log.h"

#include <cstdint>
#include <string>

namespace holdfast::daemon {

struct Options {
    fs::Options fs;
    std::string mountpoint;
    unsigned threads = 0; // 0: one per CPU, at least 2
    bool allow_other = true;
    bool allow_other_set = false;
    bool default_permissions = false;
    int ready_fd = -1;
    log::Level log_level = log::Level::info;
    uint64_t max_inodes = 1u << 20;
    uint64_t max_handles = 1u << 18;
    // Crash recovery: run under the fd store (holdfast-fdstore, or systemd's
    // when $NOTIFY_SOCKET is set) and keep the journal.
    bool recovery = true;
    bool fault_injection = false;
    bool help = false;
    bool version = false;
};

// Parses argv into `out`.  Returns an empty string on success, or what is
// wrong, phrased for the user.
std::string parse(int argc, char **argv, Options &out);

const char *usage();

} // namespace holdfast::daemon
