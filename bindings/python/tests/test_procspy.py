"""Tests of the procspy package against the real library, real /proc and
real loopback sockets. Run with pytest, the package installed (pip install
bindings/python) or on PYTHONPATH (src/).

Env: PROCSPY_LIB (the library to load, else libprocspy.so.0 by the loader),
PROCSPY_INCLUDE (the directory of procspy.h for the layout check; default
the tree's include/), PROCSPY_HARNESS (the C harness binary; default the
tree's build/harness-so), CC (default cc). PROCSPY_NO_SKIP=1 makes a test
that cannot run fail instead of skipping (make test sets it)."""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
from ipaddress import ip_address

import procspy
from procspy import ChangeKind, ProcspyError, State, Status, Walker

from stopping import assert_stops, call_on_thread

TREE = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))


def skip_or_fail(test: unittest.TestCase, why: str) -> None:
    if os.environ.get("PROCSPY_NO_SKIP") == "1":
        test.fail(f"cannot run (PROCSPY_NO_SKIP=1): {why}")
    test.skipTest(why)


def own_socket_inodes():
    """fd -> socket inode, for every socket fd of this process."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out[int(name)] = int(link[len("socket:["):-1])
    return out


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Sockets:
    """A v4 and (where possible) a v6 listener, an established pair, a UDP socket."""

    def __init__(self):
        self.all = []
        self.l4 = self._add(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        self.l4.bind(("127.0.0.1", 0))
        self.l4.listen()
        self.l6 = None
        if has_ipv6_loopback():
            self.l6 = self._add(socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
            self.l6.bind(("::1", 0))
            self.l6.listen()
        self.client = self._add(socket.create_connection(self.l4.getsockname()))
        self.server = self._add(self.l4.accept()[0])
        self.udp = self._add(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        self.udp.bind(("127.0.0.1", 0))

    def _add(self, s):
        self.all.append(s)
        return s

    def close(self):
        for s in self.all:
            s.close()


class SocketsTest(unittest.TestCase):
    def setUp(self):
        self.s = Sockets()
        self.addCleanup(self.s.close)
        self.w = Walker()
        self.addCleanup(self.w.close)
        self.pid = os.getpid()

    def test_diagnose_tells_what_a_pass_learnt(self):
        self.assertIn("namespace files (PID/ns/net): not probed yet\n", self.w.diagnose())
        self.w.set_owner_scan(procspy.OWNERS_PROC)
        list(self.w.connections())
        text = self.w.diagnose()
        self.assertIn("namespace files (PID/ns/net): yes\n", text)
        self.assertIn("BPF owner scan (task_file iterator): not loaded yet\n", text)

    def test_walk_finds_own_sockets(self):
        netns = self.w.netns_of(self.pid)
        before = own_socket_inodes()
        mine = {s.fd: s for s in self.w.walk() if s.pid == self.pid}
        self.assertEqual({fd: s.inode for fd, s in mine.items()}, before)
        for sock in self.s.all:
            rec = mine.get(sock.fileno())
            self.assertIsNotNone(rec, f"fd {sock.fileno()} not found")
            self.assertEqual(rec.inode, os.fstat(sock.fileno()).st_ino)
            self.assertEqual(rec.netns, netns)
            self.assertGreater(rec.start_time, 0)
        with open("/proc/self/comm", "rb") as f:
            comm = f.read().rstrip(b"\n")
        self.assertEqual(next(iter(mine.values())).name_bytes, comm)
        st = self.w.last_stats
        self.assertGreaterEqual(st.sockets, len(mine))
        self.assertGreater(st.processes, 0)
        self.assertGreater(st.namespaces, 0)

    def test_connections_find_own_sockets(self):
        s = self.s
        v4any, v6any = ip_address("0.0.0.0"), ip_address("::")
        lo4 = ip_address("127.0.0.1")
        wants = [
            ("listener", s.l4, procspy.TCP, 4, State.LISTEN, (lo4, s.l4.getsockname()[1]), (v4any, 0)),
            ("client", s.client, procspy.TCP, 4, State.ESTABLISHED,
             (lo4, s.client.getsockname()[1]), (lo4, s.l4.getsockname()[1])),
            ("accepted", s.server, procspy.TCP, 4, State.ESTABLISHED,
             (lo4, s.l4.getsockname()[1]), (lo4, s.client.getsockname()[1])),
            ("udp", s.udp, procspy.UDP, 4, State.CLOSE, (lo4, s.udp.getsockname()[1]), (v4any, 0)),
        ]
        names = {"listener": "LISTEN", "listener6": "LISTEN", "client": "ESTABLISHED",
                 "accepted": "ESTABLISHED", "udp": "UNCONN"}
        if s.l6 is not None:
            wants.append(("listener6", s.l6, procspy.TCP, 6, State.LISTEN,
                          (ip_address("::1"), s.l6.getsockname()[1]), (v6any, 0)))
        by_inode = {c.inode: c for c in self.w.connections()
                    if c.owner is not None and c.owner.pid == self.pid}
        for what, sock, proto, family, state, local, remote in wants:
            with self.subTest(what):
                c = by_inode.get(os.fstat(sock.fileno()).st_ino)
                self.assertIsNotNone(c, f"{what} not found")
                self.assertEqual((c.protocol, c.family, c.state), (proto, family, state))
                self.assertEqual(c.state_name, names[what])
                self.assertEqual((c.local_addr, c.local_port), local)
                self.assertEqual((c.remote_addr, c.remote_port), remote)
                self.assertEqual(c.owner.fd, sock.fileno())
                self.assertEqual(c.uid, os.getuid())
                self.assertNotEqual(c.netns, 0)
        listening = self.w.connections(protocols=procspy.TCP, states=procspy.STATES_LISTEN)
        self.assertTrue(all(c.state == State.LISTEN and c.protocol == procspy.TCP for c in listening))
        ours = [c for c in listening if c.owner and c.owner.pid == self.pid]
        self.assertEqual(len(ours), 2 if s.l6 is not None else 1)

    def test_every_source_and_owner_scan_agree(self):
        def ours(w):
            return sorted((c.inode, c.protocol, c.state, c.local_port, c.remote_port, c.owner.fd)
                          for c in w.connections() if c.owner is not None and c.owner.pid == self.pid)
        want = ours(self.w)
        self.assertGreaterEqual(len(want), 4)
        for source in (procspy.SOURCE_TEXT, procspy.SOURCE_NETLINK, procspy.SOURCE_AUTO):
            for scan in (procspy.OWNERS_PROC, procspy.OWNERS_AUTO):
                with self.subTest(source=source, scan=scan), Walker() as w:
                    w.set_source(source)
                    w.set_owner_scan(scan)
                    self.assertEqual(ours(w), want)
        # The BPF scan alone: the same records, or the kernel lacks it.
        with Walker() as w:
            w.set_owner_scan(procspy.OWNERS_BPF)
            try:
                self.assertEqual(ours(w), want)
            except ProcspyError as e:
                self.assertEqual(e.status, Status.UNSUPPORTED, str(e))
        with Walker() as w:
            for bad in (3, 2**32 - 1):
                for setter in (w.set_source, w.set_owner_scan):
                    with self.assertRaises(ProcspyError) as cm:
                        setter(bad)
                    self.assertEqual(cm.exception.status, Status.INVALID_ARGUMENT)

    def test_callback_form_and_early_end(self):
        seen = []
        stats = self.w.walk(lambda s: seen.append(s) or False)  # False: stop after one
        self.assertEqual(len(seen), 1)
        self.assertIsInstance(stats, procspy.Stats)
        seen.clear()
        self.w.connections(callback=seen.append)  # None: go on
        self.assertGreater(len(seen), 3)

    def test_callback_exception_is_reraised(self):
        class Boom(Exception):
            pass

        calls = []

        def cb(c):
            calls.append(c)
            raise Boom("from the callback")

        with self.assertRaises(Boom) as cm:
            self.w.connections(callback=cb)
        self.assertEqual(str(cm.exception), "from the callback")
        self.assertEqual(len(calls), 1)  # the walk ended at once
        # The walker is usable afterwards.
        self.assertTrue(self.w.walk())

    def test_concurrent_walk_is_busy(self):
        inside, release = threading.Event(), threading.Event()
        result = {}

        def first(_sock):
            if not inside.is_set():
                inside.set()
                release.wait(10)

        def run():
            try:
                self.w.walk(first)
                result["ok"] = True
            except Exception as e:  # pragma: no cover
                result["err"] = e

        t = threading.Thread(target=run)
        t.start()
        self.assertTrue(inside.wait(10))
        try:
            with self.assertRaises(ProcspyError) as cm:
                self.w.connections()
        finally:
            release.set()
            t.join()
        self.assertEqual(cm.exception.status, Status.BUSY)
        self.assertIn("already running", cm.exception.message)
        self.assertEqual(result, {"ok": True})


class ChangesTest(unittest.TestCase):
    def at(self, changes, *ports):
        """The changes in this process's namespace at one of ports."""
        return [c for c in changes if c.connection.netns == self.netns and c.connection.local_port in ports]

    def test_changes_report_what_changed_and_what_closed_between(self):
        with Walker() as w:
            self.netns = w.netns_of(os.getpid())
            lst = socket.socket()
            lst.bind(("127.0.0.1", 0))
            lst.listen()
            port = lst.getsockname()[1]
            got = self.at(w.changes(), port)
            self.assertEqual([(c.kind, c.old_state, c.old_owner) for c in got],
                             [(ChangeKind.APPEARED, 0, None)])
            owner = got[0].connection.owner
            self.assertEqual((owner.pid, owner.fd), (os.getpid(), lst.fileno()))
            self.assertEqual(self.at(w.changes(), port), [])
            # procspy_walk_stats_ext: the snapshot kept for the next call.
            self.assertGreater(w.last_stats.snapshot_bytes, 0, w.last_stats)

            # Ended early: CALLBACK_ABORTED, and the next call reports it again.
            fd = lst.fileno()
            lst.close()
            with self.assertRaises(ProcspyError) as e:
                w.changes(callback=lambda c: False)
            self.assertEqual(e.exception.status, Status.CALLBACK_ABORTED)
            got = self.at(w.changes(), port)
            self.assertEqual([(c.kind, c.old_state) for c in got], [(ChangeKind.DISAPPEARED, State.LISTEN)])
            self.assertEqual((got[0].old_owner.pid, got[0].old_owner.fd), (os.getpid(), fd))

            # Opened and closed between two calls, in this namespace: the
            # listener and the server end are seen closed; the client, which
            # closed first, lingers in TIME_WAIT, a line that appears.
            lst = socket.socket()
            lst.bind(("127.0.0.1", 0))
            lst.listen()
            cli = socket.create_connection(lst.getsockname())
            srv, _ = lst.accept()
            lport, cport = lst.getsockname()[1], cli.getsockname()[1]
            cli.close()
            time.sleep(0.02)
            srv.close()
            lst.close()
            time.sleep(0.05)
            got = self.at(w.changes(), lport, cport)
            seen = sorted((c.connection.local_port == lport, c.kind.event, c.connection.state_name)
                          for c in got)
            self.assertEqual(seen, [(False, "appeared", "TIME_WAIT"),
                                    (True, "closed", "CLOSE"), (True, "closed", "CLOSE")], got)
            for c in got:
                if c.kind is ChangeKind.SEEN_CLOSED:
                    self.assertEqual((c.connection.inode, c.connection.owner, c.old_owner), (0, None, None))


