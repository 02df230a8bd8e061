"""A forger of sock_diag destroy notifications, for the changes tests.

Usage: destroy_forger.py. Meant to run as an unprivileged user in a user and
network namespace of its own (`unshare -U -r -n`), which gives it
CAP_NET_ADMIN over that network namespace and so the right to send to its
sock_diag multicast groups. Holds a TCP listener (so that a walker lists
the namespace), prints its port, then "ready", then sends forged destroy
notifications of a socket on port 1 to each destroy group, for ever, a few
hundred a second.
"""
import socket
import struct
import time

lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
lst.bind(("0.0.0.0", 0))
lst.listen(8)
print(lst.getsockname()[1])
print("ready", flush=True)

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
FORGED_PORT = 1


def notification(family):
    # struct inet_diag_msg: family, CLOSE, port 1 -> 0, loopback addresses.
    addr = bytes([127, 0, 0, 1]) + bytes(12) if family == socket.AF_INET else bytes(15) + b"\x01"
    body = bytes([family, 7, 0, 0]) + struct.pack(">HH", FORGED_PORT, 0) + addr + bytes(16) + bytes(4 + 8 + 12 + 8)
    # Sequence and port id 0, as the kernel's: only the sender's port id tells.
    return struct.pack("=IHHII", 16 + len(body), SOCK_DIAG_BY_FAMILY, 0, 0, 0) + body


nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
forged = [(notification(socket.AF_INET), 1), (notification(socket.AF_INET), 2),
          (notification(socket.AF_INET6), 4), (notification(socket.AF_INET6), 8)]
while True:
    for m, group in forged:
        try:
            nl.sendto(m, (0, group))
        except OSError:
            pass  # no subscriber yet
    time.sleep(0.01)
