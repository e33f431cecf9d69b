// SPDX-License-Identifier: GPL-2.0
#include "transport/uring/queue.h"

#include "transport/uring/ring.h"
#include "util/fault.h"
#include "util/log.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <pthread.h>
#include <sched.h>
#include <stdexcept>
#include <sys/eventfd.h>
#include <system_error>
#include <unistd.h>

namespace holdfast::uring {

namespace {
constexpr uint64_t kWakeTag = ~uint64_t(0);
// Completions of backing-file operations: the entry's index under this bit.
constexpr uint64_t kIoTag = uint64_t(1) << 62;
constexpr int kRetryMs = 2;
constexpr int kMaxRetryRounds = 2500; // 5 s of "INIT not processed yet"

const char *cmd_name(int cmd)
{
    return cmd == 1 ? "REGISTER" : cmd == 2 ? "COMMIT_AND_FETCH" : "command";
}
} // namespace

Queue::Queue(fuse::Engine &engine, int devfd, unsigned qid, unsigned depth, size_t payload_cap,
             int settle_ms, QueueMemory mem, bool backend_io)
    : engine_(engine), devfd_(devfd), qid_(qid), depth_(depth ? depth : 1),
      payload_cap_(payload_cap), settle_ms_(settle_ms), mem_(mem), backend_io_(backend_io),
      evfd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))
{
    if (!evfd_)
        throw std::runtime_error(std::string("eventfd: ") + strerror(errno));
}

Queue::~Queue()
{
    stop();
    join();
}

void Queue::start()
{
    try {
        thread_ = std::thread([this] { run(); });
    } catch (const std::system_error &e) {
        set_state(State::failed, std::string("io_uring queue thread: ") + e.what());
    }
}

void Queue::wake()
{
    uint64_t one = 1;
    if (::write(evfd_.get(), &one, sizeof(one)) < 0 && errno != EAGAIN)
        LOG_ERR("io_uring queue %u: eventfd: %s", qid_, strerror(errno));
}

void Queue::stop()
{
    stopping_.store(true, std::memory_order_release);
    wake();
}

void Queue::park()
{
    parking_.store(true, std::memory_order_release);
    wake();
}

bool Queue::join(int helper_timeout_ms)
{
    if (thread_.joinable())
        thread_.join();
    for (int waited = 0; helpers_.load(std::memory_order_acquire) && waited < helper_timeout_ms;
         waited += 5)
        usleep(5000);
    return helpers_.load(std::memory_order_acquire) == 0;
}

std::string Queue::setup() const
{
    std::lock_guard g(mu_);
    return setup_;
}

void Queue::set_state(State s, const std::string &why)
{
    std::lock_guard g(mu_);
    state_ = s;
    if (!why.empty())
        why_ = why;
    cv_.notify_all();
}

std::string Queue::wait_armed(int timeout_ms)
{
    std::unique_lock l(mu_);
    cv_.wait_for(l, std::chrono::milliseconds(timeout_ms),
                 [this] { return state_ != State::starting; });
    if (state_ == State::armed)
        return "";
    if (state_ == State::starting)
        return "queue " + std::to_string(qid_) + ": REGISTER not settled after " +
               std::to_string(timeout_ms) + " ms";
    return why_.empty() ? "queue " + std::to_string(qid_) + " stopped" : why_;
}

