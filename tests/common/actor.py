"""A process that changes its loopback sockets on command, for the changes tests.

Reads one command a line on stdin, answers one line on stdout:

    pair                   a TCP listener on 127.0.0.1, a client connected to
                           it and the accepted end: "LPORT CPORT LFD CFD SFD"
    shut FD                shutdown(SHUT_WR) of FD: its peer goes to
                           CLOSE_WAIT, FD to FIN_WAIT2, both keep their inodes
    close FD               close FD
    reset FD               close FD with SO_LINGER 0: an RST, no TIME_WAIT
    fork                   a child that holds every fd until the actor ends
                           or says "unfork": "PID"
    unfork                 the forked child exits; answers once it has
    udp                    a bound UDP socket: "PORT FD"
    flash MS               a TCP pair that lives MS milliseconds and is reset
                           (no TIME_WAIT): "LPORT CPORT" once it is gone
    tw FAMILY              a TIME_WAIT socket (4 or 6: 127.0.0.1 or ::1), its
                           client having closed first: "CPORT"
    queue FAMILY           a listener and a connection waiting in its accept
                           queue (no process holds it): "LFD"
    accept LFD             accepts a connection waiting on LFD: "FD"
    pending                a TCP_DEFER_ACCEPT listener and a client: the
                           request stays in SYN_RECV (the client sends no data)
    storm MS               for MS milliseconds, on a thread: a TIME_WAIT and
                           a connection queued then accepted, every 5 ms
Each answer ends with a newline; "ok" where there is nothing to say. Brings
lo up where it can (it may run in a fresh network namespace).
"""
import os
import socket
import struct
import sys
import threading
import time

from loopback import lo_up, tcp_pair

try:
    lo_up()
except OSError:
    pass
socks = {}
stormed = []  # what storms made, held until the actor ends
child = None  # (pid, write end of the pipe it waits on)


def keep(s):
    socks[s.fileno()] = s
    return s.fileno()


def reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def listener(family):
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
    lst.listen(64)
    return lst


def time_wait(lst):
    """A connection to lst whose client closes first; the client's port."""
    cli = socket.create_connection(lst.getsockname()[:2])
    srv, _ = lst.accept()
    port = cli.getsockname()[1]
    cli.close()
    srv.recv(1)
    srv.close()
    return port


def storm(secs):
    lst, kept = listener(socket.AF_INET), []
    end = time.monotonic() + secs
    while time.monotonic() < end:
        time_wait(lst)
        kept.append(socket.create_connection(lst.getsockname()))
        time.sleep(0.005)
        kept.append(lst.accept()[0])
    kept.append(lst)
    stormed.extend(kept)


def answer(line):
    words = line.split()
    cmd, args = words[0], [int(w) for w in words[1:]]
    if cmd == "pair":
        lst, cli, srv = tcp_pair()
        fds = [keep(s) for s in (lst, cli, srv)]
        return "%d %d %d %d %d" % (lst.getsockname()[1], cli.getsockname()[1], *fds)
    if cmd == "shut":
        socks[args[0]].shutdown(socket.SHUT_WR)
        return "ok"
    if cmd == "close":
        socks.pop(args[0]).close()
        return "ok"
    if cmd == "reset":
        reset(socks.pop(args[0]))
        return "ok"
    if cmd == "fork":
        global child
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            os.read(r, 1)  # EOF once the actor closes w or ends
            os._exit(0)
        os.close(r)
        child = (pid, w)
        return "%d" % pid
    if cmd == "unfork":
        os.close(child[1])
        os.waitpid(child[0], 0)
        child = None
        return "ok"
    if cmd == "udp":
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        return "%d %d" % (u.getsockname()[1], keep(u))
    if cmd == "flash":
        lst, cli, srv = tcp_pair()
        ports = (lst.getsockname()[1], cli.getsockname()[1])
        time.sleep(args[0] / 1000)
        for s in (cli, srv, lst):
            reset(s)
        return "%d %d" % ports
    if cmd in ("tw", "queue"):
        lst = listener(socket.AF_INET if args[0] == 4 else socket.AF_INET6)
        if cmd == "tw":
            port = time_wait(lst)
            lst.close()
            return "%d" % port
        keep(socket.create_connection(lst.getsockname()[:2]))
        return "%d" % keep(lst)
    if cmd == "accept":
        return "%d" % keep(socks[args[0]].accept()[0])
    if cmd == "pending":
        lst = listener(socket.AF_INET)
        lst.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 60)
        keep(lst)
        keep(socket.create_connection(lst.getsockname()))
        return "ok"
    if cmd == "storm":
        threading.Thread(target=storm, args=(args[0] / 1000,), daemon=True).start()
        return "ok"
    return "unknown command %r" % cmd


print("ready", flush=True)
for line in sys.stdin:
    print(answer(line), flush=True)
