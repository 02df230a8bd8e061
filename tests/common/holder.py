"""A process holding known loopback sockets, for the integration tests.

Usage: holder.py [NAME]. Brings lo up where it can (it may run in a fresh
network namespace), opens TCP listening and established pairs and UDP bound and
connected sockets, v4 and v6, sets its comm to NAME, prints one line per
socket fd: "fd inode proto family state local_port remote_port", then
"ready", and exits when its stdin closes. PROCSPY_HOLDER_EXTRA=N adds N
unreported listeners per family; PROCSPY_HOLDER_UNIX=N adds N unreported unix
sockets (connected pairs); PROCSPY_HOLDER_UNHELD=1 leaves a TIME_WAIT
socket and a connection never accepted (held by no process) in its tables.
"""
import os
import resource
import socket
import subprocess
import sys

# In a fresh namespace lo is down; elsewhere it is up (and we may lack the right).
subprocess.run(["ip", "link", "set", "lo", "up"], stderr=subprocess.DEVNULL)
held = []  # (socket, proto, state)


def keep(s, proto, state):
    held.append((s, proto, state))


for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    lst = socket.socket(fam, socket.SOCK_STREAM)
    lst.bind((host, 0))
    lst.listen(8)
    cli = socket.create_connection(lst.getsockname()[:2])
    srv, _ = lst.accept()
    keep(lst, "tcp", 10)
    keep(cli, "tcp", 1)
    keep(srv, "tcp", 1)
    bound = socket.socket(fam, socket.SOCK_DGRAM)
    bound.bind((host, 0))
    conn = socket.socket(fam, socket.SOCK_DGRAM)
    conn.connect(bound.getsockname()[:2])
    keep(bound, "udp", 7)
    keep(conn, "udp", 1)

# Unreported extra listeners, to make the tables long.
extra = [socket.socket(fam, socket.SOCK_STREAM)
         for _ in range(int(os.environ.get("PROCSPY_HOLDER_EXTRA", "0")))
         for fam in (socket.AF_INET, socket.AF_INET6)]
for s in extra:
    s.bind(("127.0.0.1" if s.family == socket.AF_INET else "::1", 0))
    s.listen(1)

# Unreported unix sockets, which no table lists; as many fds as the hard
# limit allows (a soft limit of 1024 is common).
UNIX = int(os.environ.get("PROCSPY_HOLDER_UNIX", "0"))
if UNIX:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
unix = [s for _ in range(UNIX // 2) for s in socket.socketpair()]

# Sockets no process holds, in this namespace's tables all the same: a
# TIME_WAIT left by an active close, and a connection never accepted.
unheld = []
if os.environ.get("PROCSPY_HOLDER_UNHELD") == "1":
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    cli = socket.create_connection(lst.getsockname()[:2])
    srv, _ = lst.accept()
    cli.close()
    srv.recv(1)
    srv.close()
    lst.close()
    waiting = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    waiting.bind(("127.0.0.1", 0))
    waiting.listen(8)
    unheld = [waiting, socket.create_connection(waiting.getsockname()[:2])]

if len(sys.argv) > 1:
    with open("/proc/self/comm", "wb") as f:
        f.write(os.fsencode(sys.argv[1]))

for s, proto, state in held:
    fam = 4 if s.family == socket.AF_INET else 6
    rport = s.getpeername()[1] if state == 1 else 0
    print(s.fileno(), os.fstat(s.fileno()).st_ino, proto, fam, state, s.getsockname()[1], rport)
print("ready", flush=True)
sys.stdin.read()
