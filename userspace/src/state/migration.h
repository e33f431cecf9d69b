// SPDX-License-Identifier: GPL-2.0
// The back-end state a migration carries from one holdfastd to another
// (vhost-user SET_DEVICE_STATE_FD): what the guest's FUSE connection
// already knows of us, i.e. the INIT parameters, every node id with its
// lookup count and file handle, and every open file handle.  A snapshot of
// the state region, in a versioned wire format that does not depend on
// the region's in-memory layout (Documentation/migration.rst).
//
// The stream comes from another process, possibly through a front-end we
// do not control: decode() checks every length, count and cross-reference
// before anything is installed, and says what is wrong.
#pragma once

#include "state/region.h"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace holdfast::state {

constexpr uint64_t kMigrationMagic = 0x31545247494d4648ULL; // "HFMIGRT1" little-endian
constexpr uint32_t kMigrationVersion = 1;
// Nothing legitimate comes close: 1M inodes with full handles is ~200 MB.
constexpr size_t kMaxMigrationStream = size_t(1) << 30;

struct MigratedInit {
    bool live = false; // INIT had completed on the source
    uint32_t major = 0, minor = 0, max_write = 0, max_readahead = 0;
    uint64_t kernel_flags = 0, flags = 0;
    uint16_t max_pages = 0;
};

struct MigratedInode {
    uint64_t nodeid = 0;
    uint32_t generation = 0;
    uint32_t flags = 0; // InodeFlags of the source
    uint64_t nlookup = 0;
    uint64_t dev = 0, ino = 0, mnt_id = 0;
    uint32_t mode = 0;
    int32_t handle_type = 0;
    std::vector<uint8_t> handle; // empty: the source had no file handle
};

struct MigratedHandle {
    uint64_t fh = 0;
    uint32_t kind = 0;
    uint32_t open_flags = 0;
    uint64_t nodeid = 0;
    uint64_t opened_by = 0;
};

// Same-host fast path: the source's pid and the numbers of the fds it
// holds for inodes ('i', id = node id), open files ('h', id = fh) and lock
// owners ('l', id = node id, owner), which a destination on the same host
// takes with pidfd_getfd(2) instead of opening everything again
// (Documentation/migration.rst).  The stream stays complete without it.
struct LentFd {
    char kind = 0;
    int32_t fd = -1;
    uint64_t id = 0;
    uint64_t owner = 0;
};
struct MigrationHandover {
    uint32_t pid = 0;
    std::vector<LentFd> fds;
};

// find-paths: where an inode was on the source, relative to the shared
// directory, for a destination whose file handles mean nothing (another
// host, another file system).  Normalised: no leading '/', no empty, "."
// or ".." components, no NUL.
struct MigratedPath {
    uint64_t nodeid = 0;
    std::string path;
};
constexpr size_t kMaxMigratedPath = 4096;

struct MigrationState {
    std::array<uint8_t, 16> boot_id{}; // the source host's, to tell same-host moves
    uint64_t root_dev = 0, root_ino = 0;
    MigratedInit init;
    std::vector<MigratedInode> inodes; // ascending node ids, root first
    std::vector<MigratedHandle> handles;
    std::optional<MigrationHandover> handover;
    std::vector<MigratedPath> paths; // ascending node ids, each a migrated inode
};

// Whether `p` is a path decode() accepts in a path section.
bool valid_migrated_path(std::string_view p);

// What a destination can take.
struct MigrationLimits {
    uint64_t inode_capacity = 0;
    uint64_t handle_capacity = 0;
};

// Copies every live record out of `r`.  The caller makes sure nothing
// changes them meanwhile (the device is stopped).
MigrationState snapshot(Region &r);

std::vector<uint8_t> encode(const MigrationState &s);

// Parses and validates `in` completely.  Returns "" or what is wrong;
// `out` is only meaningful on success.
std::string decode(std::span<const uint8_t> in, const MigrationLimits &lim, MigrationState &out);

// Writes `s` into `r`, a region that has served nothing yet but its root:
// every record at the slot of its node id, the INIT record, the high-water
// marks.  The root must be the same directory (same device and inode),
// unless the state carries paths: then our root stays, and the other
// records name the source's files until Passthrough::take_migrated()
// finds them here.
// Returns "" or what is wrong (then `r` is unchanged).
std::string install(const MigrationState &s, Region &r);

// This host's boot id (/proc/sys/kernel/random/boot_id), zeros if unknown.
std::array<uint8_t, 16> host_boot_id();

} // namespace holdfast::state
