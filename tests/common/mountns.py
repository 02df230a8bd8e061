"""A mount namespace whose mountinfo has long lines, and network namespaces
no process is in, reachable only through nsfs bind mounts in it, for the
integration tests.

Usage: mountns.py DIR STEP... Run as root. Unshares a mount namespace
(every mount made private, so nothing reaches the host's) and a network
namespace of its own (so that it is the lowest pid of its network
namespace: the process whose mountinfo a pass reads), mounts a tmpfs on
DIR, then takes each STEP in turn:

- long:N:LEN  N tmpfs mounts under DIR whose mountinfo lines are LEN bytes
              (a long source name; LEN up to some 4,000);
- stack:N     N bind mounts stacked on one point under DIR, each with a
              mountinfo line of some 3,600 bytes (its root and mount point
              are long paths), to make a long mountinfo cheaply;
- ns:NAME     a new network namespace, bind-mounted on DIR/NAME, with a
              TCP connection on 127.0.0.1 closed there so that one side is
              in TIME_WAIT: prints "ns NAME NETNS LOCAL_PORT REMOTE_PORT"
              (the TIME_WAIT socket's ports).

Then prints "ready" and exits when its stdin closes; its namespaces and
mounts go with it.
"""
import ctypes
import os
import sys
import time

from loopback import CLONE_NEWNET, lo_up, setns, time_wait

CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def check(ret, what):
    if ret != 0:
        raise OSError(ctypes.get_errno(), what)


def mount(source, target, fstype, flags, data=None):
    check(libc.mount(source.encode(), target.encode(), fstype and fstype.encode(), flags, data), "mount " + target)


def mountinfo_line(point):
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if line.split(" ")[4] == point][-1]


def long_mounts(top, n, length):
    for i in range(n):
        point = os.path.join(top, "long-%d" % i)
        os.mkdir(point)
        mount("x", point, "tmpfs", 0, b"size=16k")
        short = len(mountinfo_line(point))
        check(libc.umount(point.encode()), "umount " + point)
        mount("x" * (length - short + 1), point, "tmpfs", 0, b"size=16k")


def stacked_mounts(top, n):
    # A long path, inside the tmpfs: the root of each bind mount of it.
    deep = os.path.join(top, "stack")
    for i in range(7):
        deep = os.path.join(deep, "%d" % i + "d" * 240)
    os.makedirs(deep)
    for _ in range(n):
        mount(deep, deep, None, MS_BIND)


def time_wait_ns(top, name):
    point = os.path.join(top, name)
    open(point, "w").close()
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    check(libc.unshare(CLONE_NEWNET), "unshare")
    mount("/proc/thread-self/ns/net", point, None, MS_BIND)
    netns = os.stat(point).st_ino
    lo_up()
    ports = time_wait()
    want = ":%04X 0100007F:%04X 06 " % ports
    for _ in range(200):
        with open("/proc/thread-self/net/tcp") as f:
            if any(want in line for line in f):
                break
        time.sleep(0.01)
    else:
        sys.exit("no TIME_WAIT in " + name)
    setns(home)
    os.close(home)
    print("ns", name, netns, *ports)


top = sys.argv[1]
check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare")
mount("none", "/", None, MS_REC | MS_PRIVATE)
mount("procspy-mountns", top, "tmpfs", 0, b"size=4m")
for step in sys.argv[2:]:
    kind, _, rest = step.partition(":")
    if kind == "long":
        n, length = rest.split(":")
        long_mounts(top, int(n), int(length))
    elif kind == "stack":
        stacked_mounts(top, int(rest))
    elif kind == "ns":
        time_wait_ns(top, rest)
    else:
        sys.exit("unknown step " + step)
print("ready", flush=True)
sys.stdin.read()
