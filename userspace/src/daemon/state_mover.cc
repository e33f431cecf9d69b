// SPDX-License-Identifier: GPL-2.0
#include "daemon/state_mover.h"

#include "daemon/init_record.h"
#include "state/migration.h"
#include "transport/vhost_user/protocol.h"
#include "util/fd.h"
#include "util/log.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <unistd.h>

namespace holdfast::daemon {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
        .count();
}

std::string write_all(int fd, const std::vector<uint8_t> &b)
{
    size_t done = 0;
    while (done < b.size()) {
        ssize_t n = write(fd, b.data() + done, b.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return std::string("writing the state: ") + (n < 0 ? strerror(errno) : "no progress");
        done += size_t(n);
    }
    return "";
}

std::string read_all(int fd, std::vector<uint8_t> &b)
{
    b.clear();
    for (;;) {
        if (b.size() > state::kMaxMigrationStream)
            return "the state stream is larger than any real one";
        size_t old = b.size();
        b.resize(old + (1 << 16));
        ssize_t n = read(fd, b.data() + old, 1 << 16);
        if (n < 0 && errno == EINTR) {
            b.resize(old);
            continue;
        }
        if (n < 0) {
            b.resize(old);
            return std::string("reading the state: ") + strerror(errno);
        }
        b.resize(old + size_t(n));
        if (n == 0)
            return "";
    }
}

} // namespace

StateMover::~StateMover()
{
    join();
}

void StateMover::join()
{
    if (copier_.joinable())
        copier_.join();
}

std::string StateMover::transfer(uint32_t direction, int raw_fd)
{
    Fd fd(raw_fd);
    std::lock_guard g(mu_);
    join();
    direction_ = direction;
    copy_error_.clear();
    pending_ = true;
    if (direction == vhost::kStateSave) {
        const auto t0 = std::chrono::steady_clock::now();
        state::MigrationState s = state::snapshot(region_);
        // An inode without a file handle lives only in this process (an
        // fd we hold): the destination could never open it.  Refusing now
        // fails the migration while the guest still runs here.
        size_t homeless = 0;
        for (const auto &n : s.inodes)
            if (n.nodeid != state::kRootNodeId && n.handle.empty())
                homeless++;
        if (homeless && strict_) {
            pending_ = false;
            return std::to_string(homeless) +
                   " inodes have no file handle (the shared directory's file system does not "
                   "export them), so no other server can take them";
        }
        bytes_ = state::encode(s);
        LOG_INFO("device state: saving %zu inodes, %zu handles (%zu bytes, snapshot %.2f ms)",
                 s.inodes.size(), s.handles.size(), bytes_.size(), ms_since(t0));
        copier_ = std::thread([this, fd = std::move(fd)]() mutable {
            copy_error_ = write_all(fd.get(), bytes_);
            // Closing is the end-of-state marker.
            fd.reset();
        });
        return "";
    }
    copier_ = std::thread([this, fd = std::move(fd)]() mutable {
        copy_error_ = read_all(fd.get(), bytes_);
    });
    return "";
}

std::string StateMover::check()
{
    std::lock_guard g(mu_);
    if (!pending_)
        return "no state transfer was started";
    join();
    pending_ = false;
    if (!copy_error_.empty())
        return copy_error_;
    if (direction_ == vhost::kStateSave)
        return "";

    const auto t0 = std::chrono::steady_clock::now();
    state::MigrationState s;
    state::RegionHeader &h = region_.header();
    std::string e = state::decode(bytes_, {h.inode_capacity, h.handle_capacity}, s);
    if (!e.empty())
        return "refusing the migrated state: " + e;
    e = state::install(s, region_);
    if (!e.empty())
        return "refusing the migrated state: " + e;
    size_t unresolved = 0;
    e = pfs_.take_migrated(strict_, unresolved);
    if (!e.empty())
        return "refusing the migrated state: " + e;
    if (h.init.state.load(std::memory_order_acquire) == state::kLive)
        engine_.adopt(load_init(h));
    LOG_INFO("device state: took over %zu inodes (%zu unresolved), %zu handles from %s "
             "(%zu bytes, %.2f ms)",
             s.inodes.size(), unresolved, s.handles.size(),
             s.boot_id == state::host_boot_id() ? "this host" : "another host", bytes_.size(),
             ms_since(t0));
    bytes_.clear();
    bytes_.shrink_to_fit();
    return "";
}

} // namespace holdfast::daemon
