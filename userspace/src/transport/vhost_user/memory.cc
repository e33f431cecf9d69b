// SPDX-License-Identifier: GPL-2.0
#include "transport/vhost_user/memory.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace holdfast::vhost {

MemoryTable::Mapping::~Mapping()
{
    if (base)
        munmap(base, len);
}

MemoryTable::~MemoryTable() = default;

namespace {

bool add_overflows(uint64_t a, uint64_t b) { return a + b < a; }

bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

} // namespace

std::string MemoryTable::validate(const std::vector<Region> &r)
{
    for (size_t i = 0; i < r.size(); i++) {
        const Region &x = r[i];
        if (x.size == 0)
            return "memory region " + std::to_string(i) + " is empty";
        if (add_overflows(x.gpa, x.size) || add_overflows(x.uva, x.size))
            return "memory region " + std::to_string(i) + " wraps around the address space";
        for (size_t j = 0; j < i; j++) {
            if (overlaps(x.gpa, x.size, r[j].gpa, r[j].size))
                return "memory regions " + std::to_string(j) + " and " + std::to_string(i) +
                       " overlap in guest-physical space";
            if (overlaps(x.uva, x.size, r[j].uva, r[j].size))
                return "memory regions " + std::to_string(j) + " and " + std::to_string(i) +
                       " overlap in front-end address space";
        }
    }
    return "";
}

namespace {

// Maps one region from its fd; on failure returns nullptr and sets err.
void *map_region(const MemRegionDesc &d, int fd, size_t &map_len, uint8_t *&host,
                 std::string &err)
{
    if (d.memory_size == 0 || add_overflows(d.mmap_offset, d.memory_size)) {
        err = "memory region has a bad size or offset";
        return nullptr;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        err = std::string("memory region fd: ") + strerror(errno);
        return nullptr;
    }
    // A region past the end of its file would fault (SIGBUS) when touched.
    if (S_ISREG(st.st_mode) && uint64_t(st.st_size) < d.mmap_offset + d.memory_size) {
        err = "memory region extends past the end of its fd (" + std::to_string(st.st_size) +
              " bytes)";
        return nullptr;
    }
    if (!S_ISREG(st.st_mode)) {
        err = "memory region fd is not a regular file or memfd";
        return nullptr;
    }
    const uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
    uint64_t aligned = d.mmap_offset & ~(page - 1);
    uint64_t lead = d.mmap_offset - aligned;
    uint64_t len = d.memory_size + lead;
    if (len < d.memory_size || len > uint64_t(SIZE_MAX)) {
        err = "memory region too large";
        return nullptr;
    }
    void *p = mmap(nullptr, size_t(len), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd,
                   off_t(aligned));
    if (p == MAP_FAILED) {
        err = std::string("mmap of a memory region: ") + strerror(errno);
        return nullptr;
    }
    // Guest memory has no place in our core dumps.
    madvise(p, size_t(len), MADV_DONTDUMP);
    map_len = size_t(len);
    host = static_cast<uint8_t *>(p) + lead;
    return p;
}

} // namespace

std::shared_ptr<MemoryTable> MemoryTable::map(const std::vector<MemRegionDesc> &descs,
                                              const std::vector<int> &fds, std::string &err)
{
    if (descs.empty() || descs.size() != fds.size()) {
        err = "memory table needs one fd per region";
        return nullptr;
    }
    std::shared_ptr<MemoryTable> t(new MemoryTable);
    for (const auto &d : descs)
        t->regions_.push_back({d.guest_phys_addr, d.memory_size, d.userspace_addr});
    if (!(err = validate(t->regions_)).empty())
        return nullptr;
    for (size_t i = 0; i < descs.size(); i++) {
        auto m = std::make_shared<Mapping>();
        m->base = map_region(descs[i], fds[i], m->len, t->regions_[i].host, err);
        if (!m->base)
            return nullptr; // what was mapped so far is unmapped by ~Mapping
        t->regions_[i].map_base = m->base;
        t->regions_[i].map_len = m->len;
        t->maps_.push_back(std::move(m));
    }
    return t;
}

