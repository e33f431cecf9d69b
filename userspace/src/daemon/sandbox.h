// SPDX-License-Identifier: GPL-2.0
// The sandbox holdfastd enters before it serves a guest (vhost-user mode):
// the guest is untrusted, so a bug in the daemon must not reach the host.
//
//   namespace  new mount, network and IPC namespaces; the root becomes a
//              small read-only tmpfs holding only /proc (pivot_root), so no
//              path resolves to anything of the host's; the shared
//              directory is reached only through fds opened before.
//   chroot     chroot(2) into the shared directory (for hosts where
//              namespaces are unavailable).  Weaker: the shared
//              directory is the root, so a path-resolution bug reaches all
//              of it rather than nothing (Documentation/vhost-user.rst).
//   none       nothing: for debugging.
//
// Every mode but none then drops all capabilities except those a
// passthrough server needs (chown, dac_override, dac_read_search, fowner,
// fsetid, setgid, setuid, mknod, setfcap), sets no_new_privs, and
// installs a seccomp allow-list of system calls.
#pragma once

#include <string>

namespace holdfast::daemon {

// Enters `mode`.  Must be called while the process has one thread.  The
// shared directory must already be open.  Returns "" or what failed.
std::string enter_sandbox(const std::string &mode, const std::string &shared_dir);

// Drops capabilities (bounding, permitted, effective, inheritable,
// ambient) to the passthrough set.  Returns "" or what failed.
std::string drop_capabilities();

// Installs the seccomp allow-list; `action` (kill|log|trap|none) is what
// happens on any other system call.  Sets no_new_privs.
std::string install_seccomp(const std::string &action);

} // namespace holdfast::daemon
