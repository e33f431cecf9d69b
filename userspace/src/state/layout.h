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

enum InodeFlags : uint32_t {
    // The O_PATH fd is kept in the fd store (name "i<nodeid>"): the inode
    // cannot be reopened by file handle (unlinked, O_TMPFILE, no handles).
    kInodeFdStored = 1u << 0,
};

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
    uint32_t flags;        // InodeFlags
    uint8_t handle[kMaxFileHandle];
    uint64_t reserved[1];
};
static_assert(sizeof(InodeRecord) == 192);

enum HandleKind : uint32_t { kFile = 1, kDir = 2 };

enum HandleFlags : uint32_t {
    // The open file itself is kept in the fd store (name "h<fh>"): it holds
    // flock locks, or its inode cannot be reopened.
    kHandleFdStored = 1u << 0,
};

struct HandleRecord {
    std::atomic<uint32_t> state;
    uint32_t kind;
    uint64_t nodeid;
    uint32_t open_flags; // the flags the host fd was opened with
    std::atomic<uint32_t> flags; // HandleFlags
    uint64_t opened_by;  // unique of the OPEN/CREATE that made it: tells a
                         // reused slot from the handle a request meant
    // Kernel passthrough: the backing id this handle's OPEN reply named (0:
    // none).  A successor needs it to unregister the id at the last RELEASE.
    int32_t backing_id;
    uint32_t reserved;
};
static_assert(sizeof(HandleRecord) == 40);

// Replay journal: one record per worker thread.  A non-idempotent op writes
// `started` before it touches the host and `done` with its result after, so
// a request the kernel resends after a crash is answered from here instead
// of being executed twice.
enum JournalPhase : uint32_t { kJournalEmpty = 0, kJournalStarted = 1, kJournalDone = 2 };

struct JournalRecord {
    std::atomic<uint32_t> phase;
    uint32_t opcode;
    uint64_t unique; // without FUSE_UNIQUE_RESEND
    int32_t error;   // result (0 or -errno), valid when done
    uint32_t u32;    // op-specific: bytes written, open flags
    uint64_t nodeid; // op-specific: the entry's node id
    uint64_t fh;     // op-specific: the new file handle
    uint64_t u64;    // op-specific: file size before an append
};
static_assert(sizeof(JournalRecord) == 48);

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

// FUSE-over-io_uring ring entries.  The entries' buffers live in a second
// memfd (fd store name "uring"), mapped at the same address by every server,
// because the kernel keeps the user addresses an entry was registered with
// and copies a committed reply from them (Documentation/io-uring.rst,
// "Adopting requests in flight").  Entry (q, i) is slot q * depth + i, both
// in that memfd (at q * depth + i times slot_size) and in the table below.
struct UringArea {
    std::atomic<uint32_t> state; // kLive once the fields below describe the memfd
    uint32_t queues;
    uint32_t depth;
    uint32_t pad;
    uint64_t base;        // the address the memfd is mapped at
    uint64_t slot_size;   // bytes per entry: header + rebuild area + payload
    uint64_t payload_cap; // bytes of payload buffer per entry
};
static_assert(sizeof(UringArea) == 40);

// Where a ring entry is, as far as a successor must know.  An entry whose
// buffer holds a request with a commit id other than `committed` was handed
// to the server and never answered; the record says how far serving got.
enum UringEntryState : uint32_t {
    kUringIdle = 0,    // registered or committed: the kernel holds it
    kUringServing = 1, // request taken (req_off/req_len); no reply complete yet
    kUringReplied = 2, // the reply is complete in the buffers; not yet committed
};

struct UringEntryRecord {
    std::atomic<uint32_t> state; // UringEntryState
    uint16_t qid;
    uint16_t saved;                  // payload bytes put_reply() moved to the save area (0..224)
    uint64_t commit_id;              // the request being served (its unique)
    std::atomic<uint64_t> committed; // last commit id whose COMMIT_AND_FETCH went in
    uint32_t req_off;                // the contiguous request, as an offset in the entry's slot
    uint32_t req_len;
};
static_assert(sizeof(UringEntryRecord) == 32);

// virtio-fs DAX mappings: what the guest has mapped into its device's DAX
// window through us (FUSE_SETUPMAPPING), so that a successor can unmap it.
// A DaxArea at RegionHeader.dax_offset, then `capacity` DaxRecords.
// Added within layout version 1 (dax_offset 0: a region without the
// table); the area has a version of its own.
constexpr uint64_t kDaxMagic = 0x3158414454534648ULL; // "HFSTDAX1" little-endian
constexpr uint32_t kDaxVersion = 1;
constexpr uint32_t kDaxPageShift = 12;         // 4 KiB pages
constexpr uint64_t kDaxBlock = 2ULL << 20;     // a window is made of these
constexpr uint64_t kDaxMaxWindow = 1ULL << 40; // 1 TiB

