// SPDX-License-Identifier: GPL-2.0
// holdfastctl: talks to a running holdfastd through its control socket.
#include "util/control.h"
#include "vmm/qmp.h"

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
          "  unstall MOUNTPOINT                   release stalled requests\n"
          "\n"
          "Usage: holdfastctl vm-reconnect --qmp QMP --device ID --socket SOCK [--timeout S]\n"
          "\n"
          "  vm-reconnect                         replace the VM's vhost-user-fs-pci device ID\n"
          "                                       (its back-end died) by an identical one\n"
          "                                       connected to SOCK, through QEMU's QMP socket\n"
          "                                       QMP; holdfastd must be listening on SOCK.\n"
          "                                       --timeout: how long the guest may take to\n"
          "                                       release the old device (default 10 s)\n",
          f);
    return rc;
}

// holdfastctl vm-reconnect: what holdfastd --qmp-socket does by itself,
// for VM managers that own the QMP socket (and run holdfastd without it).
static int vm_reconnect(int argc, char **argv)
{
    std::string qmp;
    vmm::ReplugOptions o;
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "holdfastctl: %s needs an argument\n", a.c_str());
            return 2;
        }
        std::string v = argv[++i];
        if (a == "--qmp") {
            qmp = v;
        } else if (a == "--device") {
            o.device = v;
        } else if (a == "--socket") {
            o.socket_path = v;
        } else if (a == "--timeout") {
            char *end = nullptr;
            double s = strtod(v.c_str(), &end);
            if (!end || *end || !(s > 0 && s <= 3600)) {
                fprintf(stderr, "holdfastctl: --timeout '%s' is not 0..3600 seconds\n", v.c_str());
                return 2;
            }
            o.delete_timeout_ms = int(s * 1000);
        } else {
            fprintf(stderr, "holdfastctl: vm-reconnect: unknown option '%s'\n", a.c_str());
            return 2;
        }
    }
    if (qmp.empty() || o.device.empty() || o.socket_path.empty()) {
        fprintf(stderr, "holdfastctl: vm-reconnect needs --qmp, --device and --socket\n");
        return 2;
    }
    o.log = [](const std::string &s) { fprintf(stderr, "holdfastctl: %s\n", s.c_str()); };
    vmm::ReplugResult r = vmm::replug_at(qmp, o);
    printf("{\"status\":\"%s\",\"message\":%s}\n", vmm::replug_status_name(r.status),
           vmm::json::quote(r.message).c_str());
    return r.status == vmm::ReplugStatus::ok ? 0 : 1;
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
    if (argc >= 2 && !strcmp(argv[1], "vm-reconnect"))
        return vm_reconnect(argc, argv);
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
