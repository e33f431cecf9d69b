// SPDX-License-Identifier: GPL-2.0
#include "state/region.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace holdfast::state {

namespace {
size_t align_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }

// The identity every area after the tables starts with.
template <class Area>
void stamp(Area &a, uint64_t magic, uint32_t version, uint32_t record_size, uint64_t capacity)
{
    a.magic = magic;
    a.version = version;
    a.record_size = record_size;
    a.capacity = capacity;
}

std::runtime_error sys_error(const char *what)
{
    return std::runtime_error(std::string(what) + ": " + strerror(errno));
}
} // namespace

Region Region::create(const Geometry &g)
{
    size_t inode_off = align_up(sizeof(RegionHeader), 4096);
    size_t handle_off = align_up(inode_off + g.inode_capacity * sizeof(InodeRecord), 4096);
    size_t journal_off = align_up(handle_off + g.handle_capacity * sizeof(HandleRecord), 4096);
    size_t uring_off = align_up(journal_off + g.journal_capacity * sizeof(JournalRecord), 4096);
    size_t dax_off = align_up(uring_off + g.uring_capacity * sizeof(UringEntryRecord), 4096);
    size_t dax_bytes =
        g.dax_window ? sizeof(DaxArea) + dax_capacity(g.dax_window) * sizeof(DaxRecord) : 0;
    // Last, so that every table before it is where it was without it.
    size_t refs_off = align_up(dax_off + dax_bytes, 4096);
    size_t size = align_up(refs_off + refs_bytes(g.journal_capacity), 4096);

    Fd fd(memfd_create("holdfast-state", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd)
        throw sys_error("memfd_create");
    if (ftruncate(fd.get(), size) < 0)
        throw sys_error("ftruncate state region");
    // The layout is fixed for the region's life: nobody may shrink it under
    // a mapping (that would SIGBUS every server that has it mapped).
    if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
        throw sys_error("seal state region");
    void *base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (base == MAP_FAILED)
        throw sys_error("mmap state region");

    Region r(std::move(fd), base, size);
    RegionHeader &h = r.header();
    h.magic = kMagic;
    h.version = kLayoutVersion;
    h.header_size = sizeof(RegionHeader);
    h.region_size = size;
    h.inode_offset = inode_off;
    h.inode_capacity = g.inode_capacity;
    h.inode_record_size = sizeof(InodeRecord);
    h.handle_record_size = sizeof(HandleRecord);
    h.handle_offset = handle_off;
    h.handle_capacity = g.handle_capacity;
    h.journal_offset = journal_off;
    h.journal_capacity = g.journal_capacity;
    h.journal_record_size = sizeof(JournalRecord);
    if (g.uring_capacity) {
        h.uring_offset = uring_off;
        h.uring_capacity = g.uring_capacity;
        h.uring_record_size = sizeof(UringEntryRecord);
    }
    if (g.dax_window) {
        h.dax_offset = dax_off;
        h.dax_bytes = dax_bytes;
        DaxArea *a = r.dax_area();
        stamp(*a, kDaxMagic, kDaxVersion, sizeof(DaxRecord), dax_capacity(g.dax_window));
        a->window_size = g.dax_window;
        a->page_shift = kDaxPageShift;
        a->high.store(0, std::memory_order_relaxed);
    }
    h.refs_offset = refs_off;
    RefArea *ra = r.ref_area();
    stamp(*ra, kRefsMagic, kRefsVersion, sizeof(RefList), g.journal_capacity);
    ra->per_list = kRefsPerList;
    ra->next_seq.store(1, std::memory_order_relaxed);
    h.inode_high.store(2, std::memory_order_relaxed);
    h.handle_high.store(1, std::memory_order_relaxed);
    h.attach_generation.store(1, std::memory_order_release);
    return r;
}

Region Region::attach(Fd fd)
{
    struct stat st;
    if (fstat(fd.get(), &st) < 0)
        throw sys_error("stat state region");
    size_t size = size_t(st.st_size);
    if (size < sizeof(RegionHeader))
        throw std::runtime_error("state region is " + std::to_string(size) +
                                 " bytes, smaller than its header: not a holdfast region");
    void *base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (base == MAP_FAILED)
        throw sys_error("mmap state region");
    Region r(std::move(fd), base, size);
    const RegionHeader &h = r.header();
    auto bad = [](const std::string &why) {
        return std::runtime_error("refusing state region: " + why);
    };
    if (h.magic != kMagic)
        throw bad("bad magic (not a holdfast state region)");
    if (h.version != kLayoutVersion)
        throw bad("layout version " + std::to_string(h.version) + ", this server reads " +
                  std::to_string(kLayoutVersion));
    if (h.header_size != sizeof(RegionHeader) || h.inode_record_size != sizeof(InodeRecord) ||
        h.handle_record_size != sizeof(HandleRecord) ||
        h.journal_record_size != sizeof(JournalRecord))
        throw bad("record sizes differ from this server's layout");
    if (h.region_size != size)
        throw bad("header says " + std::to_string(h.region_size) + " bytes, memfd has " +
                  std::to_string(size));
    // Every table must lie inside the mapping, in order, without overflow.
    auto table_ok = [&](uint64_t off, uint64_t cap, uint64_t rec, uint64_t after) {
        if (off % 4096 || off < after || off > size || cap == 0 ||
            cap > (uint64_t(1) << 40) / rec)
            return false;
        return cap * rec <= size - off; // no sum that could wrap

    };
    if (!table_ok(h.inode_offset, h.inode_capacity, sizeof(InodeRecord), sizeof(RegionHeader)) ||
        !table_ok(h.handle_offset, h.handle_capacity, sizeof(HandleRecord),
                  h.inode_offset + h.inode_capacity * sizeof(InodeRecord)) ||
        !table_ok(h.journal_offset, h.journal_capacity, sizeof(JournalRecord),
                  h.handle_offset + h.handle_capacity * sizeof(HandleRecord)))
        throw bad("table offsets or capacities out of bounds");
    // The ring entry table is optional (offset 0: a region from before it).
    if (h.uring_offset != 0 &&
        (h.uring_record_size != sizeof(UringEntryRecord) ||
         !table_ok(h.uring_offset, h.uring_capacity, sizeof(UringEntryRecord),
                   h.journal_offset + h.journal_capacity * sizeof(JournalRecord))))
        throw bad("io_uring entry table out of bounds");
    // The DAX table is optional too; its records are checked by
    // DaxTable::recover().
    if (h.dax_offset != 0) {
        uint64_t after = h.uring_offset
                             ? h.uring_offset + h.uring_capacity * sizeof(UringEntryRecord)
                             : h.journal_offset + h.journal_capacity * sizeof(JournalRecord);
        if (h.dax_offset % 4096 || h.dax_offset < after || h.dax_offset > size ||
            h.dax_bytes < sizeof(DaxArea) || h.dax_bytes > size - h.dax_offset)
            throw bad("DAX table out of bounds");
        const DaxArea &a = *r.dax_area();
        if (a.magic != kDaxMagic)
            throw bad("DAX table has a bad magic");
        if (a.version != kDaxVersion || a.record_size != sizeof(DaxRecord) ||
            a.page_shift != kDaxPageShift)
            throw bad("DAX table version " + std::to_string(a.version) + " (record size " +
                      std::to_string(a.record_size) + ", page shift " +
                      std::to_string(a.page_shift) + ") is not this server's");
        if (a.window_size == 0 || a.window_size % kDaxBlock || a.window_size > kDaxMaxWindow)
            throw bad("DAX window size " + std::to_string(a.window_size) + " is invalid");
        if (a.capacity == 0 || a.capacity > (h.dax_bytes - sizeof(DaxArea)) / sizeof(DaxRecord))
            throw bad("DAX table capacity does not fit its area");
        if (a.high.load(std::memory_order_acquire) > a.capacity)
            throw bad("DAX table high-water mark out of range");
    }
    // The READDIRPLUS reference lists are optional too (offset 0: a region
    // from before them); the lists' contents are checked as they are read.
    if (h.refs_offset != 0) {
        uint64_t after = h.journal_offset + h.journal_capacity * sizeof(JournalRecord);
        if (h.dax_offset)
            after = h.dax_offset + h.dax_bytes;
        else if (h.uring_offset)
            after = h.uring_offset + h.uring_capacity * sizeof(UringEntryRecord);
        if (h.refs_offset % 4096 || h.refs_offset < after || h.refs_offset > size ||
            refs_bytes(h.journal_capacity) > size - h.refs_offset)
            throw bad("READDIRPLUS reference lists out of bounds");
        const RefArea &a = *r.ref_area();
        if (a.magic != kRefsMagic)
            throw bad("READDIRPLUS reference lists have a bad magic");
        if (a.version != kRefsVersion || a.record_size != sizeof(RefList) ||
            a.per_list != kRefsPerList)
            throw bad("READDIRPLUS reference lists version " + std::to_string(a.version) +
                      " (record size " + std::to_string(a.record_size) + ", " +
                      std::to_string(a.per_list) + " ids per list) is not this server's");
        if (a.capacity != h.journal_capacity)
            throw bad("READDIRPLUS reference lists do not match the journal's capacity");
    }
    uint64_t ihigh = h.inode_high.load(std::memory_order_acquire);
    uint64_t hhigh = h.handle_high.load(std::memory_order_acquire);
    if (ihigh < 2 || ihigh > h.inode_capacity || hhigh < 1 || hhigh > h.handle_capacity)
        throw bad("high-water marks out of range");
    const InodeRecord &root = r.inodes()[1];
    if (root.state.load(std::memory_order_acquire) != kLive || (root.mode & S_IFMT) != S_IFDIR)
        throw bad("root inode record is not a live directory");
    uint32_t st_init = h.init.state.load(std::memory_order_acquire);
    if (st_init != kFree && st_init != kLive)
        throw bad("INIT record state is corrupt");
    if (st_init == kLive && (h.init.major != 7 || h.init.max_write == 0))
        throw bad("INIT record is corrupt");
    return r;
}

Region::Region(Region &&o) noexcept
    : fd_(std::move(o.fd_)), base_(std::exchange(o.base_, nullptr)), size_(o.size_)
{
}

Region::~Region()
{
    if (base_)
        munmap(base_, size_);
}

InodeRecord *Region::inodes()
{
    return reinterpret_cast<InodeRecord *>(static_cast<char *>(base_) + header().inode_offset);
}

JournalRecord *Region::journal()
{
    return reinterpret_cast<JournalRecord *>(static_cast<char *>(base_) +
                                             header().journal_offset);
}

UringEntryRecord *Region::uring_entries()
{
    if (!header().uring_offset)
        return nullptr;
    return reinterpret_cast<UringEntryRecord *>(static_cast<char *>(base_) + header().uring_offset);
}

uint64_t Region::dax_capacity(uint64_t window)
{
    uint64_t n = window / (64 * 1024);
    return n < 32 ? 32 : n;
}

DaxArea *Region::dax_area()
{
    if (!header().dax_offset)
        return nullptr;
    return reinterpret_cast<DaxArea *>(static_cast<char *>(base_) + header().dax_offset);
}

uint64_t Region::refs_bytes(uint64_t journal_capacity)
{
    return sizeof(RefArea) + journal_capacity * sizeof(RefList);
}

RefArea *Region::ref_area()
{
    if (!header().refs_offset)
        return nullptr;
    return reinterpret_cast<RefArea *>(static_cast<char *>(base_) + header().refs_offset);
}

RefList *Region::ref_lists()
{
    RefArea *a = ref_area();
    return a ? reinterpret_cast<RefList *>(a + 1) : nullptr;
}

HandleRecord *Region::handles()
{
    return reinterpret_cast<HandleRecord *>(static_cast<char *>(base_) + header().handle_offset);
}

} // namespace holdfast::state
