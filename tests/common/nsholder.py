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
import os
import socket
import sys
import threading

from loopback import lo_up, open_sockets, setns, time_wait


def sockets(mode):
    lo_up()
    if mode != "unix":
        return open_sockets()
    time_wait()
    return [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)]


mode, nsfile = sys.argv[1], sys.argv[2]
ns = os.open(nsfile, os.O_RDONLY)
socks = []
if mode in ("setns", "fd", "unix"):
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    setns(ns)
    socks = sockets(mode)
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
        socks.extend(sockets(mode))
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
