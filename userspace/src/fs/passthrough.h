// SPDX-License-Identifier: GPL-2.0
// The passthrough filesystem: serves every FUSE op from a host directory.
// The shared directory is a jail: inodes are O_PATH fds opened one component
// at a time with O_NOFOLLOW, and data fds are reopened from those through
// /proc/self/fd, so no request ever resolves a path the client controls.
#pragma once

#include "fdstore/client.h"
#include "fs/backing_ids.h"
#include "fuse/backing.h"
#include "fuse/dax.h"
#include "fuse/filesystem.h"
#include "state/dax_table.h"
#include "state/handle_table.h"
#include "state/inode_table.h"
#include "state/migration.h"
#include "state/journal.h"
#include "util/fd.h"

#include <atomic>
#include <condition_variable>
#include <fcntl.h>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace holdfast::fs {

// Open flags that act only when a file is opened: a second open of an open
// file (a reopen, after a crash or beside an O_DIRECT fd) must not repeat
// them.  (reopen_fd() drops O_NOFOLLOW itself; it is here for clarity.)
inline constexpr int kOnlyAtOpen = O_CREAT | O_EXCL | O_TRUNC | O_TMPFILE | O_NOFOLLOW;

enum class CacheMode { never, metadata, automatic, always };
// Which ops run under the caller's credentials (when switch_creds is on).
//   all          every permission-relevant op: the host kernel checks them.
//   create_only  only ops that create an object (mknod, mkdir, symlink,
//                create, tmpfile), so it gets the caller as owner; everything
//                else runs as the server.  For clients that check permissions
//                themselves with groups we never see (virtio-fs guests mount
//                with default_permissions), as virtiofsd does.
enum class CredsPolicy { all, create_only };
const char *cache_mode_name(CacheMode m);
bool parse_cache_mode(const char *s, CacheMode &out);
// Which regular files a guest mounted with dax=inode maps through the DAX
// window: those whose attributes carry FUSE_ATTR_DAX (fs/dax.cc).
//   flag      the host file's own per-file DAX attribute (FS_XFLAG_DAX,
//             chattr +x): the signal Documentation/filesystems/dax.rst
//             gives for ext4 and xfs, and for a virtio-fs server to follow.
//   all       every regular file; the same as the guest's dax=always.
//   none      none; the same as the guest's dax=never.
//   min_size  files of at least dax_inode_min_size bytes: each mapping
//             takes a 2 MiB range of the window, small files waste it.
enum class DaxInodePolicy { flag, all, none, min_size };

struct Options {
    std::string shared_dir;
    CacheMode cache = CacheMode::automatic;
    bool writeback = false;
    bool xattr = false;
    bool readonly = false;
    bool posix_locks = true;
    bool flock = true;
    // Run each op with the caller's uid/gid/groups (needs root).
    bool switch_creds = true;
    CredsPolicy creds = CredsPolicy::all;
    // Request pids name processes of this host (false for a VM's guest pids).
    bool host_pids = true;
    // Kernel passthrough of regular files' I/O (FUSE_PASSTHROUGH), when the
    // kernel offers it, the transport can register backing files
    // (set_backing()) and the writeback cache is off (the kernel refuses
    // the two together).
    bool passthrough = true;
    // An open that asks for O_DIRECT gets a host fd with O_DIRECT too
    // (fs/data.cc), where the host fs does direct I/O.  Off: O_DIRECT is
    // dropped, and the host page cache serves every file.
    bool direct_io = false;
    DaxInodePolicy dax_inode = DaxInodePolicy::flag;
    uint64_t dax_inode_min_size = 0;
};

// What survives a crash beyond the region: the fd store, if there is one,
// and the journal.  Both optional (recovery off, or unit tests).
struct Recovery {
    state::Journal *journal = nullptr;
    fdstore::Notifier *store = nullptr;
};

class Passthrough final : public fuse::Filesystem {
  public:
    // Opens the shared directory; throws std::runtime_error with a message.
    Passthrough(Options opts, state::InodeTable &inodes, state::HandleTable &handles,
                Recovery rec = {});

