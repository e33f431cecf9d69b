// SPDX-License-Identifier: GPL-2.0
// The fd store speaks systemd's service protocol, so a daemon written for
// systemd's fd store works unchanged under holdfast-fdstore, and holdfastd
// works unchanged under systemd:
//  - the daemon sends datagrams to $NOTIFY_SOCKET: newline-separated
//    KEY=VALUE lines, fds attached with SCM_RIGHTS (sd_notify(3)):
//      FDSTORE=1 + FDNAME=name      keep the attached fds under that name
//      FDSTOREREMOVE=1 + FDNAME=name close every fd kept under that name
//      READY=1, STOPPING=1, STATUS=text
//  - on restart the daemon gets the kept fds from 3 on, described by
//    LISTEN_FDS=n, LISTEN_PID=pid, LISTEN_FDNAMES=a:b:c (sd_listen_fds(3)).
// holdfast adds two keys systemd ignores:
//      HOLDFAST_EXEC=path   start this binary on the next (planned) restart
//      HOLDFAST_RESTART=1   the coming exit is a handover, not a stop
// and passes HOLDFAST_RESTARTS=n and HOLDFAST_CRASH_NS=t (CLOCK_MONOTONIC
// when the store saw the previous server die) to a restarted daemon.
#pragma once

namespace holdfast::fdstore {

constexpr int kListenFdsStart = 3;          // SD_LISTEN_FDS_START
// A daemon exiting with this status says a restart cannot help (EX_CONFIG:
// e.g. the state it was handed is corrupt): the store gives up at once.
constexpr int kExitNoRestart = 78;
constexpr unsigned kMaxNameLen = 255;       // systemd's FDNAME limit
constexpr unsigned kMaxFdsPerMessage = 253; // SCM_MAX_FD

} // namespace holdfast::fdstore
