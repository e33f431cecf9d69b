// SPDX-License-Identifier: GPL-2.0
// libFuzzer target: a hostile guest's split ring over a synthetic memory table through the
// descriptor-chain walker and Virtqueue (virtqueue_harness.h).
#include "virtqueue_harness.h"

#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static holdfast::fuzz::VirtqueueHarness *h = new holdfast::fuzz::VirtqueueHarness();
    std::string err = h->run(data, size);
    if (!err.empty()) {
        fprintf(stderr, "fuzz_virtqueue: %s\n", err.c_str());
        abort();
    }
    return 0;
}
