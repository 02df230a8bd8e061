"""`python -m procspy` is the procspy command: it hands over to it (the
one the wheel carries, else procspy on PATH), arguments, output and exit
status included.

Env: PROCSPY_CLI (the command it must hand over to); PROCSPY_NO_SKIP=1
turns skips into failures, as in test_procspy.py."""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import unittest

from test_procspy import skip_or_fail

import procspy
from procspy.__main__ import command


def python_m_procspy(*args):
    return subprocess.run([sys.executable, "-m", "procspy", *args], capture_output=True, timeout=120)


class CliTest(unittest.TestCase):
    def setUp(self):
        if command() is None:
            skip_or_fail(self, "no procspy command (none in the package, none on PATH)")

    def test_it_is_the_expected_command(self):
        want = os.environ.get("PROCSPY_CLI")
        if not want:
            skip_or_fail(self, "PROCSPY_CLI does not name the command to expect")
        self.assertEqual(os.path.realpath(command()), os.path.realpath(want))

    def test_version_is_the_librarys(self):
        r = python_m_procspy("--version")
        self.assertEqual((r.returncode, r.stdout), (0, f"procspy {procspy.version()}\n".encode()))

    def test_it_lists_a_listener_of_ours(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port, fd = s.getsockname()[1], s.fileno()
            r = python_m_procspy("-tl", "--port", str(port), "-p", str(os.getpid()), "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual([(o["local_port"], o["pid"], o["fd"], o["uid"], o["state_name"]) for o in rows],
                         [(port, os.getpid(), fd, os.geteuid(), "LISTEN")])
        self.assertEqual(r.stderr, b"1 connections in 1 namespaces (0 without a visible owner)\n")

    def test_events_stream_until_sigterm(self):
        with procspy.Walker() as w:
            try:
                w.events_fd()
            except procspy.ProcspyError as e:
                if e.status == procspy.Status.UNSUPPORTED:
                    self.skipTest(f"the kernel refuses the tracer: {e}")
        # The command runs where python -m procspy ran (it execs): the
        # signal reaches it, and --events ends by it with status 0.
        p = subprocess.Popen([sys.executable, "-m", "procspy", "--events", "-p", str(os.getpid())],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)

        def line():  # the next line, within 10 s
            return p.stdout.readline() if select.select([p.stdout], [], [], 10)[0] else b""

        try:
            header = line()  # once the tracer is attached
            self.assertEqual(header.split()[:2], [b"EVENT", b"NETNS"], p.stderr.read() if not header else "")
            for _ in range(3):  # again where other traffic made the kernel drop it
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    s.listen()
                    port = s.getsockname()[1]
                    row = line().split()
                if row[:1] == [b"listen"]:
                    break
            self.assertEqual([row[0], row[4], row[7], row[8]],
                             [b"listen", f"127.0.0.1:{port}".encode(), str(os.getpid()).encode(), b"-"])
        finally:
            p.send_signal(signal.SIGTERM)
            rc = p.wait(5)
            p.stdout.close()
            err = p.stderr.read()
            p.stderr.close()
        self.assertEqual(rc, 0, err)
        self.assertRegex(err.decode().splitlines()[-1], r"^\d+ events \(\d+ lost\)$")

    def test_bad_usage_exits_2_with_the_commands_hint(self):
        r = python_m_procspy("-tlnp")
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"Did you mean 'procspy -tl'?", r.stderr)


if __name__ == "__main__":
    unittest.main()
