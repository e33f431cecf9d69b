// SPDX-License-Identifier: GPL-2.0
// holdfastd as a vhost-user-fs back-end: serves one VM's virtio-fs device
// (QEMU -device vhost-user-fs-pci) over the vhost-user socket.  The FUSE
// engine and the passthrough filesystem are the same as for /dev/fuse;
// only the transport differs.
#pragma once

#include "daemon/options.h"

namespace holdfast::daemon {

// Listens on o.socket_path (or o.listen_fd), enters the sandbox, serves
// one front-end connection, and returns when the front-end disconnects or
// on SIGTERM/SIGINT.  Returns the process exit status.
int serve_vhost(const Options &o);

// What --print-capabilities prints (vhost-user.json
// VHostUserBackendCapabilities).
const char *vhost_capabilities_json();

} // namespace holdfast::daemon
