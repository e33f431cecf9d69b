// SPDX-License-Identifier: GPL-2.0
// libFuzzer target: request sequences through the Engine and the
// passthrough filesystem over a sandboxed scratch tree (engine_harness.h).
#include "engine_harness.h"

#include <cstdio>
#include <cstdlib>

// Sanitizer reports from the sandbox thread are written from the host's
// view (sandbox.h).
extern "C" void __asan_on_error() { holdfast::fuzz::Sandbox::leave_if_worker(); }
extern "C" void __ubsan_on_report() { holdfast::fuzz::Sandbox::leave_if_worker(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static holdfast::fuzz::EngineHarness *h = new holdfast::fuzz::EngineHarness();
    std::string err = h->run(data, size);
    if (!err.empty()) {
        fprintf(stderr, "fuzz_engine: %s\n", err.c_str());
        abort();
    }
    return 0;
}