    // A new region: the shared directory becomes node 1.
    void start_fresh();
    // A region from a previous server: rebuild from it, taking back the
    // fds it left in the store ("i<nodeid>", "h<fh>", "l<nodeid>.<owner>").
    // Throws std::runtime_error if the region does not describe this
    // shared directory.
    void recover(std::vector<fdstore::NamedFd> stored);
    // After start_fresh(), the region was overwritten with records
    // migrated from another server (state/migration.h): rebuild from them
    // as recover() does, then resolve every inode now.  Returns "" or, when
    // `strict`, the first inodes that do not resolve (with `strict` off
    // they stay, and answer ESTALE when used).  `unresolved` gets their count.
    // `lent`: fds a source on this host lent us (named as in the store);
    // each is used only if it is the file its record names.
    // `paths` (find-paths): where to look for what no lent fd and no file
    // handle finds.  `foreign_root`: the source served another directory
    // (install() let it in because of the paths): only paths count then.
    std::string take_migrated(bool strict, size_t &unresolved,
                              std::vector<fdstore::NamedFd> lent = {},
                              const std::vector<state::MigratedPath> &paths = {},
                              bool foreign_root = false);
    // The source side of find-paths: the path of every live inode but the
    // root, relative to the shared directory.  `missing` counts those that
    // have none (unlinked, or outside the shared directory).
    std::vector<state::MigratedPath> inode_paths(size_t &missing);
    // How many inodes take_migrated() found by path.
    size_t found_by_path() const { return found_by_path_; }
    // The source side of that: the numbers of the fds held for every live
    // inode but the root, open file and lock owner.  They stay open as long
    // as `keep` holds what owns them (and no request changes them: the
    // device is stopped).
    std::vector<state::LentFd> lend_fds(std::vector<std::shared_ptr<const void>> &keep);
    // How many lent fds take_migrated() used.
    size_t lent_used() const { return lent_used_.load(std::memory_order_relaxed); }

    uint64_t init_flags(uint64_t kernel_flags) override;
    void init(const fuse::Negotiated &n) override;
    // The kernel let go of every node id and file handle (DESTROY, or a
    // rebooted guest's new INIT): close every handle, forget every inode
    // but the root.
    void destroy() override;

    int lookup(const fuse::Ctx &, std::string_view name, fuse_entry_out &) override;
    void forget(uint64_t nodeid, uint64_t nlookup) override;
    int getattr(const fuse::Ctx &, const fuse_getattr_in &, fuse_attr_out &) override;
    int setattr(const fuse::Ctx &, const fuse_setattr_in &, fuse_attr_out &) override;
    int statx(const fuse::Ctx &, const fuse::fuse_statx_in &, fuse::fuse_statx_out &) override;
    int readlink(const fuse::Ctx &, fuse::Reply &) override;
    int symlink(const fuse::Ctx &, std::string_view name, std::string_view target,
                fuse_entry_out &) override;
    int mknod(const fuse::Ctx &, const fuse_mknod_in &, std::string_view name,
              fuse_entry_out &) override;
    int mkdir(const fuse::Ctx &, const fuse_mkdir_in &, std::string_view name,
              fuse_entry_out &) override;
    int unlink(const fuse::Ctx &, std::string_view name) override;
    int rmdir(const fuse::Ctx &, std::string_view name) override;
    int rename(const fuse::Ctx &, std::string_view name, uint64_t newdir, std::string_view newname,
               uint32_t flags) override;
    int link(const fuse::Ctx &, uint64_t oldnode, std::string_view newname,
             fuse_entry_out &) override;

    int open(const fuse::Ctx &, const fuse_open_in &, fuse_open_out &) override;
    int create(const fuse::Ctx &, const fuse_create_in &, std::string_view name, fuse_entry_out &,
               fuse_open_out &) override;
    int tmpfile(const fuse::Ctx &, const fuse_create_in &, fuse_entry_out &,
                fuse_open_out &) override;
    int read(const fuse::Ctx &, const fuse_read_in &, fuse::Reply &) override;
    int write(const fuse::Ctx &, const fuse_write_in &, std::span<const std::byte>,
              fuse_write_out &) override;
    int flush(const fuse::Ctx &, const fuse_flush_in &) override;
    int release(const fuse::Ctx &, const fuse_release_in &, bool dir) override;
    int fsync(const fuse::Ctx &, const fuse_fsync_in &, bool dir) override;
    int fallocate(const fuse::Ctx &, const fuse_fallocate_in &) override;
    int prep_read(const fuse::Ctx &, const fuse_read_in &, fuse::Reply &,
                  fuse::BackendIo &) override;
    int prep_write(const fuse::Ctx &, const fuse_write_in &, std::span<const std::byte>,
                   fuse_write_out &, fuse::BackendIo &) override;
    int prep_fsync(const fuse::Ctx &, const fuse_fsync_in &, bool dir, fuse::BackendIo &) override;
    int prep_fallocate(const fuse::Ctx &, const fuse_fallocate_in &, fuse::BackendIo &) override;
    int lseek(const fuse::Ctx &, const fuse_lseek_in &, fuse_lseek_out &) override;
    int copy_file_range(const fuse::Ctx &, const fuse_copy_file_range_in &,
                        fuse_write_out &) override;

