// SPDX-License-Identifier: GPL-2.0
// Reading and writing vhost-user messages on the UNIX socket, with the fds
// that travel in SCM_RIGHTS.  Size limits are enforced before anything is
// allocated; fds are received close-on-exec and closed on every error path.
#pragma once

#include "transport/vhost_user/protocol.h"

#include <string>
#include <vector>

namespace holdfast::vhost {

// Reads one message.  Returns 1 (got one), 0 (orderly EOF before a
// header), or -1 with `err` set.  On success the caller owns `fds`.
int read_message(int sock, MsgHeader &hdr, std::vector<uint8_t> &payload, std::vector<int> &fds,
                 std::string &err);

// Sends `bytes` (one whole message), with `fd` attached unless it is -1.
// On failure errno is sendmsg's and `sent`, if given, says how many bytes
// went out before it (on a non-blocking socket: 0 means none, so the
// stream is still in step).
bool send_message(int sock, const std::vector<uint8_t> &bytes, int fd, std::string &err,
                  size_t *sent = nullptr);

} // namespace holdfast::vhost
