"""Walker.query against the real library: one process's sockets, one
namespace's lines without owners, and bad input refused (never "all")."""

import os
import subprocess
import unittest

from test_procspy import Sockets

from procspy import TCP, UDP, ProcspyError, Status, Walker


class QueryTest(unittest.TestCase):
    def setUp(self):
        self.socks = Sockets()
        self.inodes = {os.fstat(s.fileno()).st_ino for s in self.socks.all}
        self.walker = Walker()

    def tearDown(self):
        self.walker.close()
        self.socks.close()

    def test_one_pid(self):
        me = os.getpid()
        got = self.walker.query(TCP | UDP, pids=[me])
        self.assertTrue(all(c.owner is not None and c.owner.pid == me for c in got), got)
        self.assertLessEqual(self.inodes, {c.inode for c in got})
        self.assertEqual(self.walker.last_stats.processes, 1)

    def test_one_namespace_without_owners(self):
        netns = os.stat("/proc/self/ns/net").st_ino
        got = self.walker.query(TCP | UDP, netns=[netns], no_owners=True)
        self.assertTrue(all(c.owner is None and c.netns == netns for c in got), got)
        self.assertLessEqual(self.inodes, {c.inode for c in got})

    def test_bad_input_is_refused(self):
        gone = subprocess.Popen(["true"])
        gone.wait()
        for kwargs, says in (({"pids": []}, "empty"), ({"netns": []}, "empty"),
                             ({"pids": [gone.pid]}, "no such process"),
                             ({"netns": [1]}, "netns 1"), ({"every_line": True}, "every_line")):
            with self.assertRaises(ProcspyError, msg=kwargs) as e:
                self.walker.query(TCP | UDP, **kwargs)
            self.assertEqual(e.exception.status, Status.INVALID_ARGUMENT, kwargs)
            self.assertIn(says, e.exception.message, kwargs)


if __name__ == "__main__":
    unittest.main()
