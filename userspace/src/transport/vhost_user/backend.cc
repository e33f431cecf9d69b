// SPDX-License-Identifier: GPL-2.0
#include "transport/vhost_user/backend.h"

#include "util/log.h"

#include <unistd.h>

namespace holdfast::vhost {

Backend::Backend(BackendConfig c) : cfg_(c)
{
    if (cfg_.max_queues == 0 || cfg_.max_queues > 256)
        cfg_.max_queues = 17;
    for (unsigned i = 0; i < cfg_.max_queues; i++)
        queues_.push_back(std::make_unique<Virtqueue>(i));
    if (cfg_.state_transfer && cfg_.state_check)
        cfg_.protocol_features |= kPDeviceState;
    else
        cfg_.protocol_features &= ~kPDeviceState;
    if (cfg_.dax_channel && cfg_.dax_channel->size())
        cfg_.protocol_features |= kPBackendReq | kPShmem;
    else
        cfg_.protocol_features &= ~(kPBackendReq | kPShmem);
}

Backend::~Backend() { shutdown(); }

void Backend::shutdown()
{
    for (auto &q : queues_)
        q->shutdown();
}

std::shared_ptr<const MemoryTable> Backend::memory() const
{
    std::lock_guard g(mu_);
    return mem_;
}

int Backend::take_fd(Message &m, size_t i)
{
    if (i >= m.fds.size())
        return -1;
    int fd = m.fds[i];
    m.fds[i] = -1;
    return fd;
}

namespace {
bool has_own_reply(uint32_t req)
{
    switch (req) {
    case kGetFeatures:
    case kGetProtocolFeatures:
    case kGetVringBase:
    case kGetQueueNum:
    case kGetInflightFd:
    case kGetConfig:
    case kGetMaxMemSlots:
    case kGetStatus:
    case kSetDeviceStateFd:
    case kCheckDeviceState:
    case kSetLogBase:
    case kGetShmemConfig:
        return true;
    default:
        return false;
    }
}
} // namespace

std::string Backend::handle(Message &m, Response &resp)
{
    std::lock_guard g(mu_);
    bool replied = false;
    std::string e = handle_locked(m, resp, replied);
    LOG_DBG("vhost-user %s%s%s", request_name(m.request), e.empty() ? "" : ": ", e.c_str());
    // REPLY_ACK: a request that has no reply of its own gets a u64 status.
    if ((protocol_ & kPReplyAck) && m.need_reply() && !has_own_reply(m.request)) {
        resp.bytes = reply_u64(m.request, e.empty() ? 0 : 1);
        if (!e.empty())
            LOG_WARN("vhost-user %s failed: %s", request_name(m.request), e.c_str());
        return "";
    }
    return e;
}

std::string Backend::handle_locked(Message &m, Response &resp, bool &replied)
{
    (void)replied;
    const bool proto = features_ & kFProtocolFeatures;
    switch (m.request) {
    case kGetFeatures:
        resp.bytes = reply_u64(m.request, cfg_.features);
        return "";

    case kSetFeatures:
        if (m.u64 & ~cfg_.features)
            return "SET_FEATURES acks features we never offered";
        features_ = m.u64;
        features_set_ = true;
        for (auto &q : queues_)
            q->set_features(features_);
        return "";

    case kGetProtocolFeatures:
        resp.bytes = reply_u64(m.request, cfg_.protocol_features);
        return "";

    case kSetProtocolFeatures:
        if (m.u64 & ~cfg_.protocol_features)
            return "SET_PROTOCOL_FEATURES acks features we never offered";
        protocol_ = m.u64;
        return "";

    case kSetOwner:
        owner_ = true;
        return "";

    case kResetOwner:
        // Deprecated; the spec recommends treating it as "disable all rings".
        for (auto &q : queues_)
            q->reset();
        return "";

    case kResetDevice:
        if (!(protocol_ & kPResetDevice))
            return "RESET_DEVICE without the protocol feature";
        for (auto &q : queues_)
            q->reset();
        features_ = 0;
        features_set_ = false;
        status_ = 0;
        return "";

    case kGetQueueNum:
        if (!(protocol_ & kPMq))
            return "GET_QUEUE_NUM without the MQ protocol feature";
        resp.bytes = reply_u64(m.request, cfg_.max_queues);
        return "";

    case kSetMemTable: {
        std::string err;
        auto t = MemoryTable::map(m.regions, m.fds, err);
        if (!t)
            return "SET_MEM_TABLE: " + err;
        mem_ = t;
        // A stopped ring's stale addresses may not fit the new table; they
        // are checked again when the ring starts.
        for (auto &q : queues_)
            q->set_memory(mem_);
        LOG_INFO("guest memory: %zu regions, %llu MiB", t->regions(),
                 (unsigned long long)(t->bytes() >> 20));
        return "";
    }

    case kSetVringNum:
        return queues_[m.state.index]->set_num(m.state.num);

    case kSetVringAddr:
        return queues_[m.addr.index]->set_addr(m.addr);

    case kSetVringBase:
        return queues_[m.state.index]->set_base(m.state.num);

    case kGetVringBase: {
        VringState s{m.state.index, queues_[m.state.index]->stop(cfg_.stop_timeout_ms)};
        resp.bytes = reply_bytes(m.request, &s, sizeof(s));
        return "";
    }

    case kSetVringKick:
    case kSetVringCall:
    case kSetVringErr: {
        unsigned i = unsigned(m.u64 & kVringIndexMask);
        Fd fd((m.u64 & kVringNoFd) ? -1 : take_fd(m, 0));
        if (m.request == kSetVringKick) {
            queues_[i]->set_kick(std::move(fd));
            if (on_ring_start)
                on_ring_start(i);
        } else if (m.request == kSetVringCall) {
            queues_[i]->set_call(std::move(fd));
        } else {
            queues_[i]->set_err(std::move(fd));
        }
        return "";
    }

    case kSetVringEnable:
        if (!proto)
            return "SET_VRING_ENABLE without VHOST_USER_F_PROTOCOL_FEATURES";
        if (m.state.num > 1)
            return "SET_VRING_ENABLE with " + std::to_string(m.state.num);
        queues_[m.state.index]->set_enabled(m.state.num == 1);
        return "";

    case kGetInflightFd: {
        if (!(protocol_ & kPInflightShmfd))
            return "GET_INFLIGHT_FD without the protocol feature";
        std::string err;
        InflightArea a = InflightArea::create(m.inflight.num_queues, m.inflight.queue_size, err);
        if (!a.valid())
            return "GET_INFLIGHT_FD: " + err;
        InflightDesc d{a.size(), 0, a.num_queues(), a.queue_size()};
        resp.bytes = reply_bytes(m.request, &d, sizeof(d));
        inflight_ = std::move(a);
        resp.fd = inflight_.fd();
        for (unsigned i = 0; i < cfg_.max_queues; i++)
            queues_[i]->set_inflight(inflight_.queue(uint16_t(i)), inflight_.queue_size());
        return "";
    }

    case kSetInflightFd: {
        if (!(protocol_ & kPInflightShmfd))
            return "SET_INFLIGHT_FD without the protocol feature";
        std::string err;
        Fd fd(take_fd(m, 0));
        InflightArea a = InflightArea::attach(fd.get(), m.inflight.mmap_size,
                                              m.inflight.mmap_offset, m.inflight.num_queues,
                                              m.inflight.queue_size, err);
        if (!a.valid())
            return "SET_INFLIGHT_FD: " + err;
        inflight_ = std::move(a);
        for (unsigned i = 0; i < cfg_.max_queues; i++)
            queues_[i]->set_inflight(inflight_.queue(uint16_t(i)), inflight_.queue_size());
        return "";
    }

    case kGetMaxMemSlots:
    case kAddMemReg:
    case kRemMemReg: {
        if (!(protocol_ & kPConfigureMemSlots))
            return std::string(request_name(m.request)) + " without CONFIGURE_MEM_SLOTS";
        if (m.request == kGetMaxMemSlots) {
            resp.bytes = reply_u64(m.request, 509);
            return "";
        }
        std::string err;
        std::shared_ptr<MemoryTable> t;
        if (m.request == kAddMemReg) {
            if (mem_)
                t = mem_->with_added(m.regions[0], m.fds[0], err);
            else
                t = MemoryTable::map(m.regions, {m.fds[0]}, err);
        } else {
            if (!mem_)
                return "REM_MEM_REG with no memory table";
            t = mem_->with_removed(m.regions[0], err);
        }
        if (!t)
            return std::string(request_name(m.request)) + ": " + err;
        mem_ = t;
        for (auto &q : queues_)
            q->set_memory(mem_);
        return "";
    }

    case kSetStatus:
        if (!(protocol_ & kPStatus))
            return "SET_STATUS without the protocol feature";
        status_ = m.u64 & 0xff;
        return "";

    case kGetStatus:
        if (!(protocol_ & kPStatus))
            return "GET_STATUS without the protocol feature";
        resp.bytes = reply_u64(m.request, status_);
        return "";

    case kSetLogBase: {
        if (!(protocol_ & kPLogShmfd))
            return "SET_LOG_BASE without the LOG_SHMFD protocol feature";
        int fd = take_fd(m, 0);
        std::shared_ptr<DirtyLog> log;
        std::string e = DirtyLog::map(fd, m.log.mmap_size, m.log.mmap_offset, log);
        close(fd);
        if (!e.empty())
            return e;
        for (auto &q : queues_)
            q->set_log(log);
        // With LOG_SHMFD the front-end waits for an empty reply.
        resp.bytes = reply_bytes(m.request, nullptr, 0);
        return "";
    }

    case kSetLogFd:
        // An eventfd to signal after logging, for front-ends that ask for
        // it; QEMU reads the log when it syncs, so nothing to signal.
        close(take_fd(m, 0));
        return "";

    case kSetDeviceStateFd: {
        if (!(protocol_ & kPDeviceState))
            return "SET_DEVICE_STATE_FD without the protocol feature";
        int fd = take_fd(m, 0);
        std::string e;
        for (auto &q : queues_)
            if (q->running())
                e = "the device is not stopped";
        // Errors are the reply's, not the connection's: the migration
        // fails and the front-end goes on with us (the source keeps its
        // guest).  Either way the fd is ours to close.
        if (e.empty())
            e = cfg_.state_transfer(m.transfer.direction, fd);
        else
            close(fd);
        if (!e.empty())
            LOG_ERR("device state %s: %s", m.transfer.direction == kStateSave ? "save" : "load",
                    e.c_str());
        resp.bytes = reply_u64(m.request, (e.empty() ? 0 : 1) | kStateNoFd);
        return "";
    }

    case kCheckDeviceState: {
        if (!(protocol_ & kPDeviceState))
            return "CHECK_DEVICE_STATE without the protocol feature";
        std::string e = cfg_.state_check();
        if (!e.empty())
            LOG_ERR("device state transfer failed: %s", e.c_str());
        resp.bytes = reply_u64(m.request, e.empty() ? 0 : 1);
        return "";
    }

    case kSetBackendReqFd: {
        if (!(protocol_ & kPBackendReq))
            return "SET_BACKEND_REQ_FD without the BACKEND_REQ protocol feature";
        cfg_.dax_channel->attach(Fd(take_fd(m, 0)), protocol_ & kPReplyAck);
        return "";
    }

    case kGetShmemConfig: {
        if (!(protocol_ & kPShmem))
            return "GET_SHMEM_CONFIG without the SHMEM protocol feature";
        ShmemConfig c{};
        c.nregions = 1;
        c.memory_sizes[kDaxShmid] = cfg_.dax_channel->size();
        resp.bytes = reply_bytes(m.request, &c, sizeof(c));
        return "";
    }

    default:
        return std::string(request_name(m.request)) + " is not supported";
    }
}

} // namespace holdfast::vhost
