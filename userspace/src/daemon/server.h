// SPDX-License-Identifier: GPL-2.0
// One holdfastd process serving one mount: fresh, or taking over from a
// predecessor that crashed or handed over (fds from the fd store).
#pragma once

#include "daemon/options.h"

namespace holdfast::daemon {

// Runs until the mount goes away, a stop signal, or a handover.
int serve(const Options &o);

// Re-executes this program under holdfast-fdstore, which keeps the mount's
// fds and restarts us when we die.  Returns only on failure.
int exec_under_fdstore(int argc, char **argv);

} // namespace holdfast::daemon