class NamespacesTest(unittest.TestCase):
    def test_a_namespace_no_process_is_in_is_counted(self):
        # procspy_walk_stats_ext.netns_found: an ip netns namespace that no
        # process is in, held by its bind mount alone.
        if os.geteuid() != 0 or shutil.which("ip") is None:
            skip_or_fail(self, "needs root and ip, for a namespace of its own")
        name = f"procspy-py-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", name], check=True)
        inode = os.stat(f"/run/netns/{name}").st_ino
        with Walker() as w:
            w.query(netns=[inode])
            self.assertGreaterEqual(w.last_stats.netns_found, 1, w.last_stats)
            self.assertEqual(w.last_stats.netns_unreachable, 0, w.last_stats)


class ErrorsAndStopTest(unittest.TestCase):
    def test_bad_proc_root(self):
        with self.assertRaises(ProcspyError) as cm:
            Walker("/nonexistent/procspy-py-test")
        e = cm.exception
        self.assertEqual(e.status, Status.IO)
        self.assertIn("/nonexistent/procspy-py-test", e.message)
        self.assertIn("No such file or directory", str(e))
        with tempfile.NamedTemporaryFile() as f:  # not a directory
            with self.assertRaises(ProcspyError) as cm:
                Walker(f.name)
            self.assertEqual(cm.exception.status, Status.IO)

    def test_invalid_arguments(self):
        with Walker() as w:
            for protocols, states in ((0, procspy.STATES_ALL), (procspy.TCP, 0), (8, procspy.STATES_ALL)):
                with self.assertRaises(ProcspyError) as cm:
                    w.connections(protocols=protocols, states=states)
                self.assertEqual(cm.exception.status, Status.INVALID_ARGUMENT)
                self.assertTrue(cm.exception.message)
        with self.assertRaises(ValueError):
            w.walk()  # closed

    @staticmethod
    def slow_walk(w):
        """A walk on another thread (call_on_thread) that, unstopped, takes
        at least 10 s."""
        w.set_rate_limit(fd_block=1, tick=10.0)
        return call_on_thread(w.walk)

    def test_stop_from_another_thread(self):
        w = Walker()
        self.addCleanup(w.close)
        walk = self.slow_walk(w)
        time.sleep(0.5)
        assert_stops(self, walk, w.stop, within=0.25)
        self.assertGreaterEqual(w.last_stats.elapsed_ns, 100_000_000)  # it was running
        with self.assertRaises(ProcspyError) as cm:
            w.connections()
        self.assertEqual(cm.exception.status, Status.STOPPED)

    def test_stop_token_in_a_signal_handler(self):
        # Python runs a signal handler on the main thread, between bytecodes,
        # maybe while that thread holds the walker's lock (in close(), say):
        # the token takes none. The walk runs on another thread, as it must
        # for a handler to run while it does.
        w = Walker()
        token = w.stop_token()
        self.addCleanup(token.close)
        previous = signal.signal(signal.SIGALRM, lambda *_: token.stop())
        self.addCleanup(signal.signal, signal.SIGALRM, previous)
        walk = self.slow_walk(w)
        assert_stops(self, walk, lambda: signal.setitimer(signal.ITIMER_REAL, 0.3))
        w.close()
        token.stop()  # its walker is gone: nothing, and no fault
        token.close()
        token.stop()  # freed: nothing

    def test_version_and_status_names(self):
        self.assertRegex(procspy.version(), r"^\d+\.\d+\.\d+$")
        for status in Status:  # each one this module names is the library's
            self.assertTrue(procspy.status_str(status).startswith(f"PROCSPY_{status.name}:"),
                            procspy.status_str(status))
        self.assertTrue(procspy.status_str(12345))  # unknown values too
        e = ProcspyError(9, "m")
        self.assertIs(e.status, Status.UNSUPPORTED)
        self.assertEqual(str(e), "m (PROCSPY_UNSUPPORTED)")

    def test_state_names_come_from_the_library(self):
        tcp = ["ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
               "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"]
        self.assertEqual([procspy.state_name(procspy.TCP, s) for s in State], tcp)
        self.assertEqual(procspy.state_name(procspy.UDP, State.CLOSE), "UNCONN")
        self.assertEqual(procspy.state_name(procspy.UDP, State.ESTABLISHED), "ESTAB")
        self.assertEqual(procspy.state_name(procspy.UDP, State.LISTEN), "LISTEN")
        for protocol, state in ((procspy.TCP, 0), (procspy.TCP, 13), (procspy.UDP, 255),
                                (0, 10), (3, 10), (256 + procspy.TCP, 10), (procspy.TCP, 2**32 + 10),
                                (-1, 10), (procspy.TCP, -1)):
            self.assertEqual(procspy.state_name(protocol, state), "UNKNOWN", (protocol, state))