void Queue::run()
{
    char name[16];
    snprintf(name, sizeof(name), "hf-uring-%u", qid_);
    pthread_setname_np(pthread_self(), name);
    // The kernel queues a request on the queue of the CPU its caller runs
    // on: serve it from that CPU.  An offline or forbidden CPU is no error,
    // the queue just runs where the scheduler puts it.
    cpu_set_t set;
    CPU_ZERO(&set);
    if (qid_ < CPU_SETSIZE)
        CPU_SET(qid_, &set);
    if (qid_ < CPU_SETSIZE && sched_setaffinity(0, sizeof(set), &set) == 0)
        cpu_.store(int(qid_), std::memory_order_relaxed);
    else
        LOG_DBG("io_uring queue %u: cannot pin to CPU %u: %s", qid_, qid_, strerror(errno));

    // Buffers first-touched here, on the queue's CPU (and its NUMA node).
    try {
        slots_.resize(depth_);
        for (unsigned i = 0; i < depth_; i++) {
            Slot &s = slots_[i];
            if (mem_.base)
                s.entry = std::make_unique<Entry>(mem_.base + i * Entry::slot_size(payload_cap_),
                                                  payload_cap_);
            else
                s.entry = std::make_unique<Entry>(payload_cap_);
            if (mem_.records) {
                s.rec = &mem_.records[i];
                s.entry->set_record(s.rec);
            }
        }
    } catch (const std::bad_alloc &) {
        set_state(State::failed, "io_uring queue " + std::to_string(qid_) + ": no memory for " +
                                     std::to_string(depth_) + " entries of " +
                                     std::to_string(payload_cap_) + " bytes");
        return;
    }
    Ring ring;
    // Per entry at most one command or one backing-file operation is in
    // flight, plus the eventfd poll; a pass of the loop may prepare an
    // operation's resubmission and the next commit for the same entry.
    int r = ring.init(2 * depth_ + 1, devfd_);
    if (r) {
        set_state(State::failed, std::string("io_uring_setup: ") + strerror(-r));
        return;
    }
    {
        std::lock_guard g(mu_);
        setup_ = ring.flags_str();
    }
    ring_ = &ring;
    ring.prep_poll(evfd_.get(), kWakeTag);
    stats_.live.store(depth_, std::memory_order_relaxed);
    for (unsigned i = 0; i < depth_; i++) {
        if (mem_.adopt && adopt(i))
            continue;
        ring.prep_register(uint16_t(qid_), slots_[i].entry->iov(), i);
        slots_[i].cmd = Cmd::reg;
        if (slots_[i].rec) {
            slots_[i].rec->qid = uint16_t(qid_);
            slots_[i].rec->state.store(state::kUringIdle, std::memory_order_release);
        }
    }

    int rounds = 0;
    for (;;) {
        r = armed_ ? ring.submit_and_wait(1) : ring.submit_and_wait_ms(settle_ms_);
        // Before the completions: one of them may be the next request on an
        // entry whose reply just went in.
        if (r >= 0 || r == -ETIME)
            mark_submitted();
        if (r == -ETIME) {
            if (!armed_ && retry_.empty())
                armed_ = true;
        } else if (r < 0 && r != -EINTR) {
            LOG_ERR("io_uring queue %u: io_uring_enter: %s", qid_, strerror(-r));
            if (first_error_.empty())
                first_error_ = std::string("io_uring_enter: ") + strerror(-r);
            break;
        }
        ring.drain([this](uint64_t ud, int res) { on_completion(ud, res); });
        if (armed_ && stats_.live.load() && state_ == State::starting) {
            if (!first_error_.empty())
                LOG_WARN("io_uring queue %u: serving with %u of %u entries (%s)", qid_,
                         stats_.live.load(), depth_, first_error_.c_str());
            set_state(State::armed);
        }
        if (!retry_.empty()) {
            if (++rounds > kMaxRetryRounds) {
                first_error_ = "REGISTER refused with EAGAIN for 5 s: INIT never completed";
                break;
            }
            usleep(kRetryMs * 1000);
            for (unsigned i : retry_)
                ring.prep_register(uint16_t(qid_), slots_[i].entry->iov(), i);
            retry_.clear();
        }
        if (woken_) {
            woken_ = false;
            uint64_t v;
            if (::read(evfd_.get(), &v, sizeof(v)) < 0 && errno != EAGAIN)
                LOG_ERR("io_uring queue %u: eventfd: %s", qid_, strerror(errno));
            take_done();
            if (stopping_.load(std::memory_order_acquire))
                break;
            ring.prep_poll(evfd_.get(), kWakeTag);
        }
        // Every entry is gone: the connection ended (umount, abort).
        if (!stats_.live.load() && !helpers_.load())
            break;
        if (!armed_ && !stats_.live.load())
            break;
    }
    // Replies prepared last (a helper finished as we were asked to stop).
    if (ring.submit() >= 0)
        mark_submitted();
    ring_ = nullptr;
    if (state_ == State::starting)
        set_state(State::failed, first_error_.empty()
                                     ? "io_uring queue " + std::to_string(qid_) + " stopped"
                                     : first_error_);
    else
        set_state(State::exited);
    LOG_DBG("io_uring queue %u: leaving (%u entries live)", qid_, stats_.live.load());
}

