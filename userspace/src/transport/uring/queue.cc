// SPDX-License-Identifier: GPL-2.0
#include "transport/uring/queue.h"

#include "transport/uring/ring.h"
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
constexpr int kRetryMs = 2;
constexpr int kMaxRetryRounds = 2500; // 5 s of "INIT not processed yet"

const char *cmd_name(int cmd)
{
    return cmd == 1 ? "REGISTER" : cmd == 2 ? "COMMIT_AND_FETCH" : "command";
}
} // namespace

Queue::Queue(fuse::Engine &engine, int devfd, unsigned qid, unsigned depth, size_t payload_cap,
             int settle_ms)
    : engine_(engine), devfd_(devfd), qid_(qid), depth_(depth ? depth : 1),
      payload_cap_(payload_cap), settle_ms_(settle_ms),
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
        for (auto &s : slots_)
            s.entry = std::make_unique<Entry>(payload_cap_);
    } catch (const std::bad_alloc &) {
        set_state(State::failed, "io_uring queue " + std::to_string(qid_) + ": no memory for " +
                                     std::to_string(depth_) + " entries of " +
                                     std::to_string(payload_cap_) + " bytes");
        return;
    }
    Ring ring;
    int r = ring.init(depth_ + 1, devfd_);
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
    for (unsigned i = 0; i < depth_; i++) {
        ring.prep_register(uint16_t(qid_), slots_[i].entry->iov(), i);
        slots_[i].cmd = Cmd::reg;
    }
    stats_.live.store(depth_, std::memory_order_relaxed);

    int rounds = 0;
    for (;;) {
        r = armed_ ? ring.submit_and_wait(1) : ring.submit_and_wait_ms(settle_ms_);
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
    ring.submit();
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
    if (ud >= slots_.size())
        return;
    Slot &s = slots_[ud];
    if (res == 0) {
        // A request: REGISTER worked, and since the kernel only uses the
        // ring once every queue has an entry, the ring is up.
        if (!armed_ && retry_.empty())
            armed_ = true;
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
        e.put_error(e.unique(), -EIO);
        commit(idx);
        return;
    }
    uint32_t opcode;
    std::memcpy(&opcode, req.data() + offsetof(fuse_in_header, opcode), sizeof(opcode));
    if (opcode == FUSE_SETLKW) {
        // May wait for an unlock that is queued behind it, here.
        stats_.offloaded.fetch_add(1, std::memory_order_relaxed);
        slots_[idx].cmd = Cmd::none;
        helpers_.fetch_add(1, std::memory_order_acq_rel);
        try {
            std::thread([this, idx, &e, req] {
                handle(e, req);
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
    handle(e, req);
    commit(idx);
}

void Queue::handle(Entry &e, std::span<const std::byte> req)
{
    fuse::Reply &r = e.reply();
    engine_.handle(req, r);
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
