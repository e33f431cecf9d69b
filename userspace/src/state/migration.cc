// SPDX-License-Identifier: GPL-2.0
#include "state/migration.h"

#include "state/inode_table.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace holdfast::state {

namespace {

enum Section : uint32_t {
    kSecSource = 1,
    kSecInit = 2,
    kSecInode = 3,
    kSecHandle = 4,
    kSecHandover = 5,
    kSecPath = 6,
    kSecEnd = 0xffffffffu,
};

constexpr uint32_t kHeaderSize = 16;
constexpr uint32_t kSourceLen = 32;
constexpr uint32_t kInitLen = 40;
constexpr uint32_t kInodeFixedLen = 64;
constexpr uint32_t kHandleLen = 32;
constexpr uint32_t kEndLen = 8;
constexpr uint32_t kHandoverFixedLen = 8; // pid, count
constexpr uint32_t kLentFdLen = 24;
constexpr uint32_t kPathFixedLen = 16; // node id, length, zero
constexpr uint32_t kKnownInodeFlags = kInodeFdStored;

// FNV-1a: catches truncation and corruption in transit; the stream's
// integrity against a hostile sender comes from validating every field.
uint64_t checksum(std::span<const uint8_t> b)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (uint8_t c : b)
        h = (h ^ c) * 0x100000001b3ULL;
    return h;
}

class Writer {
  public:
    template <class T> void put(T v)
    {
        const auto *p = reinterpret_cast<const uint8_t *>(&v);
        out_.insert(out_.end(), p, p + sizeof(T));
    }
    void bytes(const std::vector<uint8_t> &b) { out_.insert(out_.end(), b.begin(), b.end()); }
    void section(uint32_t type, uint32_t len)
    {
        put(type);
        put(len);
    }
    std::vector<uint8_t> &out() { return out_; }

  private:
    std::vector<uint8_t> out_;
};

