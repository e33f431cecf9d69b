// SPDX-License-Identifier: GPL-2.0
// holdfastctl: talks to a running holdfastd through its control socket.
#include "util/control.h"

#include <cstdio>
#include <cstring>
#include <string>

using namespace holdfast;

static int usage(FILE *f, int rc)
{
    fputs("Usage: holdfastctl status MOUNTPOINT\n"
          "\n"
          "  status MOUNTPOINT   print the server's state as JSON\n",
          f);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
        return usage(stdout, 0);
    if (argc != 3)
        return usage(stderr, 2);
    std::string cmd = argv[1];
    if (cmd != "status") {
        fprintf(stderr, "holdfastctl: unknown command '%s'\n", cmd.c_str());
        return usage(stderr, 2);
    }
    std::string path = control::socket_path(argv[2]);
    try {
        std::string reply = control::request(path, cmd);
        fputs(reply.c_str(), stdout);
        return reply.find("\"error\"") == 0 ? 1 : 0;
    } catch (const std::exception &e) {
        fprintf(stderr, "holdfastctl: no holdfastd serving %s (%s)\n", argv[2], e.what());
        return 1;
    }
}
