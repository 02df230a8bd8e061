"""Sockets on 127.0.0.1 in the network namespace the caller is in, and the
way into another: what the helper scripts beside this one make their
namespaces' lines with. Imported from the script's own directory (a copy
for an unprivileged user carries this file beside it).
"""
import ctypes
import fcntl
import socket
import struct

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    """Enter the network namespace open at fd (this thread only)."""
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def lo_up():
    """The namespace's loopback up, as `ip link set lo up` does (no ip needed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sh22x", b"lo", 0))
        flags = struct.unpack("16sh22x", ifr)[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def tcp_pair():
    """A TCP listener on 127.0.0.1 and a connection to it: (listener, client, server)."""
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    return lst, cli, srv


def open_sockets():
    """tcp_pair's three and a bound UDP socket: [listener, client, server, udp]."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    return [*tcp_pair(), udp]


def time_wait():
    """A TCP connection closed client first, so that the client's side ends
    in TIME_WAIT, a line no process holds; its (local, remote) ports."""
    lst, cli, srv = tcp_pair()
    ports = cli.getsockname()[1], lst.getsockname()[1]
    cli.close()
    assert srv.recv(1) == b""
    srv.close()
    lst.close()
    return ports