    int opendir(const fuse::Ctx &, const fuse_open_in &, fuse_open_out &) override;
    int readdir(const fuse::Ctx &, const fuse_read_in &, bool plus, fuse::Reply &) override;

    int statfs(const fuse::Ctx &, fuse_statfs_out &) override;
    int access(const fuse::Ctx &, const fuse_access_in &) override;
    int syncfs(const fuse::Ctx &) override;

    int setxattr(const fuse::Ctx &, const fuse_setxattr_in &, std::string_view name,
                 std::span<const std::byte> value) override;
    int getxattr(const fuse::Ctx &, std::string_view name, uint32_t size, fuse::Reply &) override;
    int listxattr(const fuse::Ctx &, uint32_t size, fuse::Reply &) override;
    int removexattr(const fuse::Ctx &, std::string_view name) override;

    int getlk(const fuse::Ctx &, const fuse_lk_in &, fuse_lk_out &) override;
    int setlk(const fuse::Ctx &, const fuse_lk_in &, bool wait) override;
    void interrupt(uint64_t unique) override;

    // virtio-fs DAX (fs/dax.cc): the transport's window and the region's
    // mapping table, set before INIT (or adopt()).  Without both,
    // SETUPMAPPING and REMOVEMAPPING stay ENOSYS.
    void set_dax(fuse::DaxWindow *w, state::DaxTable *t)
    {
        dax_ = w;
        dax_table_ = t;
    }
    uint64_t dax_window_size() const override;
    int setupmapping(const fuse::Ctx &, const fuse_setupmapping_in &) override;
    int removemapping(const fuse::Ctx &, std::span<const fuse_removemapping_one>) override;
    // The session that mapped them is over: unmaps every range the table
    // holds; what the front-end does not confirm stays, uncertain.
    void dax_drop_all();
    // Mappings in the table (live or uncertain).
    size_t dax_mappings() const;
    // FUSE_ATTR_DAX when a dax=inode guest is to map this file through the
    // window (Options::dax_inode), else 0.
    uint32_t dax_attr_flags(const state::Inode &ino, const struct stat &st) const;

    // The transport's way to register backing files for kernel
    // passthrough; before INIT (or adopt()).  Without it (vhost-user) no
    // file is passed through.
    void set_backing(fuse::BackingFiles *b) { backing_ = b; }
    // Whether OPEN/CREATE replies pass files through (negotiated, and a
    // device to register them on).
    bool passing_through() const { return passthrough_ && backing_; }
    // Inodes with a registered backing id, and passthrough opens so far.
    size_t backing_inodes() const { return backing_ids_.size(); }
    uint64_t passthrough_opens() const { return pt_opens_.load(std::memory_order_relaxed); }

    const Options &options() const { return opts_; }
    // Resent requests answered from the journal instead of re-executed.
    uint64_t replayed() const { return replayed_.load(std::memory_order_relaxed); }

