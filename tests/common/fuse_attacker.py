"""An attacker with a FUSE server that never answers the library.

Usage: fuse_attacker.py DEVICE MOUNTPOINT, or fuse_attacker.py --mounted FD
MOUNTPOINT (below). Run as an unprivileged user.
DEVICE is a FUSE device node (char 10,229) it may open; MOUNTPOINT an
empty directory. In a user and mount namespace of its own, it mounts a
FUSE filesystem with one regular file, "file", and serves it itself: every
request is answered, but a FLUSH only when one of its own processes asks.
A close of that file by anyone else (the library, closing a copy of an fd
it took with pidfd_getfd) waits for ever, in the kernel, uninterruptibly.

Two processes, so that a kill never leaves the attacker stuck itself (were
the server a thread of the holder, a kill while the flipping thread waits
for its own FLUSH would end the server and leave that thread waiting, with
the device still open in its process: nothing would abort the
connection):

- this one, the server: it holds the only fd of the FUSE device, and never
  touches the filesystem, so a kill always ends it, which aborts the FUSE
  connection and releases every close still waiting;
- a child, the holder (killed when the server ends): in a network
  namespace B it makes TCP and UDP sockets on 127.0.0.1 and a unix socket
  pair, then moves to another namespace, C, so that no process is in B and
  B is found only through those sockets. It opens "file", and a thread
  flips fd numbers between the sockets and that file as fast as it can:
  where a scan saw a socket, the fd taken soon after is often the file.
  Each socket also stays open at a higher fd number, which is not flipped.

The holder prints "pid PID", "netns_b INODE", "listen PORT" (its TCP
listener in B), then "ready", and exits when its stdin closes. A line
"unsupported WHY" instead says this host has no FUSE or user namespaces
for it.

With --mounted, the FUSE filesystem is already mounted at MOUNTPOINT, on
the device fd FD this process inherited, in the initial user namespace
with allow_other (as fusermount mounts it where /etc/fuse.conf says
user_allow_other), so that root may walk it. The server answers its own
processes only, and names and attributes expire at once: every walk by
anyone else through "file" asks it again (LOOKUP), and waits for ever.
The holder, in a user and mount namespace of its own (a copy of the
mounts, this one among them), makes a network namespace D, bind-mounts
D's namespace file on "file", and moves to another namespace, C, alone:
the mountinfo a scan reads for C shows D's nsfs mount below the FUSE
mount, the only way to D. It prints "pid PID", "netns_d INODE", then
"ready", and exits when its stdin closes.
"""
import ctypes
import errno
import os
import signal
import socket
import struct
import sys
import threading

from loopback import CLONE_NEWNET, lo_up, open_sockets

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1

# linux/fuse.h
FUSE_LOOKUP = 1
FUSE_FORGET = 2
FUSE_GETATTR = 3
FUSE_OPEN = 14
FUSE_RELEASE = 18
FUSE_FLUSH = 25
FUSE_INIT = 26
FUSE_INTERRUPT = 36
FUSE_BATCH_FORGET = 42
NO_REPLY = (FUSE_FORGET, FUSE_INTERRUPT, FUSE_BATCH_FORGET)
IN_HEADER = struct.Struct("<IIQQIIIHH")
OUT_HEADER = struct.Struct("<IiQ")
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
ROOT, FILE = 1, 2
NAME = b"file"
# How long the kernel may keep names and attributes: for ever, as far as the test goes.
VALID = 3600

# The first fd number flipped, and the first that keeps a socket.
FLIPPED = 64
ORIGINALS = 256

libc = ctypes.CDLL(None, use_errno=True)


def check(rc, what):
    if rc == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return rc


def unsupported(why):
    print("unsupported", why, flush=True)
    sys.exit(0)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def enter_namespaces():
    """A user namespace where it is root (as the user it is), and a mount namespace."""
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        e = ctypes.get_errno()
        if e in (errno.EPERM, errno.EINVAL, errno.ENOSPC, errno.EUSERS):
            unsupported(f"no user namespace for uid {uid}: {os.strerror(e)}")
        raise OSError(e, "unshare")
    write("/proc/self/uid_map", f"0 {uid} 1")
    write("/proc/self/setgroups", "deny")
    write("/proc/self/gid_map", f"0 {gid} 1")
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")


def mount_fuse(device, mountpoint):
    """The device's fd (opened in the user namespace: FUSE wants that), mounted."""
    try:
        dev = os.open(device, os.O_RDWR)
    except OSError as e:
        if e.errno in (errno.ENODEV, errno.ENXIO):
            unsupported(f"no FUSE driver behind {device}: {e}")
        raise
    opts = f"fd={dev},rootmode=40000,user_id=0,group_id=0".encode()
    if libc.mount(b"procspy-fuse", mountpoint.encode(), b"fuse", MS_NOSUID | MS_NODEV, opts) != 0:
        e = ctypes.get_errno()
        if e == errno.ENODEV:
            unsupported("this kernel has no fuse filesystem type")
        raise OSError(e, f"mount fuse: {os.strerror(e)}")
    return dev


def attr(node):
    mode = 0o40755 if node == ROOT else 0o100644
    return ATTR.pack(node, 0, 0, 0, 0, 0, 0, 0, 0, mode, 1, 0, 0, 0, 4096, 0)


