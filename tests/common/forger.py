"""A forger of sock_diag replies, for the integration tests.

Usage: forger.py PORT_ID. Meant to run as an unprivileged user in a user and
network namespace of its own (`unshare -U -r -n`), which gives it
CAP_NET_ADMIN over that network namespace and so the right to unicast
netlink messages to any socket in it. Holds a TCP listener and a bound UDP
socket, prints "proto inode port" for each, then "ready", then sends forged
sock_diag replies to PORT_ID (the walker's likely port id: its pid) for
ever: a socket that does not exist, and an NLMSG_DONE to end a dump early,
for each of the first sequence numbers.
"""
import os
import socket
import struct
import sys

port_id = int(sys.argv[1])
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.bind(("0.0.0.0", 0))
tcp.listen(8)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", 0))
for s, proto in ((tcp, "tcp"), (udp, "udp")):
    print(proto, os.fstat(s.fileno()).st_ino, s.getsockname()[1])
print("ready", flush=True)

NETLINK_SOCK_DIAG = 4
NLMSG_DONE = 3
SOCK_DIAG_BY_FAMILY = 20
FORGED_INODE = 0x0F0F0F0F
# struct inet_diag_msg: AF_INET, LISTEN, port 1 on 0.0.0.0, uid 0, the inode.
diag = bytes([2, 10, 0, 0]) + struct.pack(">HH", 1, 0) + bytes(32 + 4 + 8 + 12) + struct.pack("=II", 0, FORGED_INODE)


def msg(kind, seq, body):
    return struct.pack("=IHHII", 16 + len(body), kind, 0x2, seq, port_id) + body


forged = [msg(kind, seq, body) for seq in range(1, 5) for kind, body in ((SOCK_DIAG_BY_FAMILY, diag), (NLMSG_DONE, bytes(4)))]
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
while True:
    for m in forged:
        try:
            nl.sendto(m, (port_id, 0))
        except OSError:
            pass  # no socket at that port id now, or one that refuses us