class LayoutTest(unittest.TestCase):
    """The ctypes mirrors must match the C header: sizes and every offset,
    as a C compiler sees them, so that a drift fails here. Two sources of
    `LAYOUT <struct> <size> <offsets...>` lines: the C harness (its layout
    tests print them on stderr with PROCSPY_PRINT_LAYOUT=1), and a tiny
    program compiled here from procspy.h and the field names of the
    mirrors (so a field renamed in the header fails to compile)."""

    def compare(self, text, source):
        c_layout = {}
        for line in text.splitlines():
            if line.startswith("LAYOUT "):
                _, name, size, *offs = line.split()
                c_layout[name] = (int(size), [int(o) for o in offs])
        for cname, ctype in procspy.C_STRUCTS.items():
            self.assertIn(cname, c_layout, f"{source} printed no LAYOUT line for {cname}")
            py = (ctypes.sizeof(ctype), [getattr(ctype, f).offset for f, _ in ctype._fields_])
            self.assertEqual(py, c_layout[cname], f"{cname}: ctypes (size, offsets) vs {source}")

    def test_layout_matches_c_harness(self):
        harness = os.environ.get("PROCSPY_HARNESS", os.path.join(TREE, "build", "harness-so"))
        if not os.access(harness, os.X_OK):
            skip_or_fail(self, f"no C harness at {harness} (make build/harness-so, or set PROCSPY_HARNESS)")
        env = dict(os.environ, PROCSPY_PRINT_LAYOUT="1")
        r = subprocess.run([harness, "layout"], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.compare(r.stderr, harness)

    def test_layout_matches_compiled_header(self):
        cc = os.environ.get("CC", "cc")
        if shutil.which(cc) is None:
            skip_or_fail(self, f"no C compiler ({cc})")
        include = os.environ.get("PROCSPY_INCLUDE", os.path.join(TREE, "include"))
        self.assertTrue(os.path.exists(os.path.join(include, "procspy.h")), include)
        lines = ["#include <stddef.h>", "#include <stdio.h>", "#include <procspy.h>",
                 "int main(void) {"]
        for cname, ctype in procspy.C_STRUCTS.items():
            offs = " ".join("%zu" for _ in ctype._fields_)
            args = ", ".join(f"offsetof({cname}, {f})" for f, _ in ctype._fields_)
            lines.append(f'  printf("LAYOUT {cname} %zu {offs}\\n", sizeof({cname}), {args});')
        lines += ["  return 0;", "}"]
        with tempfile.TemporaryDirectory() as d:
            src, exe = os.path.join(d, "layout.c"), os.path.join(d, "layout")
            with open(src, "w") as f:
                f.write("\n".join(lines) + "\n")
            subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-I", include, "-o", exe, src],
                           check=True)
            out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
        self.compare(out, "procspy.h compiled by " + cc)


if __name__ == "__main__":
    unittest.main()