  private:
    // Whether an op runs as the caller: `creates` for ops that make a new
    // object (they always do when switch_creds is on), per CredsPolicy else.
    bool creds_for(bool creates) const
    {
        return opts_.switch_creds && (creates || opts_.creds == CredsPolicy::all);
    }
    // READDIR(PLUS) from in.offset into `out`; `journaled`: each reference
    // counted goes into this thread's journal list, and the reply ends
    // when the list is full.
    int list_dir(const fuse::Ctx &ctx, const fuse_read_in &in, bool plus, bool journaled,
                 fuse::Reply &out);
    // Looks `name` up in `parent` and counts one kernel reference.
    // `made`: the caller just made the name (for a new inode, but for
    // LINK), which tells nothing about what LOOKUPs find.
    int do_lookup(const state::Inode &parent, std::string_view name, fuse_entry_out &out,
                  bool made = false);
    // Counts one reference on the inode behind an fd we just created/opened;
    // `known`, if given, says whether we held that inode open already.
    int entry_from_fd(Fd fd, fuse_entry_out &out, bool *known = nullptr);
    // The entry of an inode ref_open() just counted: its handle, if any, is
    // in the record already, so only one without needs the fd store.
    void entry_of_held(const state::Inode &ino, const struct stat &st, fuse_entry_out &out);
    // Why `fh` names no usable handle: ESTALE for one we know (a live
    // record) that could not be reopened, as after a migration that lost
    // its file; EBADF for anything else (a wrong type, a stranger).  For
    // callers that just failed a handles_.get(fh): it does not try again.
    int bad_handle(uint64_t fh) const;
    // The file handle of `fd` (an inode on device `dev`), or fh.bytes = 0
    // where the fs has none.  Returns whether that handle can bring the
    // inode back in a later process (inode_keep.h); where it cannot, the
    // fd store must keep the inode's fd.
    bool handle_of(int fd, uint64_t dev, state::FileHandleBlob &fh);
    // find-paths: records the source's handles do not open here get the
    // file at their path, if it is of the same type (take_migrated()).
    size_t rebind_by_path(const std::vector<state::MigratedPath> &paths,
                          std::vector<fdstore::NamedFd> &opened, bool foreign_root);
    void fill_entry(const state::Inode &ino, const struct stat &st, fuse_entry_out &out) const;
    // Every attribute reply (entries, getattr, setattr) goes through here,
    // so that the kernel sees the same FUSE_ATTR_DAX in all of them: it
    // evicts an inode whose flag changes.
    void fill_attr(const state::Inode &ino, const struct stat &st, fuse_attr &a) const;
    // "/proc/self/fd/N" reopen of an inode with new flags.
    int reopen(const state::Inode &ino, int flags) const;
    int reopen_fd(int fd, int flags) const;
    // A writable fd for ops that need one (truncate, times) when no fh came.
    std::shared_ptr<state::Handle> handle_for(uint64_t fh, uint64_t nodeid) const;
    uint32_t open_reply_flags(bool dir) const;
    // The backing id for a new file handle on `ino` whose host fd is `fd`
    // (registered if the inode has none yet), or 0: no passthrough.
    // `unique`: the request, whose journal record keeps a new id.
    int32_t backing_for(const state::Inode &ino, int fd, uint64_t unique);
    // A handle with backing id `id` on `nodeid` is gone (or was never
    // handed out): unregister the id if it was the inode's last user.
    void backing_put(uint64_t nodeid, int32_t id);
    // A resent request that had started before the crash may have
    // registered a backing id (journaled with note()) that no live handle
    // names: close it, or it stays registered until the unmount.
    void drop_crashed_backing(const state::JournalEntry &e);
    // Sets out.open_flags (and the backing id) for a file handle.
    void open_reply(fuse_open_out &out, int32_t backing_id) const;
    int make_handle(std::shared_ptr<state::Inode> ino, Fd fd, int flags, bool dir,
                    uint64_t opened_by, fuse_open_out &out, bool pass = false);
    int kill_suidgid(int fd) const;
    // A WRITE of `data` to h's file, for write() to run and prep_write() to
    // defer.  `eof`: where an O_APPEND write lands (it ignores in.offset).
    int describe_write(fuse::BackendIo &io, state::Handle &h, const fuse_write_in &in,
                       std::span<const std::byte> data, uint64_t eof = 0) const;
    // --direct-io: gives `fd`, opened without O_DIRECT, O_DIRECT when the
    // open asked for it (`flags`) and the host fs does direct I/O.  Returns
    // the flags the fd has then.
    int direct_flags(int fd, int flags) const;
    // Points `io` at the fd of `h` (and its IoPath) that can carry out a
    // transfer of `len` bytes at `off` from/to `buf`: an O_DIRECT handle's
    // own fd if they are aligned as its host fs needs, else its second,
    // buffered fd (dio_plain).  Returns 0 or -errno.
    int pick_fd(fuse::BackendIo &io, state::Handle &h, bool write, const void *buf, uint64_t off,
                uint32_t len) const;
    // The buffered fd of an O_DIRECT handle, opened at first use.
    int plain_fd(state::Handle &h) const;
    // Points `io` at that fd and its IoPath for direction `dir` (0 read,
    // 1 write).  Returns 0 or -errno.
    int use_plain_fd(fuse::BackendIo &io, state::Handle &h, int dir) const;
    int open_from_journal(const state::JournalEntry &e, fuse_entry_out *entry,
                          fuse_open_out &out, bool dir);
    int open_file(const fuse::Ctx &ctx, std::shared_ptr<state::Inode> ino,
                  const fuse_open_in &in, fuse_open_out &out);
    int create_file(const fuse::Ctx &ctx, const state::Inode &parent, std::string_view name,
                    int flags, uint32_t mode, fuse_entry_out &entry, fuse_open_out &out);
    int tmpfile_create(const fuse::Ctx &ctx, const state::Inode &parent,
                       const fuse_create_in &in, fuse_entry_out &entry, fuse_open_out &out);

