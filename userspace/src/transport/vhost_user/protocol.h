// SPDX-License-Identifier: GPL-2.0
// The vhost-user wire protocol (QEMU docs/interop/vhost-user.rst): message
// numbers, feature bits, payload layouts, and a parser that validates one
// message (header + payload + passed fds) before anything acts on it.
//
// Every message comes from the front-end (the VMM), which we treat as
// hostile: a payload of the wrong size for its request, a bad index, too
// many fds, or an unknown request is refused here with a reason, and the
// caller drops the connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace holdfast::vhost {

// Front-end requests we know about (ids from the spec).
enum Request : uint32_t {
    kNone = 0,
    kGetFeatures = 1,
    kSetFeatures = 2,
    kSetOwner = 3,
    kResetOwner = 4,
    kSetMemTable = 5,
    kSetLogBase = 6,
    kSetLogFd = 7,
    kSetVringNum = 8,
    kSetVringAddr = 9,
    kSetVringBase = 10,
    kGetVringBase = 11,
    kSetVringKick = 12,
    kSetVringCall = 13,
    kSetVringErr = 14,
    kGetProtocolFeatures = 15,
    kSetProtocolFeatures = 16,
    kGetQueueNum = 17,
    kSetVringEnable = 18,
    kSendRarp = 19,
    kNetSetMtu = 20,
    kSetBackendReqFd = 21,
    kIotlbMsg = 22,
    kSetVringEndian = 23,
    kGetConfig = 24,
    kSetConfig = 25,
    kGetInflightFd = 31,
    kSetInflightFd = 32,
    kResetDevice = 34,
    kVringKick = 35,
    kGetMaxMemSlots = 36,
    kAddMemReg = 37,
    kRemMemReg = 38,
    kSetStatus = 39,
    kGetStatus = 40,
    kSetDeviceStateFd = 42,
    kCheckDeviceState = 43,
    kGetShmemConfig = 44,
    kMaxRequest = 64,
};
const char *request_name(uint32_t req);

// Header flags.
constexpr uint32_t kVersion = 0x1;
constexpr uint32_t kVersionMask = 0x3;
constexpr uint32_t kReplyFlag = 1u << 2;
constexpr uint32_t kNeedReply = 1u << 3;

// Virtio / vhost feature bits we care about.
constexpr uint64_t kFNotifyOnEmpty = 1ull << 24;
constexpr uint64_t kFIndirectDesc = 1ull << 28;
constexpr uint64_t kFEventIdx = 1ull << 29;
constexpr uint64_t kFProtocolFeatures = 1ull << 30;
constexpr uint64_t kFVersion1 = 1ull << 32;
constexpr uint64_t kFLogAll = 1ull << 26; // VHOST_F_LOG_ALL

// Protocol feature bits.
constexpr uint64_t kPMq = 1ull << 0;
constexpr uint64_t kPLogShmfd = 1ull << 1;
constexpr uint64_t kPReplyAck = 1ull << 3;
constexpr uint64_t kPBackendReq = 1ull << 5;
constexpr uint64_t kPConfig = 1ull << 9;
constexpr uint64_t kPInflightShmfd = 1ull << 12;
constexpr uint64_t kPResetDevice = 1ull << 13;
constexpr uint64_t kPInbandNotifications = 1ull << 14;
constexpr uint64_t kPConfigureMemSlots = 1ull << 15;
constexpr uint64_t kPStatus = 1ull << 16;
constexpr uint64_t kPDeviceState = 1ull << 19;
constexpr uint64_t kPShmem = 1ull << 20; // VIRTIO shared memory regions (SHMEM_MAP/UNMAP)

// Limits.
constexpr size_t kMaxFds = 8;             // SCM_RIGHTS per message (spec)
constexpr uint32_t kMaxMemRegions = 8;    // SET_MEM_TABLE
constexpr uint32_t kMaxQueueSize = 32768; // split ring
constexpr size_t kMaxPayload = 4096;      // nothing legitimate is larger
constexpr uint32_t kVringIndexMask = 0xff;
constexpr uint64_t kVringNoFd = 1ull << 8;
constexpr uint32_t kVringFLog = 1; // VringAddr.flags: log used-ring writes

#pragma pack(push, 1)
struct MsgHeader {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
};
struct VringState {
    uint32_t index;
    uint32_t num;
};
struct VringAddr {
    uint32_t index;
    uint32_t flags;
    uint64_t desc_user_addr;
    uint64_t used_user_addr;
    uint64_t avail_user_addr;
    uint64_t log_guest_addr;
};
struct MemRegionDesc {
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr;
    uint64_t mmap_offset;
};
struct MemTableHeader {
    uint32_t nregions;
    uint32_t padding;
};
struct SingleMemRegion {
    uint64_t padding;
    MemRegionDesc region;
};
struct InflightDesc {
    uint64_t mmap_size;
    uint64_t mmap_offset;
    uint16_t num_queues;
    uint16_t queue_size;
};
struct LogDesc {
    uint64_t mmap_size;
    uint64_t mmap_offset;
};
struct DeviceStateParams {
    uint32_t direction; // kStateSave | kStateLoad
    uint32_t phase;     // kPhaseStopped is the only one
};
struct ConfigHeader {
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
};
// GET_SHMEM_CONFIG's reply: the size of each VIRTIO shared memory region,
// indexed by shmid; `nregions` counts the non-zero ones.
constexpr size_t kMaxShmemRegions = 256;
struct ShmemConfig {
    uint32_t nregions;
    uint32_t padding;
    uint64_t memory_sizes[kMaxShmemRegions];
};
#pragma pack(pop)

// SET_DEVICE_STATE_FD
constexpr uint32_t kStateSave = 0;
constexpr uint32_t kStateLoad = 1;
constexpr uint32_t kPhaseStopped = 0;
// Its reply: bits 0-7 an error (0: success); bit 8 "no fd in the reply".
constexpr uint64_t kStateNoFd = 1ull << 8;

static_assert(sizeof(MsgHeader) == 12);
static_assert(sizeof(VringAddr) == 40);
static_assert(sizeof(MemRegionDesc) == 32);
static_assert(sizeof(InflightDesc) == 20);
static_assert(sizeof(ShmemConfig) == 2056);

// One validated message.  Only the fields its request uses are meaningful.
struct Message {
    uint32_t request = kNone;
    uint32_t flags = 0;
    uint64_t u64 = 0;
    VringState state{};
    VringAddr addr{};
    std::vector<MemRegionDesc> regions;
    InflightDesc inflight{};
    ConfigHeader config{};
    std::vector<uint8_t> config_bytes;
    DeviceStateParams transfer{};
    LogDesc log{};
    std::vector<int> fds; // owned by the caller (closed unless taken)

    bool need_reply() const { return flags & kNeedReply; }
};

// Validates `payload` (exactly hdr.size bytes) and the fds that came with it
// for `hdr.request`, filling `out` (the fds are copied into out.fds; the
// caller still owns and must close what the handler does not take).
// `max_queues` bounds every vring index.  Returns "" or what is wrong.
std::string parse(const MsgHeader &hdr, std::span<const uint8_t> payload,
                  std::span<const int> fds, uint32_t max_queues, Message &out);

// A reply: header + payload bytes, ready for sendmsg.
std::vector<uint8_t> reply_u64(uint32_t request, uint64_t v);
std::vector<uint8_t> reply_bytes(uint32_t request, const void *p, size_t n);

} // namespace holdfast::vhost
