// SPDX-License-Identifier: GPL-2.0
// The back-end request channel (VHOST_USER_SET_BACKEND_REQ_FD): the socket
// on which the back-end asks the front-end for things.  holdfastd uses it
// to map host files into the virtio-fs DAX window (SHMEM_MAP/SHMEM_UNMAP,
// shared memory region 0), so it implements fuse::DaxWindow.
//
// Requests come from any queue worker; one at a time goes out and waits
// for its acknowledgement (with REPLY_ACK; without it nothing comes back
// and a sent request counts as done).  The front-end's reply is hostile
// input like the rest of what it sends: a reply that does not come in
// time, is short, or has a header other than the one expected fails the
// request and closes the channel, since later replies could no longer be
// told apart.
#pragma once

#include "fuse/dax.h"
#include "transport/vhost_user/protocol.h"
#include "util/fd.h"

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace holdfast::vhost {

// Back-end requests (sent by us) we know about.
enum BackendRequest : uint32_t {
    kBackendShmemMap = 9,
    kBackendShmemUnmap = 10,
};

// VHOST_USER_BACKEND_SHMEM_MAP/UNMAP payload.
#pragma pack(push, 1)
struct MMapMsg {
    uint8_t shmid;
    uint8_t padding[7];
    uint64_t fd_offset;
    uint64_t shm_offset;
    uint64_t len;
    uint64_t flags;
};
#pragma pack(pop)
static_assert(sizeof(MMapMsg) == 40);
constexpr uint64_t kMMapRw = 1ull << 0; // VHOST_USER_FLAG_MAP_RW
constexpr uint8_t kDaxShmid = 0;        // virtio-fs: the cache window

// One request as it goes on the wire: header {request, flags, size} and
// the payload.  `need_reply` sets NEED_REPLY.
std::vector<uint8_t> encode_backend_request(uint32_t request, bool need_reply, const void *p,
                                            size_t n);
// Checks the acknowledgement of `request` (header + payload as read):
// "" and `value` set, or what is wrong.
std::string check_ack(uint32_t request, const MsgHeader &hdr, std::span<const uint8_t> payload,
                      uint64_t &value);

class BackendChannel final : public fuse::DaxWindow {
  public:
    // `window`: bytes in the DAX window (shared memory region 0).
    explicit BackendChannel(uint64_t window, int timeout_ms = 5000)
        : window_(window), timeout_ms_(timeout_ms)
    {
    }

    // The front-end's SET_BACKEND_REQ_FD; `reply_ack`: REPLY_ACK was
    // negotiated, so every request waits for its acknowledgement.
    void attach(Fd sock, bool reply_ack);
    // The front-end is gone (or the channel broke): later requests fail
    // with -ENOTCONN.
    void detach();
    bool connected() const;

    uint64_t size() const override { return window_; }
    int map(int fd, uint64_t fd_offset, uint64_t win_offset, uint64_t len, bool writable) override;
    int unmap(uint64_t win_offset, uint64_t len) override;

    // Sends one request (with `fd` unless -1) and waits for its
    // acknowledgement.  0; -EREMOTEIO: the front-end answered non-zero;
    // -ENOTCONN: no channel, nothing sent; -EAGAIN: the front-end is not
    // reading, nothing sent; -ETIMEDOUT, -EPROTO, -EIO: the
    // request may or may not have been acted on, and the channel is
    // closed.  `err` says what happened.
    int request(uint32_t req, const void *payload, size_t n, int fd, std::string &err);

  private:
    int fail(int e, std::string &err, const std::string &why);
    int read_exact(void *buf, size_t n, long long deadline_ns, std::string &err);

    const uint64_t window_;
    const int timeout_ms_;
    mutable std::mutex mu_;
    Fd sock_;
    bool reply_ack_ = false;
};

} // namespace holdfast::vhost
