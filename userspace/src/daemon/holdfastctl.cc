// SPDX-License-Identifier: GPL-2.0
// holdfastctl: talks to a running holdfastd through its control socket.
#include "util/control.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

using namespace holdfast;

static int usage(FILE *f, int rc)
{
    fputs("Usage: holdfastctl COMMAND MOUNTPOINT [ARGS]\n"
          "\n"
          "  status MOUNTPOINT                    print the server's state as JSON\n"
          "  upgrade MOUNTPOINT [--binary PATH]   hand the mount to a new server process\n"
          "                                       (PATH: a new holdfastd binary)\n"
          "  stall MOUNTPOINT OPCODE before|mid|after [COUNT]\n"
          "                                       fault injection (--fault-injection only)\n"
          "  unstall MOUNTPOINT                   release stalled requests\n",
          f);
    return rc;
}

static long field_long(const std::string &json, const char *key)
{
    std::string k = std::string("\"") + key + "\":";
    auto p = json.find(k);
    return p == std::string::npos ? -1 : atol(json.c_str() + p + k.size());
}

int main(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
        return usage(stdout, 0);
    if (argc < 3)
        return usage(stderr, 2);
    std::string cmd = argv[1], mnt = argv[2];
    std::string line;
    if (cmd == "status" && argc == 3) {
        line = "status";
    } else if (cmd == "upgrade" && (argc == 3 || (argc == 5 && !strcmp(argv[3], "--binary")))) {
        line = argc == 5 ? std::string("upgrade ") + argv[4] : "upgrade";
    } else if (cmd == "stall" && (argc == 5 || argc == 6)) {
        line = std::string("stall ") + argv[3] + " " + argv[4] + (argc == 6 ? std::string(" ") + argv[5] : "");
    } else if (cmd == "unstall" && argc == 3) {
        line = "unstall";
    } else {
        fprintf(stderr, "holdfastctl: bad command line for '%s'\n", cmd.c_str());
        return usage(stderr, 2);
    }
    std::string path = control::socket_path(mnt);
    std::string reply;
    try {
        reply = control::request(path, line);
    } catch (const std::exception &e) {
        fprintf(stderr, "holdfastctl: no holdfastd serving %s (%s)\n", mnt.c_str(), e.what());
        return 1;
    }
    if (reply.find("\"error\"") != std::string::npos) {
        fputs(reply.c_str(), stderr);
        return 1;
    }
    if (cmd != "upgrade") {
        fputs(reply.c_str(), stdout);
        return 0;
    }
    // Wait for the successor to answer on the same socket.
    long old_pid = field_long(reply, "pid");
    auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
        try {
            std::string st = control::request(path, "status");
            long pid = field_long(st, "pid");
            if (pid > 0 && pid != old_pid) {
                double ms = std::chrono::duration<double, std::milli>(
                                std::chrono::steady_clock::now() - t0)
                                .count();
                printf("{\"upgraded\":true,\"old_pid\":%ld,\"new_pid\":%ld,\"handover_ms\":%.1f}\n",
                       old_pid, pid, ms);
                return 0;
            }
        } catch (const std::exception &) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    fprintf(stderr, "holdfastctl: no new server answered within 20 s\n");
    return 1;
}
