"""`python -m procspy` against the procspy command: the same listing, byte
for byte, as a table and as JSON, for a helper process whose sockets and
(hostile) name we choose; and, as root, for a whole network namespace of
its own, ownerless TIME_WAIT line included.

Env: PROCSPY_CLI (the command; default `procspy` on PATH); PROCSPY_NO_SKIP=1
turns skips into failures, as in test_procspy.py."""

import json
import os
import shutil
import subprocess
import sys
import unittest

from test_procspy import skip_or_fail

# The helper: opens its sockets, takes a name with every kind of byte the
# command escapes, says "ready NETNS" and waits for stdin to close. With
# argv[1] == "netns" it first enters a network namespace of its own (root),
# brings its loopback up and leaves a TIME_WAIT socket there.
HELPER = r'''
import ctypes, fcntl, os, socket, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
if sys.argv[1] == "netns":
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        sys.exit("unshare: " + os.strerror(ctypes.get_errno()))
    with socket.socket() as s:  # SIOCSIFFLAGS lo IFF_UP|IFF_LOOPBACK|IFF_RUNNING
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", 0x1 | 0x8 | 0x40))
keep = []
def add(s):
    keep.append(s)
    return s
l4 = add(socket.socket())
l4.bind(("127.0.0.1", 0))
l4.listen()
try:
    l6 = add(socket.socket(socket.AF_INET6))
    l6.bind(("::1", 0))
    l6.listen()
except OSError:
    pass
client = add(socket.create_connection(l4.getsockname()))
server = add(l4.accept()[0])
u1 = add(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
u1.bind(("127.0.0.1", 0))
u2 = add(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
u2.connect(u1.getsockname())
if sys.argv[1] == "netns":  # the active closer's end stays in TIME_WAIT
    c = socket.create_connection(l4.getsockname())
    a = l4.accept()[0]
    c.close()
    time.sleep(0.1)
    a.close()
    time.sleep(0.2)
libc.prctl(15, b'a"b\\c\td\xc3\xa9\xff\x01z')  # PR_SET_NAME
print("ready", os.stat("/proc/self/ns/net").st_ino, flush=True)
sys.stdin.read()
'''

JSON_KEYS = ["netns", "proto", "family", "state", "state_name", "local_addr", "local_port",
             "remote_addr", "remote_port", "inode", "uid", "pid", "fd", "name", "start_time"]
SOCKET_KEYS = ["pid", "fd", "netns", "inode", "name", "start_time"]


class Helper:
    def __init__(self, mode: str):
        self.p = subprocess.Popen([sys.executable, "-c", HELPER, mode], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline().split()
        if not line or line[0] != "ready":
            self.close()
            raise RuntimeError(f"helper did not start: {line}")
        self.pid, self.netns = self.p.pid, int(line[1])

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


class CliTest(unittest.TestCase):
    def setUp(self):
        self.cli = os.environ.get("PROCSPY_CLI") or shutil.which("procspy")
        if not self.cli:
            skip_or_fail(self, "no procspy command (set PROCSPY_CLI)")

    def run_both(self, *args):
        """(command's, python -m procspy's) (exit status, stdout, stderr)."""
        out = []
        for argv in ([self.cli, *args], [sys.executable, "-m", "procspy", *args]):
            r = subprocess.run(argv, capture_output=True, timeout=120)
            out.append((r.returncode, r.stdout, r.stderr))
        return out

    def assert_same_listing(self, args, json_out):
        (crc, cout, cerr), (prc, pout, perr) = self.run_both(*args)
        self.assertEqual((crc, prc), (0, 0), (args, cerr, perr))
        self.assertEqual(perr, cerr, args)  # the closing count line
        clines, plines = cout.splitlines(), pout.splitlines()
        if not json_out:  # the header, then the rows
            self.assertEqual(plines[:1], clines[:1], args)
            clines, plines = clines[1:], plines[1:]
        # Rows in the library's order, which two walks may not share: as sets.
        self.assertEqual(sorted(plines), sorted(clines), args)
        self.assertTrue(clines, f"{args}: no rows")
        if json_out:
            keys = SOCKET_KEYS if "--sockets" in args else JSON_KEYS
            for line in plines:
                self.assertEqual(list(json.loads(line)), keys)
        return clines

    def test_a_process_listing_is_the_commands(self):
        h = Helper("here")
        self.addCleanup(h.close)
        pid = str(h.pid)
        rows = self.assert_same_listing(["-p", pid], False)
        self.assertTrue(any(b"LISTEN" in r for r in rows))
        self.assertTrue(any(b" UNCONN " in r for r in rows) and any(b" ESTAB " in r for r in rows))
        self.assertTrue(all(r.endswith(b'a"b\\\\c\\td\\xc3\\xa9\\xff\\x01z') for r in rows), rows)
        rows = self.assert_same_listing(["-p", pid, "--json"], True)
        self.assertTrue(all(json.loads(r)["name"] == 'a"b\\c\td\u00e9\u00ff\u0001z' for r in rows))
        for args in (["-tl"], ["-u", "--json"], ["-c"], ["-l", "-a", "-u"],
                     ["--source", "text", "--owners", "proc"], ["--sockets"], ["--sockets", "--json"]):
            self.assert_same_listing(["-p", pid, *args], "--json" in args)

    def test_a_whole_namespace_is_the_commands(self):
        if os.geteuid() != 0:
            skip_or_fail(self, "needs root, for a network namespace")
        h = Helper("netns")
        self.addCleanup(h.close)
        netns = str(h.netns)
        rows = self.assert_same_listing(["-n", netns], False)
        self.assertTrue(any(b"TIME_WAIT" in r and r.endswith(b"      - -     -") for r in rows), rows)
        rows = self.assert_same_listing(["-n", netns, "--json"], True)
        ownerless = [json.loads(r) for r in rows if json.loads(r)["pid"] is None]
        self.assertTrue(ownerless)
        self.assertTrue(all(o["fd"] is None and o["name"] is None and o["start_time"] is None
                            for o in ownerless))
        self.assert_same_listing(["-n", netns, "--sockets"], False)
        rows = self.assert_same_listing(["-n", netns, "--no-owners"], False)
        self.assertTrue(all(r.endswith(b"      - -     -") for r in rows), rows)

    def test_usage_and_version(self):
        (crc, cout, _), (prc, pout, _) = self.run_both("--version")
        self.assertEqual((crc, prc, pout), (0, 0, cout))
        for bad in (["--pid", "abc"], ["-n", "-1"], ["--source", "x"], ["--owners", "x"],
                    ["--sockets", "-t"], ["--sockets", "--no-owners"], ["--no-such-option"],
                    ["stray"]):
            (crc, _, _), (prc, _, perr) = self.run_both(*bad)
            self.assertEqual((crc, prc), (2, 2), (bad, perr))
        (crc, _, _), (prc, pout, _) = self.run_both("--help")
        self.assertEqual((crc, prc), (0, 0))
        for opt in ("--tcp", "--udp", "--listening", "--all", "--connected", "--netns", "--pid",
                    "--json", "--sockets", "--proc", "--source", "--owners", "--no-owners",
                    "--version"):
            self.assertIn(opt.encode(), pout)


if __name__ == "__main__":
    unittest.main()
