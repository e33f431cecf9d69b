// SPDX-License-Identifier: GPL-2.0
#include "transport/vhost_user/protocol.h"

#include <cstring>

namespace holdfast::vhost {

const char *request_name(uint32_t req)
{
    switch (req) {
    case kGetFeatures: return "GET_FEATURES";
    case kSetFeatures: return "SET_FEATURES";
    case kSetOwner: return "SET_OWNER";
    case kResetOwner: return "RESET_OWNER";
    case kSetMemTable: return "SET_MEM_TABLE";
    case kSetLogBase: return "SET_LOG_BASE";
    case kSetLogFd: return "SET_LOG_FD";
    case kSetVringNum: return "SET_VRING_NUM";
    case kSetVringAddr: return "SET_VRING_ADDR";
    case kSetVringBase: return "SET_VRING_BASE";
    case kGetVringBase: return "GET_VRING_BASE";
    case kSetVringKick: return "SET_VRING_KICK";
    case kSetVringCall: return "SET_VRING_CALL";
    case kSetVringErr: return "SET_VRING_ERR";
    case kGetProtocolFeatures: return "GET_PROTOCOL_FEATURES";
    case kSetProtocolFeatures: return "SET_PROTOCOL_FEATURES";
    case kGetQueueNum: return "GET_QUEUE_NUM";
    case kSetVringEnable: return "SET_VRING_ENABLE";
    case kSendRarp: return "SEND_RARP";
    case kNetSetMtu: return "NET_SET_MTU";
    case kSetBackendReqFd: return "SET_BACKEND_REQ_FD";
    case kIotlbMsg: return "IOTLB_MSG";
    case kSetVringEndian: return "SET_VRING_ENDIAN";
    case kGetConfig: return "GET_CONFIG";
    case kSetConfig: return "SET_CONFIG";
    case kGetInflightFd: return "GET_INFLIGHT_FD";
    case kSetInflightFd: return "SET_INFLIGHT_FD";
    case kResetDevice: return "RESET_DEVICE";
    case kVringKick: return "VRING_KICK";
    case kGetMaxMemSlots: return "GET_MAX_MEM_SLOTS";
    case kAddMemReg: return "ADD_MEM_REG";
    case kRemMemReg: return "REM_MEM_REG";
    case kSetStatus: return "SET_STATUS";
    case kGetStatus: return "GET_STATUS";
    case kSetDeviceStateFd: return "SET_DEVICE_STATE_FD";
    case kCheckDeviceState: return "CHECK_DEVICE_STATE";
    case kGetShmemConfig: return "GET_SHMEM_CONFIG";
    default: return "UNKNOWN";
    }
}

namespace {

template <class T> bool take(std::span<const uint8_t> p, T &out)
{
    if (p.size() != sizeof(T))
        return false;
    std::memcpy(&out, p.data(), sizeof(T));
    return true;
}

std::string sz(const char *what, size_t got)
{
    return std::string(what) + " payload has the wrong size (" + std::to_string(got) + " bytes)";
}

std::string index_check(uint32_t index, uint32_t max_queues)
{
    if (index >= max_queues)
        return "vring index " + std::to_string(index) + " out of range (" +
               std::to_string(max_queues) + " queues)";
    return "";
}

} // namespace

std::string parse(const MsgHeader &hdr, std::span<const uint8_t> p, std::span<const int> fds,
                  uint32_t max_queues, Message &out)
{
    out = Message{};
    out.request = hdr.request;
    out.flags = hdr.flags;
    out.fds.assign(fds.begin(), fds.end());
    if ((hdr.flags & kVersionMask) != kVersion)
        return "unsupported message version " + std::to_string(hdr.flags & kVersionMask);
    if (hdr.flags & kReplyFlag)
        return "front-end message carries the reply flag";
    if (hdr.size != p.size() || hdr.size > kMaxPayload)
        return "payload size " + std::to_string(hdr.size) + " is invalid";
    if (fds.size() > kMaxFds)
        return "too many fds";

    auto want_fds = [&](size_t n) -> std::string {
        if (fds.size() != n)
            return std::string(request_name(hdr.request)) + " came with " +
                   std::to_string(fds.size()) + " fds, expected " + std::to_string(n);
        return "";
    };
    std::string e;

    switch (hdr.request) {
    case kGetFeatures:
    case kSetOwner:
    case kResetOwner:
    case kGetProtocolFeatures:
    case kGetQueueNum:
    case kGetMaxMemSlots:
    case kResetDevice:
    case kGetStatus:
    case kCheckDeviceState:
    case kGetShmemConfig:
        // Some front-ends send a u64 of zero with requests that have none.
        if (p.size() != 0 && p.size() != 8)
            return sz(request_name(hdr.request), p.size());
        return want_fds(0);

    case kSetFeatures:
    case kSetProtocolFeatures:
    case kSetStatus:
        if (!take(p, out.u64))
            return sz(request_name(hdr.request), p.size());
        return want_fds(0);

    case kSetVringNum:
    case kSetVringBase:
    case kGetVringBase:
    case kSetVringEnable:
    case kSetVringEndian:
    case kVringKick:
        if (!take(p, out.state))
            return sz(request_name(hdr.request), p.size());
        if (!(e = index_check(out.state.index, max_queues)).empty())
            return e;
        return want_fds(0);

    case kSetVringAddr:
        if (!take(p, out.addr))
            return sz("SET_VRING_ADDR", p.size());
        if (!(e = index_check(out.addr.index, max_queues)).empty())
            return e;
        return want_fds(0);

    case kSetVringKick:
    case kSetVringCall:
    case kSetVringErr:
        if (!take(p, out.u64))
            return sz(request_name(hdr.request), p.size());
        if (out.u64 & ~(kVringIndexMask | kVringNoFd))
            return "reserved bits set in vring fd message";
        if (!(e = index_check(uint32_t(out.u64 & kVringIndexMask), max_queues)).empty())
            return e;
        return want_fds((out.u64 & kVringNoFd) ? 0 : 1);

    case kSetMemTable: {
        MemTableHeader h;
        if (p.size() < sizeof(h))
            return sz("SET_MEM_TABLE", p.size());
        std::memcpy(&h, p.data(), sizeof(h));
        if (h.nregions == 0 || h.nregions > kMaxMemRegions)
            return "SET_MEM_TABLE with " + std::to_string(h.nregions) + " regions";
        size_t need = sizeof(h) + size_t(h.nregions) * sizeof(MemRegionDesc);
        if (p.size() < need || p.size() > sizeof(h) + kMaxMemRegions * sizeof(MemRegionDesc))
            return sz("SET_MEM_TABLE", p.size());
        out.regions.resize(h.nregions);
        std::memcpy(out.regions.data(), p.data() + sizeof(h), h.nregions * sizeof(MemRegionDesc));
        return want_fds(h.nregions);
    }

    case kAddMemReg:
    case kRemMemReg: {
        SingleMemRegion r;
        if (!take(p, r))
            return sz(request_name(hdr.request), p.size());
        out.regions.push_back(r.region);
        if (hdr.request == kAddMemReg)
            return want_fds(1);
        // Some front-ends pass the region's fd along with REM_MEM_REG.
        return fds.size() <= 1 ? "" : want_fds(0);
    }

    case kGetInflightFd:
    case kSetInflightFd:
        if (!take(p, out.inflight))
            return sz(request_name(hdr.request), p.size());
        if (out.inflight.num_queues == 0 || out.inflight.num_queues > max_queues)
            return "inflight description names " + std::to_string(out.inflight.num_queues) +
                   " queues";
        if (out.inflight.queue_size == 0 ||
            (out.inflight.queue_size & (out.inflight.queue_size - 1)))
            return "inflight queue size " + std::to_string(out.inflight.queue_size) +
                   " is not a power of two";
        return want_fds(hdr.request == kSetInflightFd ? 1 : 0);

    case kSetLogBase:
        if (!take(p, out.log))
            return sz("SET_LOG_BASE", p.size());
        return want_fds(1);

    case kSetLogFd:
        if (p.size() != 0 && p.size() != 8)
            return sz("SET_LOG_FD", p.size());
        return want_fds(1);

    case kSetDeviceStateFd:
        if (!take(p, out.transfer))
            return sz("SET_DEVICE_STATE_FD", p.size());
        if (out.transfer.direction != kStateSave && out.transfer.direction != kStateLoad)
            return "SET_DEVICE_STATE_FD: unknown direction " +
                   std::to_string(out.transfer.direction);
        if (out.transfer.phase != kPhaseStopped)
            return "SET_DEVICE_STATE_FD: unknown phase " + std::to_string(out.transfer.phase);
        return want_fds(1);

    case kGetConfig:
    case kSetConfig: {
        if (p.size() < sizeof(ConfigHeader))
            return sz(request_name(hdr.request), p.size());
        std::memcpy(&out.config, p.data(), sizeof(ConfigHeader));
        if (out.config.size > 256 || out.config.size != p.size() - sizeof(ConfigHeader))
            return "config access of " + std::to_string(out.config.size) + " bytes is invalid";
        out.config_bytes.assign(p.begin() + sizeof(ConfigHeader), p.end());
        return want_fds(0);
    }

    case kSetBackendReqFd:
        if (p.size() != 0 && p.size() != 8)
            return sz("SET_BACKEND_REQ_FD", p.size());
        return want_fds(1);

    default:
        return std::string("unsupported request ") + std::to_string(hdr.request) + " (" +
               request_name(hdr.request) + ")";
    }
}

std::vector<uint8_t> reply_bytes(uint32_t request, const void *p, size_t n)
{
    std::vector<uint8_t> out(sizeof(MsgHeader) + n);
    MsgHeader h{request, kVersion | kReplyFlag, uint32_t(n)};
    std::memcpy(out.data(), &h, sizeof(h));
    if (n)
        std::memcpy(out.data() + sizeof(h), p, n);
    return out;
}

std::vector<uint8_t> reply_u64(uint32_t request, uint64_t v)
{
    return reply_bytes(request, &v, sizeof(v));
}

} // namespace holdfast::vhost
