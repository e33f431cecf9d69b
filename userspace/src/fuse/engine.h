// SPDX-License-Identifier: GPL-2.0
// The transport-agnostic FUSE protocol engine: one request in, one reply out.
#pragma once

#include "fuse/backend_io.h"
#include "fuse/filesystem.h"
#include "fuse/opcodes.h"
#include "fuse/request.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

namespace holdfast::fuse {

struct EngineLimits {
    uint32_t max_write = 1u << 20; // bytes of WRITE payload we accept
    uint16_t max_pages = 256;
    // INIT flags a transport asks for (FUSE_OVER_IO_URING), accepted only
    // when the kernel offers them.  The engine gives them no meaning.
    uint64_t extra_flags = 0;
    // A virtio-fs device outlives the guest kernel using it: a guest that
    // reboots sends INIT again on the same device without DESTROY.  With
    // this set, such an INIT ends the old session (Filesystem::destroy())
    // and starts a new one; /dev/fuse never sends it, so it is refused there.
    bool reinit = false;
    // Readahead we answer INIT with; 0 echoes the kernel's offer.  The
    // kernel keeps the smaller of its bdi's readahead and ours, so more than
    // it offered counts only once read_ahead_kb was raised (devfuse::Mount).
    uint32_t max_readahead = 0;
};

struct OpStats {
    std::atomic<uint64_t> requests[kMaxOpcode] = {};
    std::atomic<uint64_t> errors[kMaxOpcode] = {};
    std::atomic<uint64_t> unknown = 0;   // opcodes we do not implement
    std::atomic<uint64_t> malformed = 0; // requests that failed validation
    std::atomic<uint64_t> resent = 0;    // requests carrying FUSE_UNIQUE_RESEND
};

class Engine {
  public:
    Engine(Filesystem &fs, EngineLimits limits) : fs_(fs), limits_(limits) {}

    // Handles one complete request (exactly the bytes the transport got).
    // After return, `out` holds the reply, or out.should_send() is false.
    // `resubmitted`: the transport delivers it a second time on its own
    // (vhost-user's inflight region after a restart of the back-end), so
    // it may have run before, as if the kernel had marked it
    // FUSE_UNIQUE_RESEND; the reply keeps the unique as it came.
    void handle(std::span<const std::byte> in, Reply &out, bool resubmitted = false);
    // The same, for a transport that carries out backing-file I/O itself:
    // what can be done without waiting for a device is done here; if
    // `io.pending()` afterwards, the reply is not built yet: the transport
    // performs `io` (see fuse/backend_io.h) and then calls complete() with
    // the same `out`.
    // `now` false: describe only, even what could be done at once (the
    // /dev/fuse transport splices big READs from the backing file).
    void handle(std::span<const std::byte> in, Reply &out, bool resubmitted, BackendIo &io,
                bool now = true);
    // A WRITE whose data the transport left where it came (WriteSource in
    // fuse/backend_io.h), otherwise like handle() with a BackendIo: `head`
    // is the request's first kWriteHeadLen bytes, `total` the length of the
    // whole request (its header must say the same) and `stand_in` the rest
    // of it as it would lie in a request buffer, not copied there: the
    // filesystem is given the data in it.  The data must fit the request's
    // length (its extensions left out) and max_write, as in handle().
    void handle_detached(std::span<const std::byte> head, uint64_t total,
                         std::span<const std::byte> stand_in, Reply &out, bool resubmitted,
                         BackendIo &io, bool now = true);
    static constexpr size_t kWriteHeadLen = sizeof(fuse_in_header) + sizeof(fuse_write_in);
    // Finishes a request handle() left pending, once io.absorb() said it is
    // done: fills in the reply from io.result, and resets `io`.
    void complete(BackendIo &io, Reply &out);

    // Bytes a transport must be able to receive in one request.
    size_t request_buffer_size() const { return limits_.max_write + 4096; }
    // Where a transport that reads a request into a page-aligned buffer
    // puts it: a WRITE's data, behind its two headers, then starts on the
    // next page, aligned as O_DIRECT host files need (--direct-io).
    static constexpr size_t kWriteDataSkew = 4096 - kWriteHeadLen;
    // Bytes of payload a reply may carry (READ size, READDIR buffer).
    size_t reply_payload_size() const { return size_t(limits_.max_pages) * 4096; }

    const Negotiated &negotiated() const { return neg_; }
    // A copy for threads that are not serving requests (the control
    // socket's status): INIT may be writing neg_ meanwhile.
    Negotiated negotiated_snapshot() const
    {
        std::lock_guard g(neg_mu_);
        return neg_;
    }
    // A restarted server adopts what the previous one negotiated (no new INIT).
    void adopt(const Negotiated &n)
    {
        {
            std::lock_guard g(neg_mu_);
            neg_ = n;
            neg_.done = true;
        }
        fs_.init(neg_);
    }
    // Called once INIT is settled (the daemon persists it for a successor).
    void set_on_init(std::function<void(const Negotiated &)> f) { on_init_ = std::move(f); }
    bool destroyed() const { return destroyed_.load(std::memory_order_acquire); }
    const OpStats &stats() const { return stats_; }

  private:
    // `total`, `stand_in`: handle_detached()'s, or in.size() and null.
    void serve(std::span<const std::byte> in, uint64_t total,
               const std::span<const std::byte> *stand_in, Reply &out, bool resubmitted,
               BackendIo *io, bool now);
    int dispatch(const Request &req, const std::span<const std::byte> *stand_in, Reply &out,
                 BackendIo *io);
    int do_init(const Request &req, Reply &out);
    int unimplemented(uint32_t op);
    // A mapping request that fails validation: counted, logged, EINVAL.
    int bad_mapping(const Ctx &ctx, const char *what, const char *why);

    Filesystem &fs_;
    EngineLimits limits_;
    Negotiated neg_;
    mutable std::mutex neg_mu_; // writers of neg_, and snapshots
    std::function<void(const Negotiated &)> on_init_;
    std::atomic<bool> destroyed_{false};
    OpStats stats_;
};

} // namespace holdfast::fuse