def serve(dev, holder, others_wait=False):
    """Answers the kernel's requests, FLUSH only for the holder's threads (and its own);
    with `others_wait`, no request of anyone else's, and names and attributes valid for
    no time at all."""
    ours = {os.getpid(), holder}
    valid = 0 if others_wait else VALID

    def own(pid):
        if pid not in ours and os.path.isdir(f"/proc/{holder}/task/{pid}"):
            ours.add(pid)
        return pid in ours

    def reply(unique, err=0, body=b""):
        try:
            os.write(dev, OUT_HEADER.pack(OUT_HEADER.size + len(body), -err, unique) + body)
        except OSError as e:
            # ENOENT: the request was interrupted or aborted meanwhile.
            if e.errno != errno.ENOENT:
                raise

    while True:
        try:
            req = os.read(dev, 1 << 17 | 4096)
        except OSError as e:
            if e.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                continue
            return  # ENODEV: unmounted or aborted
        _, opcode, unique, node, _, _, pid, _, _ = IN_HEADER.unpack_from(req)
        body = req[IN_HEADER.size :]
        if opcode in NO_REPLY or (others_wait and opcode != FUSE_INIT and not own(pid)):
            continue
        if opcode == FUSE_INIT:
            _, minor, readahead = struct.unpack_from("<III", body)
            out = struct.pack("<IIIIHHIIHHI", 7, min(minor, 31), readahead, 0, 16, 12, 4096, 1, 0, 0, 0)
            reply(unique, body=out.ljust(64, b"\0"))
        elif opcode == FUSE_LOOKUP:
            if node == ROOT and body.split(b"\0")[0] == NAME:
                reply(unique, body=struct.pack("<QQQQII", FILE, 0, valid, valid, 0, 0) + attr(FILE))
            else:
                reply(unique, errno.ENOENT)
        elif opcode == FUSE_GETATTR:
            reply(unique, body=struct.pack("<QII", valid, 0, 0) + attr(node))
        elif opcode == FUSE_OPEN:
            reply(unique, body=struct.pack("<QIi", 1, 0, 0))
        elif opcode == FUSE_RELEASE:
            reply(unique)
        elif opcode == FUSE_FLUSH:
            if own(pid):
                reply(unique)
            # Anyone else's close waits for ever.
        else:
            reply(unique, errno.ENOSYS)


def hold(mountpoint):
    """The holder: sockets in B, then C; the file; the flipper. Never returns."""
    check(libc.unshare(CLONE_NEWNET), "unshare B")
    lo_up()
    netns_b = os.stat("/proc/thread-self/ns/net").st_ino
    socks = open_sockets()
    port = socks[0].getsockname()[1]
    socks += socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    check(libc.unshare(CLONE_NEWNET), "unshare C")
    # Each socket kept at a number above the flipped ones: an owner is the
    # lowest fd holding a socket, so a scan names a flipped one where it can.
    originals = []
    for i, s in enumerate(socks):
        fd = s.detach()
        check(libc.dup2(fd, ORIGINALS + i), "dup2")
        os.close(fd)
        originals.append(ORIGINALS + i)
    file = os.open(os.path.join(mountpoint, NAME.decode()), os.O_RDONLY)
    # Two numbers a socket, the two half a round apart: at any time one
    # holds the socket (a scan names that one, the lower than the
    # original's), the other the file. A window of half the numbers slides
    # one a step, so each number holds the file half the time, and the one
    # a scan saw holding a socket turns into the file within half a round.
    slots = [FLIPPED + i for i in range(2 * len(originals))]
    src = [originals[i % len(originals)] for i in range(len(slots))]
    half = len(slots) // 2
    for i, n in enumerate(slots):
        check(libc.dup2(file if i < half else src[i], n), "dup2")

    def flip():
        # dup2 through ctypes lets go of the GIL while its close waits for the FLUSH.
        dup2 = libc.dup2
        while True:
            for j, n in enumerate(slots):
                dup2(src[j], n)
                dup2(file, slots[(j + half) % len(slots)])

    threading.Thread(target=flip, daemon=True).start()
    print("pid", os.getpid())
    print("netns_b", netns_b)
    print("listen", port)
    print("ready", flush=True)
    sys.stdin.read()
    os._exit(0)


def hold_nsfs(mountpoint):
    """The holder of --mounted: D's nsfs mount below the FUSE mount, then C. Never returns."""
    enter_namespaces()
    check(libc.unshare(CLONE_NEWNET), "unshare D")
    netns_d = os.stat("/proc/thread-self/ns/net").st_ino
    target = os.path.join(mountpoint, NAME.decode()).encode()
    check(libc.mount(b"/proc/thread-self/ns/net", target, None, MS_BIND, None), "bind-mount D")
    check(libc.unshare(CLONE_NEWNET), "unshare C")
    print("pid", os.getpid())
    print("netns_d", netns_d)
    print("ready", flush=True)
    sys.stdin.read()
    os._exit(0)


def main():
    mounted = sys.argv[1] == "--mounted"
    if mounted:
        dev, mountpoint = int(sys.argv[2]), sys.argv[3]
    else:
        device, mountpoint = sys.argv[1], sys.argv[2]
        enter_namespaces()
        dev = mount_fuse(device, mountpoint)
    sys.stdout.flush()
    server = os.getpid()
    holder = os.fork()
    if holder == 0:
        try:
            os.close(dev)
            check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")
            if os.getppid() != server:
                os._exit(1)
            (hold_nsfs if mounted else hold)(mountpoint)
        except BaseException as e:
            print("holder:", repr(e), file=sys.stderr, flush=True)
        os._exit(1)
    threading.Thread(target=serve, args=(dev, holder, mounted), daemon=True).start()
    # Ends with the holder (its stdin closed, or an error before "ready").
    os.waitpid(holder, 0)
    os._exit(0)


main()
