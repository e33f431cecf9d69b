#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Drive a test VM's QEMU through its QMP socket (run-vm.sh opens one).

    qmp.py SOCK exec COMMAND [JSON-ARGUMENTS]
        run one command, print its "return" as JSON (exit 1 on an error)
    qmp.py SOCK unplug ID [TIMEOUT]
        device_del ID, then wait for its DEVICE_DELETED event; prints the
        seconds it took, exit 3 when the event does not come in TIMEOUT
        (default 30) seconds (a guest stuck in the driver's remove)
    qmp.py SOCK plug-vhost-user-fs ID CHARDEV SOCKET TAG [QUEUES]
        chardev-add CHARDEV (a client of the back-end's SOCKET), then
        device_add vhost-user-fs-pci ID with that chardev and TAG
"""
import json
import socket
import sys
import time


class Qmp:
    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self._read()  # the greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("QMP socket closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            m = self._read()
            if "event" in m:
                self.events.append(m)
                continue
            if "error" in m:
                raise RuntimeError("%s: %s" % (name, m["error"].get("desc", m["error"])))
            return m.get("return")

    def wait_event(self, name, match, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name and all(e.get("data", {}).get(k) == v
                                              for k, v in match.items()):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                m = self._read()
            except socket.timeout:
                return None
            if "event" in m:
                self.events.append(m)


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    q = Qmp(argv[1])
    op = argv[2]
    if op == "exec":
        args = json.loads(argv[4]) if len(argv) > 4 else {}
        print(json.dumps(q.cmd(argv[3], **args)))
        return 0
    if op == "unplug":
        dev = argv[3]
        timeout = float(argv[4]) if len(argv) > 4 else 30.0
        t0 = time.monotonic()
        q.cmd("device_del", id=dev)
        if q.wait_event("DEVICE_DELETED", {"device": dev}, timeout) is None:
            print("timeout")
            return 3
        print("%.3f" % (time.monotonic() - t0))
        return 0
    if op == "plug-vhost-user-fs":
        dev, chardev, path, tag = argv[3:7]
        queues = int(argv[7]) if len(argv) > 7 else 1
        q.cmd("chardev-add", id=chardev,
              backend={"type": "socket",
                       "data": {"addr": {"type": "unix", "data": {"path": path}},
                                "server": False}})
        q.cmd("device_add", driver="vhost-user-fs-pci", id=dev, chardev=chardev,
              tag=tag, **{"num-request-queues": queues})
        return 0
    sys.stderr.write("qmp.py: unknown operation %s\n" % op)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, RuntimeError, ValueError) as e:
        sys.stderr.write("qmp.py: %s\n" % e)
        sys.exit(1)