std::shared_ptr<MemoryTable> MemoryTable::over(const std::vector<MemRegionDesc> &descs,
                                               const std::vector<uint8_t *> &hosts,
                                               std::string &err)
{
    if (descs.size() != hosts.size()) {
        err = "one host buffer per region";
        return nullptr;
    }
    std::shared_ptr<MemoryTable> t(new MemoryTable);
    for (size_t i = 0; i < descs.size(); i++) {
        t->regions_.push_back(
            {descs[i].guest_phys_addr, descs[i].memory_size, descs[i].userspace_addr, hosts[i]});
        t->maps_.push_back(nullptr);
    }
    if (!(err = validate(t->regions_)).empty())
        return nullptr;
    return t;
}

std::shared_ptr<MemoryTable> MemoryTable::with_added(const MemRegionDesc &d, int fd,
                                                     std::string &err) const
{
    if (regions_.size() >= 509) { // what GET_MAX_MEM_SLOTS would allow at most
        err = "too many memory regions";
        return nullptr;
    }
    std::shared_ptr<MemoryTable> t(new MemoryTable);
    t->regions_ = regions_;
    t->maps_ = maps_;
    t->regions_.push_back({d.guest_phys_addr, d.memory_size, d.userspace_addr});
    if (!(err = validate(t->regions_)).empty())
        return nullptr;
    auto m = std::make_shared<Mapping>();
    m->base = map_region(d, fd, m->len, t->regions_.back().host, err);
    if (!m->base)
        return nullptr;
    t->regions_.back().map_base = m->base;
    t->regions_.back().map_len = m->len;
    t->maps_.push_back(std::move(m));
    return t;
}

std::shared_ptr<MemoryTable> MemoryTable::with_removed(const MemRegionDesc &d,
                                                       std::string &err) const
{
    std::shared_ptr<MemoryTable> t(new MemoryTable);
    bool found = false;
    for (size_t i = 0; i < regions_.size(); i++) {
        const Region &r = regions_[i];
        if (!found && r.gpa == d.guest_phys_addr && r.size == d.memory_size &&
            r.uva == d.userspace_addr) {
            found = true;
            continue;
        }
        t->regions_.push_back(r);
        t->maps_.push_back(maps_[i]);
    }
    if (!found) {
        err = "REM_MEM_REG names no mapped region";
        return nullptr;
    }
    return t;
}

const MemoryTable::Region *MemoryTable::find_gpa(uint64_t gpa) const
{
    for (const Region &r : regions_)
        if (gpa >= r.gpa && gpa - r.gpa < r.size)
            return &r;
    return nullptr;
}

uint8_t *MemoryTable::gpa_ptr(uint64_t gpa, uint64_t len) const
{
    const Region *r = find_gpa(gpa);
    if (!r)
        return nullptr;
    uint64_t off = gpa - r->gpa;
    if (len > r->size - off)
        return nullptr;
    return r->host + off;
}

uint8_t *MemoryTable::uva_ptr(uint64_t uva, uint64_t len) const
{
    for (const Region &r : regions_) {
        if (uva >= r.uva && uva - r.uva < r.size) {
            uint64_t off = uva - r.uva;
            if (len > r.size - off)
                return nullptr;
            return r.host + off;
        }
    }
    return nullptr;
}

bool MemoryTable::gpa_to_iov(uint64_t gpa, uint64_t len, std::vector<iovec> &out,
                             size_t max_iov) const
{
    const size_t start = out.size();
    while (len > 0) {
        const Region *r = find_gpa(gpa);
        if (!r || out.size() >= max_iov) {
            out.resize(start);
            return false;
        }
        uint64_t off = gpa - r->gpa;
        uint64_t n = std::min(len, r->size - off);
        out.push_back({r->host + off, size_t(n)});
        gpa += n; // cannot wrap: n <= r->size - off and gpa + size fits
        len -= n;
    }
    return true;
}

uint64_t MemoryTable::bytes() const
{
    uint64_t n = 0;
    for (const Region &r : regions_)
        n += r.size;
    return n;
}

} // namespace holdfast::vhost