void Queue::on_completion(uint64_t ud, int res)
{
    if (ud == kWakeTag) {
        woken_ = true;
        return;
    }
    if (ud & kIoTag) {
        if ((ud & ~kIoTag) < slots_.size())
            on_io(unsigned(ud & ~kIoTag), res);
        return;
    }
    if (ud >= slots_.size())
        return;
    Slot &s = slots_[ud];
    if (res == 0) {
        // A request: REGISTER worked, and since the kernel only uses the
        // ring once every queue has an entry, the ring is up.
        if (!armed_ && retry_.empty())
            armed_ = true;
        if (parking_.load(std::memory_order_acquire)) {
            // Handing over: the request stays in the entry's buffers for
            // the successor, which adopts it.
            s.cmd = Cmd::none;
            LOG_DBG("io_uring queue %u: request %#llx left for our successor", qid_,
                    (unsigned long long)s.entry->commit_id());
            return;
        }
        serve(unsigned(ud));
        return;
    }
    if (res == -EAGAIN || res == -EINTR) {
        if (s.cmd == Cmd::reg)
            retry_.push_back(unsigned(ud)); // INIT reply not processed yet
        else
            commit(unsigned(ud)); // the reply is still in the buffers
        return;
    }
    if (res == -ENOENT && s.cmd == Cmd::commit) {
        // The kernel ended the request meanwhile (aborted, timed out), and
        // its entry with it: register the buffers again as a new entry.
        stats_.reregistered.fetch_add(1, std::memory_order_relaxed);
        LOG_WARN("io_uring queue %u: commit of %#llx refused (request gone); re-registering", qid_,
                 (unsigned long long)s.entry->commit_id());
        ring_->prep_register(uint16_t(qid_), s.entry->iov(), ud);
        s.cmd = Cmd::reg;
        return;
    }
    retire(unsigned(ud), res);
}

void Queue::retire(unsigned idx, int res)
{
    Slot &s = slots_[idx];
    s.dead = true;
    stats_.live.fetch_sub(1, std::memory_order_relaxed);
    const char *what = cmd_name(int(s.cmd));
    if (res == -ENOTCONN || res == -ECONNABORTED || res == -ECANCELED) {
        // The connection is going away (umount, abort) or the ring is.
        LOG_DBG("io_uring queue %u entry %u: %s: %s", qid_, idx, what, strerror(-res));
        if (first_error_.empty())
            first_error_ = std::string(what) + ": " + strerror(-res);
        return;
    }
    LOG_ERR("io_uring queue %u entry %u: %s failed: %s", qid_, idx, what, strerror(-res));
    if (first_error_.empty()) {
        first_error_ = std::string("FUSE_IO_URING_CMD_") + what + " on queue " +
                       std::to_string(qid_) + ": " + strerror(-res);
        if (res == -EOPNOTSUPP)
            first_error_ += " (the fuse module's enable_uring is N)";
    }
}

void Queue::serve(unsigned idx)
{
    Entry &e = *slots_[idx].entry;
    const char *why = nullptr;
    auto req = e.request(&why);
    if (req.empty()) {
        stats_.malformed.fetch_add(1, std::memory_order_relaxed);
        LOG_WARN("io_uring queue %u: malformed request (unique %#llx): %s", qid_,
                 (unsigned long long)e.unique(), why);
        if (auto *r = slots_[idx].rec) {
            // Answered as is: recorded as committed once the commit went in.
            r->state.store(state::kUringIdle, std::memory_order_release);
            r->commit_id = e.commit_id();
        }
        e.put_error(e.unique(), -EIO);
        commit(idx);
        return;
    }
    mark_serving(idx, req);
    dispatch(idx, req);
}

