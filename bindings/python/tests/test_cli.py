"""`python -m procspy` is the procspy command: it hands over to it (the
one the wheel carries, else procspy on PATH), arguments, output and exit
status included.

Env: PROCSPY_CLI (the command it must hand over to); PROCSPY_NO_SKIP=1
turns skips into failures, as in test_procspy.py."""

import json
import os
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

    def test_bad_usage_exits_2_with_the_commands_hint(self):
        r = python_m_procspy("-tlnp")
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"Did you mean 'procspy -tl'?", r.stderr)


if __name__ == "__main__":
    unittest.main()