    // Recovery helpers (see recovery.cc).
    std::optional<state::JournalEntry> replayed(const fuse::Ctx &ctx);
    void journal_begin(const fuse::Ctx &ctx, uint64_t u64 = 0);
    void journal_done(int err, uint64_t nodeid = 0, uint64_t fh = 0, uint32_t u32 = 0);
    int entry_for(uint64_t nodeid, fuse_entry_out &out);
    // A resent READDIRPLUS: gives back the references its earlier attempts
    // counted (now listed in our own journal record, started with them).
    void give_back_refs(const std::vector<uint64_t> &refs);
    // Runs `make` (which creates `name` in `parent`) at most once per
    // request, journaled, and replies with the new entry.
    int entry_op(const fuse::Ctx &ctx, const state::Inode &parent, std::string_view name,
                 fuse_entry_out &out, const std::function<int()> &make);
    // Runs a name-removing op at most once per request, journaled.
    int remove_op(const fuse::Ctx &ctx, const std::function<int()> &op);
    // Keeps an inode's fd in the fd store, for the next server, when
    // neither a name nor a file handle can bring the inode back; within
    // the store's budget (inode_keep.h), of which `open` files may use the
    // last quarter.
    void keep_inode(const state::Inode &ino, bool open = false);
    // Its slot is free: the store lets go of the fd keep_inode() gave it.
    void unkeep_inode(uint64_t nodeid);
    void keep_if_orphaned(std::shared_ptr<state::Inode> ino);
    std::shared_ptr<state::Inode> known_inode(int dirfd, const std::string &name);
    Fd resolve_inode(uint64_t nodeid, const state::InodeRecord &r);
    std::shared_ptr<state::Handle> resolve_handle(uint64_t fh, const state::HandleRecord &r);
    Fd take_stored(const std::string &name);
    static std::string lock_name(uint64_t nodeid, uint64_t owner);
    static size_t fd_budget();

    // Blocking-lock bookkeeping so INTERRUPT can wake a SETLKW waiter.
    struct Waiter {
        pthread_t thread;
        std::atomic<bool> interrupted{false};
    };
    std::mutex waiters_mu_;
    std::unordered_map<uint64_t, Waiter *> waiters_;

    Options opts_;
    state::InodeTable &inodes_;
    state::HandleTable &handles_;
    Recovery rec_;
    std::atomic<uint64_t> replayed_{0};
    std::mutex stored_mu_;
    std::unordered_map<std::string, Fd> stored_; // fds handed back by the store
    std::atomic<size_t> lent_used_{0};
    std::unordered_set<std::string> borrowed_; // names of the lent fds, during take_migrated()
    size_t found_by_path_ = 0;
    Fd root_path_; // until start_fresh()/recover() hands it to the table
    Fd root_rdonly_; // an fd syncfs() accepts (O_PATH fds are refused)
    Fd proc_self_fd_;
    double entry_timeout_ = 1.0;
    double attr_timeout_ = 1.0;
    bool writeback_ = false;
    bool passthrough_ = false; // FUSE_PASSTHROUGH negotiated
    bool inode_dax_ = false;   // FUSE_HAS_INODE_DAX negotiated (a dax=inode guest)
    fuse::BackingFiles *backing_ = nullptr;
    BackingIds backing_ids_;
    std::atomic<bool> backing_refused_{false}; // logged once
    std::atomic<uint64_t> pt_opens_{0};
    // Whether recent LOOKUPs found inodes we hold open (+1) or new ones
    // (-2), within [0, kKnownMax]: at kProbeAt and above, do_lookup() tries
    // a stat by name before opening, and a hit needs no fd of its own.
    // Written only when it changes, so a steady workload does not bounce
    // its cache line between workers.
    static constexpr int kKnownMax = 16;
    static constexpr int kProbeAt = 8;
    alignas(64) std::atomic<int> known_score_{0};
    void note_lookup(bool known);
    // Per host filesystem (st_dev): false once its file handles are known
    // not to bring inodes back (FUSE, or none at all: EOPNOTSUPP).
    std::mutex fs_handles_mu_;
    std::unordered_map<uint64_t, bool> fs_handles_;
    // Inode fds in the fd store, and how many it may hold (keep_inode()).
    std::mutex keep_mu_;
    std::atomic<size_t> kept_inodes_{0};
    size_t keep_budget_ = 0;
    std::atomic<bool> keep_refused_{false}; // logged once

    // Unmaps one record; 0 when the range is not mapped any more.
    int dax_unmap(const state::DaxMapping &m);
    fuse::DaxWindow *dax_ = nullptr;
    state::DaxTable *dax_table_ = nullptr;
    mutable std::mutex dax_mu_; // the table, and one window request at a time
};

} // namespace holdfast::fs