void Queue::mark_serving(unsigned idx, std::span<const std::byte> req)
{
    Slot &s = slots_[idx];
    state::UringEntryRecord *r = s.rec;
    if (!r)
        return;
    // Idle first: a successor finding the fields half-written takes the
    // request from the kernel's layout of the buffers, which is intact
    // until the reply is built.
    r->state.store(state::kUringIdle, std::memory_order_release);
    r->qid = uint16_t(qid_);
    r->commit_id = s.entry->commit_id();
    r->req_off = uint32_t(req.data() - s.entry->block());
    r->req_len = uint32_t(req.size());
    std::atomic_ref<uint16_t>(r->saved).store(0, std::memory_order_relaxed);
    r->state.store(state::kUringServing, std::memory_order_release);
}

void Queue::mark_submitted()
{
    // A COMMIT_AND_FETCH is carried out while it is submitted: the kernel
    // has the reply now, and a successor must not commit it again.  (Had
    // we died just before this, the successor's commit is refused with
    // ENOENT and it registers the buffers afresh: harmless.)
    for (unsigned idx : committing_) {
        Slot &s = slots_[idx];
        if (!s.rec)
            continue;
        s.rec->committed.store(s.rec->commit_id, std::memory_order_relaxed);
        s.rec->state.store(state::kUringIdle, std::memory_order_release);
    }
    committing_.clear();
}

bool Queue::adopt(unsigned idx)
{
    Slot &s = slots_[idx];
    Entry &e = *s.entry;
    state::UringEntryRecord *r = s.rec;
    if (!r)
        return false;
    // The kernel writes the request's unique as the commit id each time it
    // hands the entry a request, and a reply keeps it in the same place.
    // Anything but an answered commit id there is a request the kernel
    // still holds for this entry (lab-uringcrash.md, U4).
    const uint64_t cid = e.commit_id();
    if (!cid || cid == r->committed.load(std::memory_order_relaxed) || e.unique() != cid)
        return false;
    stats_.adopted.fetch_add(1, std::memory_order_relaxed);
    const uint32_t st = r->state.load(std::memory_order_acquire);
    if (st == state::kUringReplied && r->commit_id == cid) {
        LOG_INFO("io_uring queue %u: committing the reply our predecessor built for %#llx", qid_,
                 (unsigned long long)cid);
        commit(idx);
        return true;
    }
    std::span<const std::byte> req;
    const size_t slot = Entry::slot_size(payload_cap_);
    if (st == state::kUringServing && r->commit_id == cid) {
        // Served in part: the reply may have overwritten the kernel's copy
        // of the header and the payload's first bytes, but not our
        // contiguous copy of the request (and put_reply() saved what it
        // overwrote of that).
        const uint16_t saved = std::atomic_ref<uint16_t>(r->saved).load(std::memory_order_acquire);
        if (saved == UINT16_MAX || r->req_len < sizeof(fuse_in_header) || r->req_off > slot ||
            r->req_len > slot - r->req_off) {
            LOG_ERR("io_uring queue %u: request %#llx left half-answered cannot be served "
                    "again: answering EIO",
                    qid_, (unsigned long long)cid);
            e.put_error(cid, -EIO);
            commit(idx);
            return true;
        }
        e.restore_saved(saved);
        req = {e.block() + r->req_off, r->req_len};
    } else {
        const char *why = nullptr;
        req = e.request(&why);
        if (req.empty()) {
            stats_.malformed.fetch_add(1, std::memory_order_relaxed);
            // Idle before the id changes: what mark_submitted() records.
            r->state.store(state::kUringIdle, std::memory_order_release);
            r->commit_id = cid;
            e.put_error(cid, -EIO);
            commit(idx);
            return true;
        }
    }
    // The request may have run already: mark it resent, as the kernel marks
    // what FUSE_NOTIFY_RESEND hands back, so the journal answers whatever
    // the predecessor did (put_reply() takes the mark off the reply).
    std::byte *u = e.block() + (req.data() - e.block()) + offsetof(fuse_in_header, unique);
    uint64_t unique;
    std::memcpy(&unique, u, sizeof(unique));
    unique |= fuse::kUniqueResend;
    std::memcpy(u, &unique, sizeof(unique));
    LOG_INFO("io_uring queue %u: serving request %#llx our predecessor left in entry %u", qid_,
             (unsigned long long)cid, idx);
    mark_serving(idx, req);
    dispatch(idx, req);
    return true;
}

