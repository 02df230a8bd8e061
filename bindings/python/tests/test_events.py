"""Tests of Walker.events against the real tracer: real processes on
loopback, as root. A kernel that refuses the tracer (PROCSPY_UNSUPPORTED)
skips them, saying why: the refusal is the kernel's to make. Which events
come depends on the hooks it attached (diagnose() lists them); each test
asserts what those hooks must give, and nothing of those it refused."""

import os
import select
import socket
import subprocess
import sys
import threading
import time
import unittest

import procspy
from procspy import EventKind, ProcspyError, State, Status, Walker

from stopping import assert_stops, call_on_thread

# A short-lived process that listens, connects to itself, accepts and
# closes, the client end first (so it goes through FIN_WAIT1); it prints
# its pid, its start time (field 22 of /proc/self/stat), the two ports and
# its name.
CHILD = """
import os, socket
with open("/proc/self/stat") as f:
    start = int(f.read().rsplit(")", 1)[1].split()[19])
with open("/proc/self/comm") as f:
    comm = f.read().strip()
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
c = socket.create_connection(l.getsockname()); a, _ = l.accept()
print(os.getpid(), start, l.getsockname()[1], c.getsockname()[1], comm, flush=True)
c.close(); a.close(); l.close()
"""


def tracer_walker(test: unittest.TestCase) -> Walker:
    """A walker whose tracer has started, or the test skipped where the
    kernel refuses it."""
    w = Walker()
    test.addCleanup(w.close)
    start_tracer(test, w)
    return w


def start_tracer(test: unittest.TestCase, w: Walker) -> None:
    """Starts w's tracer, or skips the test where the kernel refuses it."""
    try:
        w.events_fd()
    except ProcspyError as e:
        if e.status == Status.UNSUPPORTED:
            test.skipTest(f"the kernel refuses the tracer: {e}")
        raise


def attached(w: Walker) -> set:
    """The hooks the diagnosis says attached: "fentry/security_sock_graft", ..."""
    prefix, suffix = "BPF tracer ", ": attached"
    return {line[len(prefix):-len(suffix)] for line in w.diagnose().splitlines()
            if line.startswith(prefix) and line.endswith(suffix)}


def collect(w: Walker, until, seconds: float = 10.0) -> list:
    """Events until one satisfies `until`, or `seconds` have passed."""
    got, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = w.events(timeout=0.2)
        got += batch
        if any(until(e) for e in batch):
            break
    return got