struct DaxArea {
    uint64_t magic;
    uint32_t version;
    uint32_t record_size;
    uint64_t window_size; // bytes in the window the records describe
    uint64_t capacity;    // records
    uint32_t page_shift;  // offsets and lengths are multiples of 1 << this
    uint32_t pad;
    std::atomic<uint64_t> high; // every record at or above this was never used
    uint64_t reserved[2];
};
static_assert(sizeof(DaxArea) == 64);

// A record's state.  Pending and unmapping are uncertain: the request went
// to the front-end and no answer was seen, so the range may be mapped or
// not; whoever touches such a range next unmaps it first.
enum DaxState : uint32_t {
    kDaxFree = 0,
    kDaxLive = 1,      // mapped (the front-end acknowledged SHMEM_MAP)
    kDaxPending = 2,   // SHMEM_MAP sent, not acknowledged
    kDaxUnmapping = 3, // SHMEM_UNMAP sent, not acknowledged
};
enum DaxFlags : uint32_t { kDaxWritable = 1u << 0 };

struct DaxRecord {
    std::atomic<uint32_t> state; // DaxState
    uint32_t flags;              // DaxFlags
    uint64_t win_offset;         // where in the window
    uint64_t len;                // bytes
    uint64_t nodeid;             // the inode mapped (its slot in the inode table)
    uint64_t file_offset;        // the file offset mapped at win_offset
};
static_assert(sizeof(DaxRecord) == 40);

// READDIRPLUS reference lists: one per journal record (list n belongs to
// journal record n), naming the node ids whose nlookup a READDIRPLUS
// counted for the entries of its reply.  If the kernel resends the request
// it never took those references: the resend gives them back first.
// A RefArea at RegionHeader.refs_offset, then `capacity` RefLists.  Added
// within layout version 1 (refs_offset 0: a region without them); the area
// has a version of its own.
constexpr uint64_t kRefsMagic = 0x3146455254534648ULL; // "HFSTREF1" little-endian
constexpr uint32_t kRefsVersion = 1;
// Entries with a node id one READDIRPLUS reply may carry: it ends the
// reply early rather than count more (the kernel asks for the rest).  A
// 4 KiB reply, what kernels before 6.16 ask for, holds at most 25.
constexpr uint32_t kRefsPerList = 128;

struct RefArea {
    uint64_t magic;
    uint32_t version;
    uint32_t record_size; // sizeof(RefList)
    uint64_t capacity;    // lists: the journal's capacity
    uint32_t per_list;    // node ids per list, kRefsPerList
    uint32_t pad;
    std::atomic<uint64_t> next_seq; // the next RefList.seq handed out
    uint64_t reserved[3];
};
static_assert(sizeof(RefArea) == 64);

struct RefList {
    // Taken from RefArea.next_seq when the list is started: of two records
    // of one request, the later one carries the earlier one's references.
    uint64_t seq;
    std::atomic<uint32_t> count; // ids[0, count) are written
    uint32_t pad;
    std::atomic<uint64_t> ids[kRefsPerList]; // 0: given back already
};
static_assert(sizeof(RefList) == 16 + 8 * kRefsPerList);

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
    uint64_t journal_offset;
    uint64_t journal_capacity;
    uint32_t journal_record_size;
    uint32_t pad;
    // Slots below these were used at some point; a restarted server scans
    // only these ranges instead of the whole (mostly untouched) tables.
    std::atomic<uint64_t> inode_high;
    std::atomic<uint64_t> handle_high;
    std::atomic<uint64_t> journal_next; // next journal record a new thread takes
    // FUSE-over-io_uring entries (added within layout version 1: a region
    // with uring_offset 0 has no table, and a server that predates it never
    // reads these fields, which used to be reserved and zero).
    UringArea uring;
    uint64_t uring_offset;
    uint64_t uring_capacity;
    uint32_t uring_record_size;
    uint32_t pad2;
    // DAX mapping table (added within layout version 1; 0: none).
    uint64_t dax_offset;
    uint64_t dax_bytes; // the DaxArea and its records
    // READDIRPLUS reference lists (added within layout version 1; 0: none).
    uint64_t refs_offset;
    uint64_t reserved[1];
};
static_assert(sizeof(RegionHeader) == 256);

} // namespace holdfast::state
