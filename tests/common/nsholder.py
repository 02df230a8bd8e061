"""A process whose sockets live in a network namespace it is not in.

Usage: nsholder.py MODE NSFILE. NSFILE names a network namespace (an nsfs
mount such as /run/netns/NAME). MODE:

- setns:  enter it with setns(2), open the sockets, go back to its own
          namespace;
- fd:     as setns, and keep NSFILE open (its fd is reported as "nsfd FD");
- thread: a second thread enters it, opens the sockets and stays there
          (reported as "tid TID");
- unix:   as setns, but leaves there only a TIME_WAIT (a line no process
          holds) and opens one unix socket, the one thing that holds it.

The sockets: a TCP listener on 127.0.0.1 with one established pair, and a
bound UDP socket; in unix mode, the unix socket. Prints one line per socket fd, "fd inode", then "ready",
and exits when its stdin closes.
"""
import ctypes
import os
import socket
import subprocess
import sys
import threading

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def open_sockets():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    return [lst, cli, srv, udp]


def time_wait_and_a_unix_socket():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    cli.close()
    srv.recv(1)
    srv.close()
    lst.close()
    return [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)]


mode, nsfile = sys.argv[1], sys.argv[2]
ns = os.open(nsfile, os.O_RDONLY)
socks = []
if mode in ("setns", "fd", "unix"):
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    setns(ns)
    socks = time_wait_and_a_unix_socket() if mode == "unix" else open_sockets()
    setns(home)
    os.close(home)
    if mode == "fd":
        print("nsfd", ns)
    else:
        os.close(ns)
elif mode == "thread":
    entered = threading.Event()
    done = threading.Event()

    def stay():
        setns(ns)
        socks.extend(open_sockets())
        print("tid", threading.get_native_id())
        entered.set()
        done.wait()

    t = threading.Thread(target=stay, daemon=True)
    t.start()
    entered.wait()
    os.close(ns)
else:
    sys.exit("unknown mode " + mode)
for s in socks:
    print(s.fileno(), os.fstat(s.fileno()).st_ino)
print("ready", flush=True)
sys.stdin.read()
