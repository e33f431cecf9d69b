// SPDX-License-Identifier: GPL-2.0
// holdfast-fuzz-recorder: serves the fuzz scratch tree (scratch.h) on a real
// FUSE mount with the real Engine and Passthrough, one thread, and records
// every request the kernel sends, so the seed corpora come from real
// traffic.  It stops when the mount goes away (umount), then writes:
//
//   OUT/engine.seed        the whole session as one fuzz_engine input
//                          (config byte 0x25: the input's own INIT, xattrs,
//                          cache=auto; then one frame per request)
//   OUT/request-OP-N.bin   single requests for fuzz_request (the first few
//                          of each opcode)
//
// Usage: holdfast-fuzz-recorder WORKDIR MOUNTPOINT OUT
//   WORKDIR gets jail/ and outside/ (jail/ is exported); run as root.
// record-seeds.sh drives workloads through it.
#include "scratch.h"

#include "fs/passthrough.h"
#include "fuse/engine.h"
#include "state/handle_table.h"
#include "state/inode_table.h"
#include "state/journal.h"
#include "state/region.h"
#include "transport/devfuse/mount.h"
#include "util/log.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <map>
#include <sys/stat.h>
#include <string>
#include <sys/uio.h>
#include <vector>

using namespace holdfast;

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s WORKDIR MOUNTPOINT OUT\n", argv[0]);
        return 2;
    }
    std::string work = argv[1], mnt = argv[2], out = argv[3];
    signal(SIGPIPE, SIG_IGN);
    umask(0);
    mkdir(work.c_str(), 0755);
    fuzz::Scratch scratch(work);
    std::string err = scratch.reset();
    if (!err.empty()) {
        fprintf(stderr, "recorder: %s\n", err.c_str());
        return 1;
    }
    try {
        state::Region region = state::Region::create({4096, 1024, 16});
        state::InodeTable inodes(region);
        state::HandleTable handles(region);
        state::Journal journal(region);
        fs::Options o;
        o.shared_dir = scratch.jail();
        o.switch_creds = false;
        o.xattr = true;
        fs::Passthrough pfs(o, inodes, handles, {&journal, nullptr});
        pfs.start_fresh();
        fuse::Engine engine(pfs, {});
        auto mount = devfuse::Mount::create({mnt, o.shared_dir, false, false, false});
        fprintf(stderr, "recorder: serving %s on %s\n", o.shared_dir.c_str(), mnt.c_str());
        // Tell the driver we are up.
        printf("ready\n");
        fflush(stdout);

        std::vector<std::byte> in(engine.request_buffer_size());
        std::vector<std::byte> payload(engine.reply_payload_size());
        fuse::Reply reply(payload);
        std::vector<uint8_t> seed{0x25};
        std::map<uint32_t, int> per_op;
        size_t skipped = 0;
        for (;;) {
            ssize_t n = read(mount.fd(), in.data(), in.size());
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN || errno == ENOENT)
                    continue;
                break; // ENODEV: unmounted
            }
            fuse_in_header h{};
            if (size_t(n) >= sizeof(h))
                memcpy(&h, in.data(), sizeof(h));
            if (n <= 0xffff) {
                seed.push_back(0);
                seed.push_back(uint8_t(n));
                seed.push_back(uint8_t(n >> 8));
                const uint8_t *b = reinterpret_cast<const uint8_t *>(in.data());
                seed.insert(seed.end(), b, b + n);
                if (per_op[h.opcode]++ < 3) {
                    std::string f = out + "/request-" + std::to_string(h.opcode) + "-" +
                                    std::to_string(per_op[h.opcode]) + ".bin";
                    if (FILE *fp = fopen(f.c_str(), "wb")) {
                        fwrite(b, 1, size_t(n), fp);
                        fclose(fp);
                    }
                }
            } else {
                skipped++;
            }
            engine.handle(std::span<const std::byte>(in.data(), size_t(n)), reply);
            if (!reply.should_send())
                continue;
            fuse_out_header oh = reply.header();
            auto arg = reply.arg_bytes();
            auto data = reply.payload();
            iovec iov[3];
            int cnt = 0;
            iov[cnt++] = {&oh, sizeof(oh)};
            if (!arg.empty())
                iov[cnt++] = {const_cast<std::byte *>(arg.data()), arg.size()};
            if (!data.empty())
                iov[cnt++] = {const_cast<std::byte *>(data.data()), data.size()};
            if (writev(mount.fd(), iov, cnt) < 0 && errno == ENODEV)
                break;
        }
        std::string f = out + "/engine.seed";
        FILE *fp = fopen(f.c_str(), "wb");
        if (!fp) {
            perror(f.c_str());
            return 1;
        }
        fwrite(seed.data(), 1, seed.size(), fp);
        fclose(fp);
        fprintf(stderr, "recorder: %zu bytes of requests recorded (%zu too large to frame)\n",
                seed.size(), skipped);
    } catch (const std::exception &e) {
        fprintf(stderr, "recorder: %s\n", e.what());
        return 1;
    }
    return 0;
}
