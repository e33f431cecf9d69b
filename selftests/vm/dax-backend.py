#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""A vhost-user-fs back-end that serves no FUSE at all: it only exercises
QEMU's DAX window (qemu/patches/10.0) for selftests/vm/dax-smoke.sh.

    dax-backend.py SOCKET [--shmem-size N] [--map]

Listens on SOCKET, speaks just enough vhost-user for QEMU to realize and
start the device (REPLY_ACK, BACKEND_REQ and SHMEM offered; LOG_ALL and
LOG_SHMFD too, though it logs nothing, so that QEMU blocks migration only
for the window's sake), answers
GET_SHMEM_CONFIG (44) with N for region 0 (default: 0, no opinion), and
with --map, once the guest driver started the device, talks to QEMU on
the back-end channel:

  - requests QEMU must refuse (ack != 0): shmid 1, an unaligned offset, a
    range past the window, an offset+len that overflows, MAP without an
    fd, an unaligned file offset;
  - MAP (9) of a memfd whose first page says "HOLD" at window offset 2M,
    read-write, and again read-only at 4M (acks 0);
  - waits until the guest (dax-init, dax.mode=map) has read the pattern,
    written through the read-only mapping and left a marker through the
    read-write one (offset 2M + 4K), checks that the read-only write did
    not reach the file, then UNMAP (10)s both (acks 0).

Prints TAP lines ("ok N ..." / "not ok N ...") on stdout.
"""
import mmap
import os
import socket
import struct
import sys
import threading
import time

HDR = struct.Struct("<III")
F_VERSION = 0x1
F_REPLY = 0x4
F_NEED_REPLY = 0x8

GET_FEATURES, SET_FEATURES, GET_VRING_BASE = 1, 2, 11
SET_VRING_KICK, GET_PROTOCOL_FEATURES = 12, 15
SET_BACKEND_REQ_FD, GET_SHMEM_CONFIG = 21, 44
BACKEND_SHMEM_MAP, BACKEND_SHMEM_UNMAP = 9, 10

VIRTIO_F_VERSION_1 = 1 << 32
VHOST_USER_F_PROTOCOL_FEATURES = 1 << 30
VHOST_F_LOG_ALL = 1 << 26
P_LOG_SHMFD, P_REPLY_ACK, P_BACKEND_REQ, P_SHMEM = 1 << 1, 1 << 3, 1 << 5, 1 << 20

MMAP = struct.Struct("<B7xQQQQ")  # shmid, fd_offset, shm_offset, len, flags
M = 1 << 20
MAGIC = b"HOLD"        # the guest reads 0x444c4f48 at window offset 2M
MARKER = 0xD0D0D0D0    # the guest writes it at window offset 2M + 4K

n = 0
failed = 0


def tap(good, what):
    global n, failed
    n += 1
    failed += not good
    print(f"{'ok' if good else 'not ok'} {n} backend: {what}", flush=True)


class Channel:
    """The back-end request channel (SET_BACKEND_REQ_FD)."""

    def __init__(self, fd):
        self.s = socket.socket(fileno=fd)

    def request(self, req, payload, fd=None):
        msg = HDR.pack(req, F_VERSION | F_NEED_REPLY, len(payload)) + payload
        if fd is None:
            self.s.sendall(msg)
        else:
            socket.send_fds(self.s, [msg], [fd])
        hdr = self._read(HDR.size)
        r, flags, size = HDR.unpack(hdr)
        body = self._read(size)
        if r != req or not flags & F_REPLY or size != 8:
            raise RuntimeError(f"bad reply {r} {flags:#x} {size}")
        return struct.unpack("<Q", body)[0]

    def _read(self, size):
        b = b""
        while len(b) < size:
            c = self.s.recv(size - len(b))
            if not c:
                raise EOFError("QEMU closed the back-end channel")
            b += c
        return b

    def map(self, shmid, fd_offset, shm_offset, length, rw, fd):
        return self.request(BACKEND_SHMEM_MAP,
                            MMAP.pack(shmid, fd_offset, shm_offset, length, 1 if rw else 0), fd)

    def unmap(self, shmid, shm_offset, length):
        return self.request(BACKEND_SHMEM_UNMAP, MMAP.pack(shmid, 0, shm_offset, length, 0))


def exercise(ch, window):
    """The --map sequence, in its own thread (the front-end channel must keep going)."""
    try:
        fd = os.memfd_create("dax-backend")
        os.ftruncate(fd, 2 * M)
        mem = mmap.mmap(fd, 2 * M)
        mem[0:4096] = MAGIC * 1024
        bad = [
            ("shmid 1", lambda: ch.map(1, 0, 2 * M, 2 * M, True, fd)),
            ("unaligned window offset", lambda: ch.map(0, 0, 2 * M + 1, 4096, True, fd)),
            ("range past the window", lambda: ch.map(0, 0, window - M, 2 * M, True, fd)),
            ("offset + length overflows", lambda: ch.map(0, 0, (1 << 64) - 4096, 8192, True, fd)),
            ("MAP without an fd", lambda: ch.map(0, 0, 2 * M, 2 * M, True, None)),
            ("unaligned file offset", lambda: ch.map(0, 100, 2 * M, 4096, True, fd)),
            ("UNMAP past the window", lambda: ch.unmap(0, window, 4096)),
        ]
        for what, call in bad:
            r = call()
            tap(r != 0, f"QEMU refuses {what} (ack {r})")
        r = ch.map(0, 0, 2 * M, 2 * M, True, fd)
        tap(r == 0, f"MAP memfd read-write at window 2M (ack {r})")
        r = ch.map(0, 0, 4 * M, 2 * M, False, fd)
        tap(r == 0, f"MAP memfd read-only at window 4M (ack {r})")
        deadline = time.time() + 120
        while time.time() < deadline:
            if struct.unpack_from("<I", mem, 4096)[0] == MARKER:
                break
            time.sleep(0.1)
        tap(struct.unpack_from("<I", mem, 4096)[0] == MARKER,
            "the guest's write through the read-write mapping reached the file")
        tap(mem[0:4] == MAGIC, "the guest's write through the read-only mapping did not")
        r = ch.unmap(0, 2 * M, 2 * M)
        tap(r == 0, f"UNMAP window 2M (ack {r})")
        r = ch.unmap(0, 4 * M, 2 * M)
        tap(r == 0, f"UNMAP window 4M (ack {r})")
    except Exception as e:  # noqa: BLE001 - a test: say what broke
        tap(False, f"back-end channel: {e!r}")


def main():
    path = sys.argv[1]
    shmem_size = 0
    do_map = "--map" in sys.argv
    if "--shmem-size" in sys.argv:
        shmem_size = int(sys.argv[sys.argv.index("--shmem-size") + 1])
    window = int(os.environ.get("DAX_WINDOW", 64 * M))
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    s, _ = srv.accept()
    channel = None
    started = False
    kicks = set()
    while True:
        try:
            hdr, fds, _, _ = socket.recv_fds(s, HDR.size, 8)
        except ConnectionResetError:
            break
        if not hdr:
            break
        req, flags, size = HDR.unpack(hdr)
        body = b""
        while len(body) < size:
            c = s.recv(size - len(body))
            if not c:
                return
            body += c
        reply = None
        if req == GET_FEATURES:
            # LOG_ALL and LOG_SHMFD only so that QEMU's other migration
            # blockers stay away (dax-smoke.sh checks the window's).
            reply = struct.pack("<Q", VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES |
                                VHOST_F_LOG_ALL)
        elif req == GET_PROTOCOL_FEATURES:
            reply = struct.pack("<Q", P_LOG_SHMFD | P_REPLY_ACK | P_BACKEND_REQ | P_SHMEM)
        elif req == GET_VRING_BASE:
            reply = body[:4] + struct.pack("<I", 0)
        elif req == GET_SHMEM_CONFIG:
            sizes = [0] * 256
            sizes[0] = shmem_size
            reply = struct.pack("<II256Q", 1 if shmem_size else 0, 0, *sizes)
        elif req == SET_BACKEND_REQ_FD:
            channel = Channel(fds.pop(0))
        elif req == SET_VRING_KICK:
            kicks.add(struct.unpack_from("<Q", body)[0] & 0xFF)
        elif flags & F_NEED_REPLY:
            reply = struct.pack("<Q", 0)  # REPLY_ACK: done
        if reply is None and flags & F_NEED_REPLY:
            reply = struct.pack("<Q", 0)
        for fd in fds:
            os.close(fd)
        if reply is not None:
            s.sendall(HDR.pack(req, F_VERSION | F_REPLY, len(reply)) + reply)
        # Both queues (hiprio + 1 request queue) kicked: the device runs.
        if do_map and not started and len(kicks) >= 2:
            started = True
            if channel is None:
                tap(False, "QEMU set up a back-end channel")
            else:
                threading.Thread(target=exercise, args=(channel, window), daemon=True).start()
    if do_map and not started:
        tap(False, "the guest started the device")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
