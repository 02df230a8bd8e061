"""An unprivileged user's hoard of network namespaces, for the integration
tests (the fd-table exhaustion attack).

Usage: ns_hoarder.py COUNT HOLD. Meant to run as nobody, with an fd limit
raised for it beforehand (it holds one or two fds per namespace). Unshares a
user namespace (which gives it CAP_SYS_ADMIN over the namespaces it makes
next), then COUNT network namespaces, one after another. In each it binds a
UDP socket to 127.0.0.1 (IP_FREEBIND: the namespace's loopback stays down),
so that each namespace has a line to list; where HOLD is "fd" it also keeps
an fd open on the namespace itself (/proc/thread-self/ns/net), where HOLD is
"sock" only the socket holds it. Then one more network namespace, so that
the process itself is in none of the COUNT: each is found only through an
fd. Prints one line per namespace, "NETNS FD INODE" (its socket's fd and
inode), then "ready", and exits when its stdin closes.
"""
import ctypes
import os
import socket
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
IP_FREEBIND = 15
libc = ctypes.CDLL(None, use_errno=True)


def unshare(flags):
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), "unshare")


count, hold = int(sys.argv[1]), sys.argv[2]
if hold not in ("fd", "sock"):
    sys.exit("unknown HOLD " + hold)
unshare(CLONE_NEWUSER)
held = []
for _ in range(count):
    unshare(CLONE_NEWNET)
    netns = os.stat("/proc/thread-self/ns/net").st_ino
    if hold == "fd":
        held.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    udp.bind(("127.0.0.1", 0))
    held.append(udp)
    print(netns, udp.fileno(), os.fstat(udp.fileno()).st_ino)
unshare(CLONE_NEWNET)
print("ready", flush=True)
sys.stdin.read()
