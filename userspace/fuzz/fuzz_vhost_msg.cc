// SPDX-License-Identifier: GPL-2.0
// libFuzzer target: vhost-user messages from a hostile front-end through the reader, parser and
// Backend (vhost_msg_harness.h).
#include "vhost_msg_harness.h"

#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static holdfast::fuzz::VhostMsgHarness *h = new holdfast::fuzz::VhostMsgHarness();
    std::string err = h->run(data, size);
    if (!err.empty()) {
        fprintf(stderr, "fuzz_vhost_msg: %s\n", err.c_str());
        abort();
    }
    return 0;
}
