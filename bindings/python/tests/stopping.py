"""A call on a thread of its own, and the stop that must end it: what the
stop tests of walks and of events share."""

import threading
import time

from procspy import ProcspyError, Status


def call_on_thread(call):
    """Starts call() on another thread; the ProcspyError it ends with, and
    when it came (time.monotonic()), land in the dict returned."""
    result = {}

    def run():
        try:
            call()
        except ProcspyError as e:
            result["err"], result["at"] = e, time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    return t, result


def assert_stops(test, started, stop, within=None):
    """stop() ends the call call_on_thread started within 5 s, and it raises
    STOPPED; with `within`, it came within that many seconds of stop()."""
    t, result = started
    stop_at = time.monotonic()
    stop()
    t.join(5)
    test.assertFalse(t.is_alive(), "the call did not end within 5 s of the stop")
    test.assertEqual(result["err"].status, Status.STOPPED)
    if within is not None:
        test.assertLess(result["at"] - stop_at, within)