void Queue::dispatch(unsigned idx, std::span<const std::byte> req)
{
    uint32_t opcode;
    std::memcpy(&opcode, req.data() + offsetof(fuse_in_header, opcode), sizeof(opcode));
    if (opcode == FUSE_SETLKW || fault::may_stall(opcode)) {
        // May wait for an unlock that is queued behind it, here (or for a
        // test to kill us: the rest of the queue must go on meanwhile).
        stats_.offloaded.fetch_add(1, std::memory_order_relaxed);
        slots_[idx].cmd = Cmd::none;
        helpers_.fetch_add(1, std::memory_order_acq_rel);
        try {
            std::thread([this, idx, req] {
                handle(idx, req);
                {
                    std::lock_guard g(done_mu_);
                    done_.push_back(idx);
                }
                wake();
                helpers_.fetch_sub(1, std::memory_order_acq_rel); // last touch of *this
            }).detach();
            return;
        } catch (const std::system_error &ex) {
            helpers_.fetch_sub(1, std::memory_order_acq_rel);
            LOG_WARN("io_uring queue %u: no helper thread (%s): SETLKW served inline", qid_,
                     ex.what());
        }
    }
    if (!handle(idx, req, backend_io_ ? &slots_[idx].io : nullptr)) {
        stats_.backend_ops.fetch_add(1, std::memory_order_relaxed);
        if (++io_inflight_ > stats_.backend_max.load(std::memory_order_relaxed))
            stats_.backend_max.store(io_inflight_, std::memory_order_relaxed);
        submit_io(idx);
        return;
    }
    commit(idx);
}

bool Queue::handle(unsigned idx, std::span<const std::byte> req, fuse::BackendIo *io)
{
    Entry &e = *slots_[idx].entry;
    fuse::Reply &r = e.reply();
    if (io) {
        engine_.handle(req, r, false, *io);
        if (io->pending())
            return false;
    } else {
        engine_.handle(req, r);
    }
    finish(idx);
    return true;
}

void Queue::submit_io(unsigned idx)
{
    Slot &s = slots_[idx];
    if (!ring_->prep_io(s.io, kIoTag | idx)) {
        // Cannot happen (the ring has room for two SQEs per entry); flush and retry.
        ring_->submit();
        ring_->prep_io(s.io, kIoTag | idx);
    }
}

void Queue::on_io(unsigned idx, int res)
{
    Slot &s = slots_[idx];
    if (!s.io.pending())
        return; // not ours: a stray user_data would be a bug, not a reason to crash
    if (!s.io.absorb(res)) {
        submit_io(idx); // the rest of a short transfer
        return;
    }
    io_inflight_--;
    engine_.complete(s.io, s.entry->reply());
    finish(idx);
    commit(idx);
}

void Queue::finish(unsigned idx)
{
    Entry &e = *slots_[idx].entry;
    fuse::Reply &r = e.reply();
    stats_.requests.fetch_add(1, std::memory_order_relaxed);
    if (!r.should_send()) {
        // FORGET, INTERRUPT and NOTIFY_REPLY have no reply, and the kernel
        // sends them through /dev/fuse.  A ring entry is re-armed only by a
        // commit, so anything else gets one.
        LOG_WARN("io_uring queue %u: no reply for request %#llx: answering EIO", qid_,
                 (unsigned long long)e.unique());
        e.put_error(e.unique(), -EIO);
        stats_.errors.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    e.put_reply();
    if (r.error())
        stats_.errors.fetch_add(1, std::memory_order_relaxed);
    if (auto *rec = slots_[idx].rec)
        rec->state.store(state::kUringReplied, std::memory_order_release);
}

void Queue::commit(unsigned idx)
{
    Slot &s = slots_[idx];
    if (!ring_->prep_commit(uint16_t(qid_), s.entry->commit_id(), idx)) {
        // Cannot happen (an SQE per entry plus the eventfd's); flush and retry.
        ring_->submit();
        ring_->prep_commit(uint16_t(qid_), s.entry->commit_id(), idx);
    }
    s.cmd = Cmd::commit;
    committing_.push_back(idx);
}

void Queue::take_done()
{
    std::vector<unsigned> done;
    {
        std::lock_guard g(done_mu_);
        done.swap(done_);
    }
    for (unsigned idx : done)
        commit(idx);
}

} // namespace holdfast::uring
