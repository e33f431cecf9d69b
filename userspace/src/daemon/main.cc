// SPDX-License-Identifier: GPL-2.0
// holdfastd: serves a host directory over FUSE, and survives its own death.
#include "daemon/options.h"
#include "daemon/server.h"
#include "daemon/vhost_server.h"
#include "fuse/abi.h"

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace holdfast;

#ifndef HOLDFAST_VERSION
#define HOLDFAST_VERSION "0.1.0"
#endif

int main(int argc, char **argv)
{
    daemon::Options o;
    std::string e = daemon::parse(argc, argv, o);
    if (!e.empty()) {
        fprintf(stderr, "holdfastd: %s\nTry 'holdfastd --help' for more information.\n",
                e.c_str());
        return 2;
    }
    if (o.print_capabilities) {
        fputs(daemon::vhost_capabilities_json(), stdout);
        return 0;
    }
    if (o.help) {
        fputs(daemon::usage(), stdout);
        return 0;
    }
    if (o.version) {
        printf("holdfastd %s (FUSE protocol 7.%u)\n", HOLDFAST_VERSION, fuse::kOurMinor);
        return 0;
    }
    log::set_level(o.log_level);
    // Crash-proof by default: without a store to keep our fds, become the
    // child of one.  Under systemd, $NOTIFY_SOCKET already names its store.
    if (o.recovery && !getenv("NOTIFY_SOCKET"))
        return daemon::exec_under_fdstore(argc, argv);
    try {
        // A VM's virtio-fs device: the vhost-user transport.
        if (o.vhost())
            return daemon::serve_vhost(o);
        return daemon::serve(o);
    } catch (const std::exception &ex) {
        fprintf(stderr, "holdfastd: %s\n", ex.what());
        return 1;
    }
}
