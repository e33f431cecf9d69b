// SPDX-License-Identifier: GPL-2.0
// The vhost-user back-end state machine: feature negotiation, the memory
// table, the virtqueues, the inflight buffer.  It turns validated
// front-end messages (protocol.h) into state changes and replies; it does
// no socket I/O and knows nothing of what the queues carry.
#pragma once

#include "transport/vhost_user/backend_channel.h"
#include "transport/vhost_user/inflight.h"
#include "transport/vhost_user/memory.h"
#include "transport/vhost_user/protocol.h"
#include "transport/vhost_user/virtqueue.h"

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace holdfast::vhost {

struct BackendConfig {
    uint32_t max_queues = 17; // vrings: virtio-fs hiprio + up to 16 request queues
    // LOG_ALL and LOG_SHMFD: QEMU migrates a vhost-user device only if
    // the back-end logs the guest pages it writes (dirty_log.h).
    uint64_t features =
        kFVersion1 | kFIndirectDesc | kFEventIdx | kFProtocolFeatures | kFLogAll;
    uint64_t protocol_features =
        kPMq | kPReplyAck | kPInflightShmfd | kPResetDevice | kPLogShmfd;
    int stop_timeout_ms = 5000; // GET_VRING_BASE waits this long for requests
    // Back-end state migration (PROTOCOL_F_DEVICE_STATE, offered when
    // set).  state_transfer starts moving the state over `fd` (kStateSave:
    // write it, kStateLoad: read it) without waiting for the other end,
    // which only drains the channel after our reply; "" or why not.
    // state_check waits for that transfer to end: "" if the state went
    // through (and, loading, is installed).
    std::function<std::string(uint32_t direction, int fd)> state_transfer;
    std::function<std::string()> state_check;
    // The virtio-fs DAX window (shared memory region 0), when there is
    // one: BACKEND_REQ and SHMEM are offered, SET_BACKEND_REQ_FD attaches
    // the channel, GET_SHMEM_CONFIG reports the window's size.  The channel
    // outlives the connection; the caller detaches it when it ends.
    BackendChannel *dax_channel = nullptr;
};

// What the caller sends back for one message.
struct Response {
    std::vector<uint8_t> bytes; // empty: nothing to send
    int fd = -1;                // sent with it (owned by the backend)
};

class Backend {
  public:
    explicit Backend(BackendConfig c);
    ~Backend();

    // Acts on one message.  Returns "" on success, else what is wrong; the
    // caller then drops the connection unless `resp` holds a (negative)
    // REPLY_ACK, which reports the failure and keeps it.  Fds the message
    // carried that were taken are set to -1 in m.fds; the caller closes
    // the rest.
    std::string handle(Message &m, Response &resp);

    uint32_t max_queues() const { return cfg_.max_queues; }
    Virtqueue &queue(unsigned i) { return *queues_[i]; }
    uint64_t acked_features() const { return features_; }
    uint64_t acked_protocol_features() const { return protocol_; }
    std::shared_ptr<const MemoryTable> memory() const;

    // Called after a ring got its kick fd (it may now run).
    std::function<void(unsigned)> on_ring_start;

    // Wakes every worker and makes wait_pop() return false.
    void shutdown();

  private:
    std::string handle_locked(Message &m, Response &resp, bool &replied);
    int take_fd(Message &m, size_t i);

    BackendConfig cfg_;
    std::vector<std::unique_ptr<Virtqueue>> queues_;
    mutable std::mutex mu_;
    uint64_t features_ = 0;
    uint64_t protocol_ = 0;
    bool features_set_ = false;
    bool owner_ = false;
    std::shared_ptr<const MemoryTable> mem_;
    InflightArea inflight_;
    uint64_t status_ = 0;
};

} // namespace holdfast::vhost
