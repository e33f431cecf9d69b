// SPDX-License-Identifier: GPL-2.0
// A virtqueue served by several worker threads the way holdfastd's vhost
// back-end serves it (wait_pop / complete, one of them polling the kick
// fd), with a guest thread offering requests and kicking.  Mostly here for
// scripts/check-tsan.sh: the fuzz targets drive the queues from one thread.
#include "transport/vhost_user/memory.h"
#include "transport/vhost_user/virtqueue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <sys/eventfd.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace holdfast;
using namespace holdfast::vhost;

namespace {

constexpr uint64_t kGpa = 0x10000, kUva = 0x7f0000010000ull;
constexpr uint16_t kNum = 64;
constexpr size_t kAvail = 0x8000, kUsed = 0xc000;

uint16_t load_acquire(const uint8_t *p)
{
    return __atomic_load_n(reinterpret_cast<const uint16_t *>(p), __ATOMIC_ACQUIRE);
}

void serve_with_threads(uint64_t features, unsigned workers, unsigned requests)
{
    std::vector<uint8_t> mem(0x20000);
    std::string err;
    auto table = MemoryTable::over({{kGpa, mem.size(), kUva, 0}}, {mem.data()}, err);
    ASSERT_TRUE(table) << err;
    for (uint16_t i = 0; i < kNum; i++) {
        Desc d[1] = {{kGpa + 0x10000 + 64 * i, 64, kDescWrite, 0}};
        std::memcpy(mem.data() + 16 * i, d, sizeof(d));
    }
    Virtqueue vq(0);
    vq.set_features(features);
    ASSERT_EQ(vq.set_num(kNum), "");
    ASSERT_EQ(vq.set_addr({0, 0, kUva, kUva + kUsed, kUva + kAvail, 0}), "");
    ASSERT_EQ(vq.set_memory(table), "");
    Fd kick(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    vq.set_call(Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)));
    vq.set_kick(Fd(dup(kick.get())));
    vq.set_enabled(true);

    std::atomic<unsigned> served{0};
    std::vector<std::thread> threads;
    for (unsigned w = 0; w < workers; w++)
        threads.emplace_back([&] {
            Chain c;
            while (vq.wait_pop(c)) {
                // The reply goes into the writable buffer, as a worker's would.
                std::memset(c.out[0].iov_base, 0x5a, 8);
                served.fetch_add(1, std::memory_order_relaxed);
                vq.complete(c, 8);
            }
        });

    // The guest: offers heads while there is room on the ring, kicks.
    uint8_t *avail = mem.data() + kAvail, *used = mem.data() + kUsed;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    uint16_t idx = 0;
    for (unsigned i = 0; i < requests && std::chrono::steady_clock::now() < deadline;) {
        if (uint16_t(idx - load_acquire(used + 2)) >= kNum) {
            std::this_thread::yield();
            continue;
        }
        uint16_t head = uint16_t(i % kNum);
        __atomic_store_n(reinterpret_cast<uint16_t *>(avail + 4 + 2 * (idx % kNum)), head,
                         __ATOMIC_RELAXED);
        __atomic_store_n(reinterpret_cast<uint16_t *>(avail + 2), ++idx, __ATOMIC_RELEASE);
        uint64_t one = 1;
        EXPECT_EQ(write(kick.get(), &one, sizeof(one)), ssize_t(sizeof(one)));
        i++;
    }
    while (load_acquire(used + 2) != idx && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    vq.shutdown();
    for (auto &t : threads)
        t.join();
    EXPECT_EQ(idx, uint16_t(requests));
    EXPECT_EQ(load_acquire(used + 2), uint16_t(requests));
    EXPECT_EQ(served.load(), requests);
    EXPECT_EQ(vq.served(), requests);
    EXPECT_EQ(vq.bad_chains(), 0u);
}

} // namespace

TEST(VhostThreads, WorkersServeEveryRequestOnce)
{
    serve_with_threads(kFVersion1 | kFProtocolFeatures, 4, 5000);
}

TEST(VhostThreads, WorkersWithEventIdx)
{
    serve_with_threads(kFVersion1 | kFProtocolFeatures | kFEventIdx, 3, 5000);
}