// Every read is bounds-checked; a short read poisons the reader.
class Reader {
  public:
    explicit Reader(std::span<const uint8_t> in) : in_(in) {}
    template <class T> T get()
    {
        T v{};
        if (in_.size() - pos_ < sizeof(T)) {
            ok_ = false;
            pos_ = in_.size();
            return v;
        }
        std::memcpy(&v, in_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::vector<uint8_t> take(size_t n)
    {
        if (in_.size() - pos_ < n) {
            ok_ = false;
            pos_ = in_.size();
            return {};
        }
        std::vector<uint8_t> v(in_.begin() + long(pos_), in_.begin() + long(pos_ + n));
        pos_ += n;
        return v;
    }
    bool ok() const { return ok_; }
    size_t pos() const { return pos_; }
    size_t left() const { return in_.size() - pos_; }

  private:
    std::span<const uint8_t> in_;
    size_t pos_ = 0;
    bool ok_ = true;
};

bool valid_type(uint32_t mode)
{
    switch (mode) {
    case S_IFREG:
    case S_IFDIR:
    case S_IFLNK:
    case S_IFCHR:
    case S_IFBLK:
    case S_IFIFO:
    case S_IFSOCK:
        return true;
    default:
        return false;
    }
}

std::string at(const char *what, uint64_t id, const std::string &why)
{
    return std::string(what) + " " + std::to_string(id) + ": " + why;
}

std::string check_inode(const MigratedInode &n, uint64_t prev, const MigrationLimits &lim)
{
    if (n.nodeid <= prev)
        return at("inode", n.nodeid, "node ids are not strictly ascending");
    if (n.nodeid >= lim.inode_capacity)
        return at("inode", n.nodeid,
                  "beyond this server's --max-inodes (" + std::to_string(lim.inode_capacity) + ")");
    if (!valid_type(n.mode))
        return at("inode", n.nodeid, "invalid file type");
    if (n.flags & ~kKnownInodeFlags)
        return at("inode", n.nodeid, "unknown flags");
    if (n.nlookup == 0 && n.nodeid != kRootNodeId)
        return at("inode", n.nodeid, "lookup count 0 (the source would have freed it)");
    return "";
}

std::string check_handle(const MigratedHandle &h, uint64_t prev, const MigrationLimits &lim,
                         const std::vector<MigratedInode> &inodes)
{
    if (h.fh <= prev)
        return at("handle", h.fh, "handles are not strictly ascending (or 0)");
    if (h.fh >= lim.handle_capacity)
        return at("handle", h.fh,
                  "beyond this server's --max-handles (" + std::to_string(lim.handle_capacity) +
                      ")");
    if (h.kind != kFile && h.kind != kDir)
        return at("handle", h.fh, "unknown kind");
    auto it = std::lower_bound(inodes.begin(), inodes.end(), h.nodeid,
                               [](const MigratedInode &n, uint64_t id) { return n.nodeid < id; });
    if (it == inodes.end() || it->nodeid != h.nodeid)
        return at("handle", h.fh, "names node id " + std::to_string(h.nodeid) + ", not migrated");
    if ((h.kind == kDir) != (it->mode == S_IFDIR))
        return at("handle", h.fh, "kind does not match its inode's type");
    return "";
}

} // namespace

MigrationState snapshot(Region &r)
{
    MigrationState s;
    RegionHeader &h = r.header();
    s.boot_id = host_boot_id();
    const InodeRecord *inodes = r.inodes();
    s.root_dev = inodes[kRootNodeId].dev;
    s.root_ino = inodes[kRootNodeId].ino;

    const InitRecord &i = h.init;
    s.init.live = i.state.load(std::memory_order_acquire) == kLive;
    s.init.major = i.major;
    s.init.minor = i.minor;
    s.init.max_write = i.max_write;
    s.init.kernel_flags = i.kernel_flags;
    s.init.flags = i.flags;
    s.init.max_readahead = i.max_readahead;
    s.init.max_pages = i.max_pages;

    const uint64_t ihigh = std::min(h.inode_high.load(std::memory_order_acquire), h.inode_capacity);
    for (uint64_t id = kRootNodeId; id < ihigh; id++) {
        const InodeRecord &rec = inodes[id];
        if (rec.state.load(std::memory_order_acquire) != kLive)
            continue;
        MigratedInode n;
        n.nodeid = id;
        n.generation = rec.generation;
        n.flags = rec.flags;
        n.nlookup = rec.nlookup.load(std::memory_order_relaxed);
        n.dev = rec.dev;
        n.ino = rec.ino;
        n.mnt_id = rec.mnt_id;
        n.mode = rec.mode;
        n.handle_type = rec.handle_type;
        uint32_t hb = std::min(rec.handle_bytes, kMaxFileHandle);
        n.handle.assign(rec.handle, rec.handle + hb);
        s.inodes.push_back(std::move(n));
    }
    const HandleRecord *handles = r.handles();
    const uint64_t hhigh =
        std::min(h.handle_high.load(std::memory_order_acquire), h.handle_capacity);
    for (uint64_t fh = 1; fh < hhigh; fh++) {
        const HandleRecord &rec = handles[fh];
        if (rec.state.load(std::memory_order_acquire) != kLive)
            continue;
        s.handles.push_back({fh, rec.kind, rec.open_flags, rec.nodeid, rec.opened_by});
    }
    return s;
}

std::vector<uint8_t> encode(const MigrationState &s)
{
    Writer w;
    w.put(kMigrationMagic);
    w.put(kMigrationVersion);
    w.put(kHeaderSize);

    w.section(kSecSource, kSourceLen);
    for (uint8_t b : s.boot_id)
        w.put(b);
    w.put(s.root_dev);
    w.put(s.root_ino);

    w.section(kSecInit, kInitLen);
    w.put(uint32_t(s.init.live));
    w.put(s.init.major);
    w.put(s.init.minor);
    w.put(s.init.max_write);
    w.put(s.init.kernel_flags);
    w.put(s.init.flags);
    w.put(s.init.max_readahead);
    w.put(s.init.max_pages);
    w.put(uint16_t(0));

    for (const MigratedInode &n : s.inodes) {
        w.section(kSecInode, kInodeFixedLen + uint32_t(n.handle.size()));
        w.put(n.nodeid);
        w.put(n.generation);
        w.put(n.flags);
        w.put(n.nlookup);
        w.put(n.dev);
        w.put(n.ino);
        w.put(n.mnt_id);
        w.put(n.mode);
        w.put(n.handle_type);
        w.put(uint32_t(n.handle.size()));
        w.put(uint32_t(0));
        w.bytes(n.handle);
    }
    for (const MigratedHandle &h : s.handles) {
        w.section(kSecHandle, kHandleLen);
        w.put(h.fh);
        w.put(h.kind);
        w.put(h.open_flags);
        w.put(h.nodeid);
        w.put(h.opened_by);
    }
    for (const MigratedPath &p : s.paths) {
        w.section(kSecPath, kPathFixedLen + uint32_t(p.path.size()));
        w.put(p.nodeid);
        w.put(uint32_t(p.path.size()));
        w.put(uint32_t(0));
        w.bytes(std::vector<uint8_t>(p.path.begin(), p.path.end()));
    }
    if (s.handover) {
        const auto &fds = s.handover->fds;
        w.section(kSecHandover, kHandoverFixedLen + kLentFdLen * uint32_t(fds.size()));
        w.put(s.handover->pid);
        w.put(uint32_t(fds.size()));
        for (const LentFd &f : fds) {
            w.put(uint8_t(f.kind));
            w.put(uint8_t(0));
            w.put(uint16_t(0));
            w.put(f.fd);
            w.put(f.id);
            w.put(f.owner);
        }
    }
    uint64_t sum = checksum(w.out());
    w.section(kSecEnd, kEndLen);
    w.put(sum);
    return std::move(w.out());
}

std::string decode(std::span<const uint8_t> in, const MigrationLimits &lim, MigrationState &out)
{
    out = MigrationState{};
    if (in.size() > kMaxMigrationStream)
        return "state stream of " + std::to_string(in.size()) + " bytes is larger than any real one";
    Reader r(in);
    if (r.get<uint64_t>() != kMigrationMagic || !r.ok())
        return "not a holdfast state stream (bad magic)";
    uint32_t version = r.get<uint32_t>();
    uint32_t header_size = r.get<uint32_t>();
    if (!r.ok())
        return "state stream truncated in its header";
    if (version != kMigrationVersion)
        return "state stream version " + std::to_string(version) + ", this server reads " +
               std::to_string(kMigrationVersion);
    if (header_size != kHeaderSize)
        return "state stream header size " + std::to_string(header_size) + " is invalid";

    bool have_source = false, have_init = false, ended = false;
    uint64_t prev_inode = 0, prev_fh = 0;
    while (!ended) {
        const size_t sec_start = r.pos();
        uint32_t type = r.get<uint32_t>();
        uint32_t len = r.get<uint32_t>();
        if (!r.ok())
            return "state stream truncated (no end marker)";
        if (len > r.left())
            return "state stream truncated inside a section (type " + std::to_string(type) + ")";
        auto want = [&](uint32_t n, const char *what) -> std::string {
            return len == n ? ""
                            : std::string(what) + " section of " + std::to_string(len) +
                                  " bytes, expected " + std::to_string(n);
        };
        std::string e;
        switch (type) {
        case kSecSource:
            if (have_source)
                return "state stream has two source sections";
            if (!(e = want(kSourceLen, "source")).empty())
                return e;
            for (auto &b : out.boot_id)
                b = r.get<uint8_t>();
            out.root_dev = r.get<uint64_t>();
            out.root_ino = r.get<uint64_t>();
            have_source = true;
            break;
        case kSecInit: {
            if (have_init)
                return "state stream has two INIT sections";
            if (!(e = want(kInitLen, "INIT")).empty())
                return e;
            uint32_t live = r.get<uint32_t>();
            if (live > 1)
                return "INIT section: invalid state";
            out.init.live = live;
            out.init.major = r.get<uint32_t>();
            out.init.minor = r.get<uint32_t>();
            out.init.max_write = r.get<uint32_t>();
            out.init.kernel_flags = r.get<uint64_t>();
            out.init.flags = r.get<uint64_t>();
            out.init.max_readahead = r.get<uint32_t>();
            out.init.max_pages = r.get<uint16_t>();
            if (r.get<uint16_t>() != 0)
                return "INIT section: padding is not zero";
            if (out.init.live && out.init.major != 7)
                return "INIT section: FUSE major " + std::to_string(out.init.major);
            have_init = true;
            break;
        }
        case kSecInode: {
            if (len < kInodeFixedLen)
                return "inode section of " + std::to_string(len) + " bytes is too short";
            MigratedInode n;
            n.nodeid = r.get<uint64_t>();
            n.generation = r.get<uint32_t>();
            n.flags = r.get<uint32_t>();
            n.nlookup = r.get<uint64_t>();
            n.dev = r.get<uint64_t>();
            n.ino = r.get<uint64_t>();
            n.mnt_id = r.get<uint64_t>();
            n.mode = r.get<uint32_t>();
            n.handle_type = r.get<int32_t>();
            uint32_t hb = r.get<uint32_t>();
            uint32_t pad = r.get<uint32_t>();
            if (hb > kMaxFileHandle || len != kInodeFixedLen + hb)
                return at("inode", n.nodeid, "file handle of " + std::to_string(hb) + " bytes");
            if (pad != 0)
                return at("inode", n.nodeid, "padding is not zero");
            n.handle = r.take(hb);
            if (!(e = check_inode(n, prev_inode, lim)).empty())
                return e;
            prev_inode = n.nodeid;
            out.inodes.push_back(std::move(n));
            break;
        }
        case kSecHandle: {
            if (!(e = want(kHandleLen, "handle")).empty())
                return e;
            MigratedHandle h;
            h.fh = r.get<uint64_t>();
            h.kind = r.get<uint32_t>();
            h.open_flags = r.get<uint32_t>();
            h.nodeid = r.get<uint64_t>();
            h.opened_by = r.get<uint64_t>();
            if (!(e = check_handle(h, prev_fh, lim, out.inodes)).empty())
                return e;
            prev_fh = h.fh;
            out.handles.push_back(h);
            break;
        }
        case kSecPath: {
            if (len < kPathFixedLen)
                return "path section of " + std::to_string(len) + " bytes is too short";
            MigratedPath p;
            p.nodeid = r.get<uint64_t>();
            uint32_t n = r.get<uint32_t>();
            uint32_t pad = r.get<uint32_t>();
            if (n == 0 || n > kMaxMigratedPath || len != kPathFixedLen + n)
                return at("path", p.nodeid, "length " + std::to_string(n));
            if (pad != 0)
                return at("path", p.nodeid, "padding is not zero");
            auto b = r.take(n);
            p.path.assign(b.begin(), b.end());
            if (!valid_migrated_path(p.path))
                return at("path", p.nodeid, "not a relative path inside the shared directory");
            if (p.nodeid <= kRootNodeId || (!out.paths.empty() && p.nodeid <= out.paths.back().nodeid))
                return at("path", p.nodeid, "node ids out of order");
            // Paths come after the inodes: they must name one.
            auto it = std::lower_bound(
                out.inodes.begin(), out.inodes.end(), p.nodeid,
                [](const MigratedInode &a, uint64_t id) { return a.nodeid < id; });
            if (it == out.inodes.end() || it->nodeid != p.nodeid)
                return at("path", p.nodeid, "no such migrated inode");
            out.paths.push_back(std::move(p));
            break;
        }
        case kSecHandover: {
            if (out.handover)
                return "state stream has two handover sections";
            if (len < kHandoverFixedLen)
                return "handover section of " + std::to_string(len) + " bytes is too short";
            MigrationHandover hv;
            hv.pid = r.get<uint32_t>();
            uint32_t n = r.get<uint32_t>();
            if (hv.pid == 0 || hv.pid > (1u << 22))
                return "handover section: pid " + std::to_string(hv.pid);
            if (uint64_t(n) * kLentFdLen + kHandoverFixedLen != len)
                return "handover section of " + std::to_string(len) + " bytes for " +
                       std::to_string(n) + " fds";
            hv.fds.reserve(n);
            for (uint32_t i = 0; i < n; i++) {
                LentFd f;
                f.kind = char(r.get<uint8_t>());
                const uint8_t pad8 = r.get<uint8_t>();
                const uint16_t pad16 = r.get<uint16_t>();
                f.fd = r.get<int32_t>();
                f.id = r.get<uint64_t>();
                f.owner = r.get<uint64_t>();
                if ((f.kind != 'i' && f.kind != 'h' && f.kind != 'l') || pad8 || pad16 ||
                    f.fd < 0 || f.id == 0 || (f.kind != 'l' && f.owner))
                    return "handover section: fd entry " + std::to_string(i) + " is invalid";
                hv.fds.push_back(f);
            }
            out.handover = std::move(hv);
            break;
        }
        case kSecEnd: {
            if (!(e = want(kEndLen, "end")).empty())
                return e;
            uint64_t sum = r.get<uint64_t>();
            if (sum != checksum(in.first(sec_start)))
                return "state stream checksum mismatch (corrupted in transit)";
            if (r.left())
                return std::to_string(r.left()) + " bytes after the end of the state stream";
            ended = true;
            break;
        }
        default:
            return "unknown section type " + std::to_string(type) + " in the state stream";
        }
        if (!r.ok())
            return "state stream truncated";
    }
    if (!have_source || !have_init)
        return "state stream lacks its source or INIT section";
    if (out.inodes.empty() || out.inodes.front().nodeid != kRootNodeId ||
        out.inodes.front().mode != S_IFDIR)
        return "state stream lacks the root directory";
    if (out.inodes.front().dev != out.root_dev || out.inodes.front().ino != out.root_ino)
        return "state stream: the root record contradicts the source section";
    return "";
}

bool valid_migrated_path(std::string_view p)
{
    if (p.empty() || p.size() > kMaxMigratedPath || p.front() == '/' || p.back() == '/')
        return false;
    if (p.find('\0') != std::string_view::npos)
        return false;
    size_t start = 0;
    while (start <= p.size()) {
        size_t end = p.find('/', start);
        if (end == std::string_view::npos)
            end = p.size();
        std::string_view c = p.substr(start, end - start);
        if (c.empty() || c == "." || c == "..")
            return false;
        start = end + 1;
    }
    return true;
}

std::string install(const MigrationState &s, Region &r)
{
    RegionHeader &h = r.header();
    InodeRecord *inodes = r.inodes();
    HandleRecord *handles = r.handles();
    const InodeRecord &root = inodes[kRootNodeId];
    // With paths (find-paths) the destination may serve a copy of the
    // directory, on another host or file system: its root is its own.
    const bool same_root = root.dev == s.root_dev && root.ino == s.root_ino;
    if (!same_root && s.paths.empty())
        return "the migrated state describes another shared directory (root " +
               std::to_string(s.root_dev) + ":" + std::to_string(s.root_ino) + ", ours " +
               std::to_string(root.dev) + ":" + std::to_string(root.ino) + ")";
    if (h.inode_high.load(std::memory_order_acquire) != kRootNodeId + 1 ||
        h.handle_high.load(std::memory_order_acquire) != 1)
        return "this server has already served requests; it cannot take migrated state";
    if (!s.inodes.empty() && s.inodes.back().nodeid >= h.inode_capacity)
        return "the migrated state needs more inode slots than this server has";
    if (!s.handles.empty() && s.handles.back().fh >= h.handle_capacity)
        return "the migrated state needs more handle slots than this server has";

    // Publish each record the way the tables do: fields first, then kLive
    // with release ordering.
    for (const MigratedInode &n : s.inodes) {
        InodeRecord &rec = inodes[n.nodeid];
        if (n.nodeid == kRootNodeId && !same_root) {
            rec.nlookup.store(n.nlookup, std::memory_order_relaxed);
            continue;
        }
        rec.generation = n.generation;
        rec.nlookup.store(n.nlookup, std::memory_order_relaxed);
        rec.dev = n.dev;
        rec.ino = n.ino;
        rec.mnt_id = n.mnt_id;
        rec.mode = n.mode;
        rec.handle_type = n.handle_type;
        rec.handle_bytes = uint32_t(n.handle.size());
        if (!n.handle.empty())
            std::memcpy(rec.handle, n.handle.data(), n.handle.size());
        // An fd the source kept in its store is not ours: the inode must
        // resolve by file handle here (or not at all).
        rec.flags = n.flags & ~kInodeFdStored;
        rec.state.store(kLive, std::memory_order_release);
    }
    for (const MigratedHandle &m : s.handles) {
        HandleRecord &rec = handles[m.fh];
        rec.kind = m.kind;
        rec.nodeid = m.nodeid;
        rec.open_flags = m.open_flags;
        rec.flags.store(0, std::memory_order_relaxed);
        rec.opened_by = m.opened_by;
        rec.backing_id = 0; // vhost-user never passes files through
        rec.state.store(kLive, std::memory_order_release);
    }
    InitRecord &i = h.init;
    i.major = s.init.major;
    i.minor = s.init.minor;
    i.max_write = s.init.max_write;
    i.kernel_flags = s.init.kernel_flags;
    i.flags = s.init.flags;
    i.max_readahead = s.init.max_readahead;
    i.max_pages = s.init.max_pages;
    i.state.store(s.init.live ? kLive : kFree, std::memory_order_release);
    h.inode_high.store(s.inodes.empty() ? kRootNodeId + 1 : s.inodes.back().nodeid + 1,
                       std::memory_order_release);
    h.handle_high.store(s.handles.empty() ? 1 : s.handles.back().fh + 1,
                        std::memory_order_release);
    return "";
}

std::array<uint8_t, 16> host_boot_id()
{
    std::array<uint8_t, 16> id{};
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return id;
    char buf[64] = {};
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    size_t k = 0;
    for (ssize_t i = 0; i < n && k < 32; i++) {
        char c = buf[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            continue;
        id[k / 2] = uint8_t(id[k / 2] << 4 | v);
        k++;
    }
    return id;
}

} // namespace holdfast::state