class EventsTest(unittest.TestCase):
    def test_events_name_the_process_that_acted(self):
        w = tracer_walker(self)
        hooks = attached(w)
        self.assertIn("tp_btf/inet_sock_set_state", hooks)
        # On a shared host other traffic can make the kernel drop events (a
        # full ring, or the program skipped while it already ran on that
        # CPU: a LOST event): a scenario whose events did not all come is
        # run again, three times at most. A wrong event fails at once.
        for _ in range(3):
            out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, check=True, text=True)
            *numbers, name = out.stdout.split()
            pid, start, port, cport = map(int, numbers)
            # The last of it: the listener's close, in the child.
            got = collect(w, lambda e, pid=pid: e.kind is EventKind.STATE and e.old_state is State.LISTEN
                          and e.connection.owner is not None and e.connection.owner.pid == pid)
            ours = [e for e in got if e.kind is not EventKind.LOST
                    and port in (e.connection.local_port, e.connection.remote_port)]
            if self.check(ours, (pid, -1, start, name), port, cport, hooks):
                return
        self.fail("three times, an event of the scenario did not come")

    def check(self, ours, child, port, cport, hooks) -> bool:
        """Whether every event the scenario must give came; fails on a wrong one."""
        for e in ours:
            self.assertIsInstance(e.kind, EventKind)
            self.assertIsInstance(e.connection, procspy.Connection)
            self.assertGreater(e.time_ns, 0)
            self.assertNotEqual(e.cookie, 0)
            self.assertEqual(e.lost, 0)
            if e.kind is EventKind.STATE:
                self.assertNotEqual(e.old_state, 0, e)
            o = e.connection.owner
            if o is not None:
                # The acting process, or the one learnt for the socket: the
                # child, never anyone the softirq interrupted.
                self.assertEqual((o.pid, o.fd, o.start_time, o.name), child, e)

        def one(kind, pred):
            got = [e for e in ours if e.kind is kind and pred(e.connection, e)]
            self.assertLessEqual(len(got), 1, got)
            return got[0] if got else None

        listen = one(EventKind.LISTEN, lambda c, _: c.local_port == port)
        connect = one(EventKind.CONNECT, lambda c, _: c.remote_port == port)
        fin_wait1 = one(EventKind.STATE, lambda c, e: c.local_port == cport and c.state == State.FIN_WAIT1)
        if not (listen and connect and fin_wait1):
            return False
        for e, state in ((listen, State.LISTEN), (connect, State.SYN_SENT), (fin_wait1, State.FIN_WAIT1)):
            self.assertEqual(e.connection.state, state, e)
            self.assertIsNotNone(e.connection.owner, e)
        self.assertEqual(fin_wait1.old_state, State.ESTABLISHED)
        self.assertEqual(fin_wait1.cookie, connect.cookie)
        self.assertNotEqual(listen.cookie, connect.cookie)
        self.assertLess(listen.time_ns, connect.time_ns)
        self.assertEqual(str(listen.connection.local_addr), "127.0.0.1")
        # The fentry/fexit hooks: their events where attached, none elsewhere.
        accepts = [e for e in ours if e.kind is EventKind.ACCEPT]
        closes = [e for e in ours if e.kind is EventKind.CLOSE]
        want_accepts = 1 if "fentry/security_sock_graft" in hooks else 0
        want_closes = 3 if "fentry/tcp_close" in hooks else 0  # client, accepted end, listener
        self.assertLessEqual(len(accepts), want_accepts, accepts)
        self.assertLessEqual(len(closes), want_closes, closes)
        return len(accepts) == want_accepts and len(closes) == want_closes

    def test_events_fd_is_readable_when_an_event_waits(self):
        w = tracer_walker(self)
        fd = w.events_fd()
        self.assertEqual(fd, w.events_fd())  # the walker's, the same each time
        p = select.poll()
        p.register(fd, select.POLLIN)
        for _ in range(3):  # again where other traffic made the kernel drop it
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                s.listen()
                port, inode = s.getsockname()[1], os.fstat(s.fileno()).st_ino
                deadline, mine = time.monotonic() + 5, []
                while not mine and time.monotonic() < deadline:
                    if p.poll(1000):
                        mine = [e for e in w.events(timeout=0) if e.kind is EventKind.LISTEN
                                and e.connection.local_port == port]
            if mine:
                o = mine[0].connection.owner
                self.assertEqual((o.pid, o.fd, mine[0].connection.inode), (os.getpid(), -1, inode))
                return
        self.fail("three listeners, and no listen event")

    def test_ring_size_is_set_before_the_tracer_starts(self):
        with Walker() as w:
            for bad in (0, 1000, 1 << 15, (1 << 16) + 1, 1 << 31, -1):
                with self.assertRaises(ProcspyError) as cm:
                    w.set_events_ring(bad)
                self.assertEqual(cm.exception.status, Status.INVALID_ARGUMENT, bad)
            w.set_events_ring(1 << 16)
            start_tracer(self, w)
            with self.assertRaises(ProcspyError) as cm:
                w.set_events_ring(1 << 20)
            self.assertEqual(cm.exception.status, Status.INVALID_ARGUMENT)
            self.assertIn("started", cm.exception.message)

    def test_stop_ends_a_waiting_call(self):
        w = tracer_walker(self)

        def wait():
            # UDP: the host's TCP traffic, however much, then ends a call
            # without a record for Python to make.
            while True:  # other traffic may end a call early: call again
                w.events(timeout=30, protocols=procspy.UDP)

        waiting = call_on_thread(wait)
        time.sleep(0.3)
        assert_stops(self, waiting, w.stop, within=0.5)

    def test_callback_form_busy_and_a_walk_beside(self):
        w = tracer_walker(self)
        inside, release = threading.Event(), threading.Event()
        seen, result = [], {}

        def first(e):
            seen.append(e)
            inside.set()
            release.wait(10)
            return False  # one is enough: the rest wait for the next call

        def run():
            try:
                while not seen:
                    result["stats"] = w.events(timeout=1, callback=first)
            except Exception as e:  # pragma: no cover
                result["err"] = e

        t = threading.Thread(target=run)
        t.start()
        with socket.socket() as s:  # an event, should the host have none
            s.bind(("127.0.0.1", 0))
            s.listen()
            self.assertTrue(inside.wait(10), "no event in 10 s")
        try:
            with self.assertRaises(ProcspyError) as cm:
                w.events(timeout=0)
            self.assertEqual(cm.exception.status, Status.BUSY)
            # A walk runs beside the events call on the same walker.
            self.assertTrue(w.connections(protocols=procspy.TCP))
        finally:
            release.set()
            t.join()
        self.assertNotIn("err", result)
        self.assertEqual(len(seen), 1)
        # Counted: an event delivered; a LOST one first is not one.
        self.assertEqual(result["stats"].events, 0 if seen[0].kind is EventKind.LOST else 1)
        self.assertIsInstance(w.events(timeout=0), list)
        self.assertEqual(w.last_stats.events_dropped, 0)

    def test_protocols_are_checked(self):
        with Walker() as w:
            for protocols in (0, 4):
                with self.assertRaises(ProcspyError) as cm:
                    w.events(protocols=protocols)
                self.assertEqual(cm.exception.status, Status.INVALID_ARGUMENT)
            with self.assertRaises(ProcspyError) as cm:
                w.events(timeout=-1)
            self.assertEqual(cm.exception.status, Status.INVALID_ARGUMENT)


if __name__ == "__main__":
    unittest.main()
