"""A churn generator for tests/churn.rs: short-lived processes that open and
close loopback sockets at a high rate, some in fresh network namespaces.

Usage: churn.py LOG SECS MAX_CHILDREN [NETNS_EVERY [LIVE]]

Forks children for SECS seconds or until MAX_CHILDREN have been forked,
keeping at most LIVE (default 16) alive at once. Each child opens a TCP
listener, a connected pair through it and a bound and a connected UDP socket
(v4 or v6, on 127.0.0.0/8 or ::1), holds them a few milliseconds, closes
them (mostly with RST, so few TIME_WAIT lines pile up; some gracefully) and
exits. Every NETNS_EVERY-th child (0 = none) first moves to a fresh network
namespace with unshare(CLONE_NEWNET) and brings its lo up.

The log (LOG, appended to with single write(2)s, so no user-space buffer
delays a line and lines of different processes never interleave):

    P pid start_time            this generator (it holds no socket)
    S pid start_time            a child, written before it opens any socket
    I pid inode                 a socket of that child, written right after the
                                socket is created and before it is used
    E pid                       the child is about to exit (after every I line)

start_time is field 22 of /proc/PID/stat, so (pid, start_time) names a
process across pid reuse. A socket fd is visible in /proc before its I line
exists: a reader must re-read the log after its walk, and only the log as it
stands after this generator exits (every child reaped) is final.

Prints "ready" once the P line is written, and at the end one line:
"children N sockets N netns N errors N secs F".
"""
import ctypes
import fcntl
import os
import random
import socket
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def start_time(pid="self"):
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def main():
    log_path, secs, max_children = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    netns_every = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    live_max = int(sys.argv[5]) if len(sys.argv) > 5 else 16
    # How long a child holds its sockets at most; slower kernels (under
    # emulation) need longer for a walk to catch one.
    hold_max = float(os.environ.get("PROCSPY_CHURN_HOLD_MS", "8")) / 1000
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    libc = ctypes.CDLL(None, use_errno=True)
    os.write(log, b"P %d %d\n" % (os.getpid(), start_time()))
    print("ready", flush=True)

    children = sockets = netns = errors = 0
    live = set()
    t0 = time.monotonic()
    deadline = t0 + secs
    while children < max_children and time.monotonic() < deadline:
        while len(live) >= live_max:
            pid, status = os.wait()
            live.discard(pid)
            if status != 0:
                errors += 1
        in_netns = netns_every > 0 and children % netns_every == netns_every - 1
        v6 = children % 3 == 2
        graceful = children % 8 == 0
        hold = random.random() * hold_max
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(log, libc, in_netns, v6, graceful, hold)
            finally:
                os._exit(code)
        children += 1
        sockets += 6 if in_netns else 5
        netns += in_netns
        live.add(pid)
        # Reap whatever ended meanwhile.
        while live:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            live.discard(pid)
            if status != 0:
                errors += 1
    while live:
        pid, status = os.wait()
        live.discard(pid)
        if status != 0:
            errors += 1
    os.close(log)
    took = time.monotonic() - t0
    print(f"children {children} sockets {sockets} netns {netns} errors {errors} secs {took:.3f}", flush=True)


def child(log, libc, in_netns, v6, graceful, hold):
    me = os.getpid()
    os.write(log, b"S %d %d\n" % (me, start_time()))
    held = []

    def new(fam, kind):
        s = socket.socket(fam, kind)
        os.write(log, b"I %d %d\n" % (me, os.fstat(s.fileno()).st_ino))
        held.append(s)
        return s

    if in_netns:
        if libc.unshare(CLONE_NEWNET) != 0:
            return 3
        ctl = new(socket.AF_INET, socket.SOCK_DGRAM)
        ifr = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh", fcntl_ioctl(ctl, SIOCGIFFLAGS, ifr)[:18])[1]
        fcntl_ioctl(ctl, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
    if v6:
        fam, host = socket.AF_INET6, "::1"
    else:
        fam, host = socket.AF_INET, "127.%d.%d.%d" % (random.randrange(256), random.randrange(256), random.randrange(1, 255))
    lst = new(fam, socket.SOCK_STREAM)
    lst.bind((host, 0))
    lst.listen(4)
    cli = new(fam, socket.SOCK_STREAM)
    cli.connect(lst.getsockname()[:2])
    srv, _ = lst.accept()
    os.write(log, b"I %d %d\n" % (me, os.fstat(srv.fileno()).st_ino))
    held.append(srv)
    bound = new(fam, socket.SOCK_DGRAM)
    bound.bind((host, 0))
    conn = new(fam, socket.SOCK_DGRAM)
    conn.connect(bound.getsockname()[:2])
    conn.send(b"x")
    cli.sendall(b"y")
    srv.recv(1)
    time.sleep(hold)
    if not graceful:
        for s in (cli, srv):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # Close some one by one, leave the rest to exit.
    for s in held[: len(held) // 2]:
        s.close()
    os.write(log, b"E %d\n" % me)
    return 0


def fcntl_ioctl(sock, req, arg):
    return fcntl.ioctl(sock.fileno(), req, arg)


if __name__ == "__main__":
    main()
