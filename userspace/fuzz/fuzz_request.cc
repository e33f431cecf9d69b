// SPDX-License-Identifier: GPL-2.0
// libFuzzer target: Reader, parse_request, Reply and the Engine's decoder
// with no filesystem behind it (request_harness.h).
#include "request_harness.h"

#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static holdfast::fuzz::RequestHarness *h = new holdfast::fuzz::RequestHarness();
    std::string err = h->run(data, size);
    if (!err.empty()) {
        fprintf(stderr, "fuzz_request: %s\n", err.c_str());
        abort();
    }
    return 0;
}
