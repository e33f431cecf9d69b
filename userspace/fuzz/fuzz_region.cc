// SPDX-License-Identifier: GPL-2.0
// libFuzzer target: a corrupted state region through Region::attach and the
// tables' recover() (region_harness.h).
#include "region_harness.h"

#include <cstdio>
#include <cstdlib>

// Sanitizer reports from the sandbox thread are written from the host's
// view (sandbox.h).
extern "C" void __asan_on_error() { holdfast::fuzz::Sandbox::leave_if_worker(); }
extern "C" void __ubsan_on_report() { holdfast::fuzz::Sandbox::leave_if_worker(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static holdfast::fuzz::RegionHarness *h = new holdfast::fuzz::RegionHarness();
    std::string err = h->run(data, size);
    if (!err.empty()) {
        fprintf(stderr, "fuzz_region: %s\n", err.c_str());
        abort();
    }
    return 0;
}
