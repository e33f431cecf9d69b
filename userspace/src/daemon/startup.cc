// SPDX-License-Identifier: GPL-2.0
#include "daemon/startup.h"

#include "daemon/init_record.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <sys/resource.h>
#include <sys/stat.h>

namespace holdfast::daemon {

long long mono_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void raise_fd_limit()
{
    // As root: to fs.nr_open, capped at a million, like virtiofsd's
    // --rlimit-nofile default.
    rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t want = 1000000;
    if (FILE *f = fopen("/proc/sys/fs/nr_open", "re")) {
        unsigned long long v;
        if (fscanf(f, "%llu", &v) == 1 && v < want)
            want = rlim_t(v);
        fclose(f);
    }
    rlimit up{want, want};
    if (want > rl.rlim_max && setrlimit(RLIMIT_NOFILE, &up) == 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

bool check_shared_dir(const std::string &dir)
{
    struct stat st;
    errno = 0;
    if (stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        return true;
    fprintf(stderr, "holdfastd: --shared-dir '%s': %s\n", dir.c_str(),
            errno ? strerror(errno) : "not a directory");
    return false;
}

Fd take_named(std::vector<fdstore::NamedFd> &fds, const std::string &name)
{
    for (auto it = fds.begin(); it != fds.end(); ++it) {
        if (it->name == name) {
            Fd fd = std::move(it->fd);
            fds.erase(it);
            return fd;
        }
    }
    return Fd();
}

bool attach_region(Fd memfd, std::optional<state::Region> &region, uint64_t &generation)
{
    try {
        region.emplace(state::Region::attach(std::move(memfd)));
    } catch (const std::runtime_error &e) {
        fprintf(stderr, "holdfastd: %s\n", e.what());
        return false;
    }
    generation = region->header().attach_generation.fetch_add(1) + 1;
    return true;
}

bool recover_tables(fs::Passthrough &pfs, fuse::Engine &engine, state::Region &region,
                    std::vector<fdstore::NamedFd> stored)
{
    try {
        pfs.recover(std::move(stored));
    } catch (const std::runtime_error &e) {
        fprintf(stderr, "holdfastd: %s\n", e.what());
        return false;
    }
    if (region.header().init.state.load(std::memory_order_acquire) == state::kLive)
        engine.adopt(load_init(region.header()));
    return true;
}

} // namespace holdfast::daemon
