// SPDX-License-Identifier: GPL-2.0
// The state region's on-memory layout.  Everything the kernel can name (node
// ids, file handles, what INIT settled) lives here, in fixed-size records, so
// a new server process can map the region and continue where the old one
// stopped.  This is ABI between server versions: change a record, bump
// kLayoutVersion, and document it in Documentation/state-format.rst.
#pragma once

#include <atomic>
#include <cstdint>

namespace holdfast::state {

constexpr uint64_t kMagic = 0x31545346444c4f48ULL; // "HOLDFST1" little-endian
constexpr uint32_t kLayoutVersion = 1;

// Record states.  A record is published by writing every field first and
// then storing kLive with release ordering; readers load state with acquire.
enum RecordState : uint32_t { kFree = 0, kLive = 1 };

// Largest file handle we keep (MAX_HANDLE_SZ is 128).
constexpr uint32_t kMaxFileHandle = 128;

struct InodeRecord {
    std::atomic<uint32_t> state;
    uint32_t generation; // bumped each time the slot is reused
    std::atomic<uint64_t> nlookup;
    uint64_t dev;
    uint64_t ino;
    uint64_t mnt_id;
    uint32_t mode; // file type bits; a slot never changes type
    int32_t handle_type;
    uint32_t handle_bytes; // 0: no file handle (fs does not support them)
    uint32_t pad;
    uint8_t handle[kMaxFileHandle];
    uint64_t reserved[1];
};
static_assert(sizeof(InodeRecord) == 192);

enum HandleKind : uint32_t { kFile = 1, kDir = 2 };

struct HandleRecord {
    std::atomic<uint32_t> state;
    uint32_t kind;
    uint64_t nodeid;
    uint32_t open_flags; // the flags the host fd was opened with
    uint32_t pad;
    uint64_t reserved[2];
};
static_assert(sizeof(HandleRecord) == 40);

// What INIT settled, so a restarted server answers as the old one did.
struct InitRecord {
    std::atomic<uint32_t> state;
    uint32_t major;
    uint32_t minor;
    uint32_t max_write;
    uint64_t kernel_flags;
    uint64_t flags;
    uint32_t max_readahead;
    uint16_t max_pages;
    uint16_t pad;
};

struct RegionHeader {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t region_size;
    uint64_t inode_offset;
    uint64_t inode_capacity;
    uint32_t inode_record_size;
    uint32_t handle_record_size;
    uint64_t handle_offset;
    uint64_t handle_capacity;
    std::atomic<uint64_t> attach_generation; // bumped by every server that maps it
    InitRecord init;
    uint64_t reserved[16];
};

} // namespace holdfast::state
