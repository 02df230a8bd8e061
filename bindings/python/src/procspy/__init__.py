"""libprocspy for Python: which process owns each socket, in every network
namespace. Standard library only (ctypes).

    import procspy
    with procspy.Walker() as w:
        for c in w.connections(protocols=procspy.TCP, states=procspy.STATES_LISTEN):
            print(c.local_addr, c.local_port, c.state_name, c.owner and c.owner.pid)

The library is the file in env PROCSPY_LIB, if set; else the one beside
this file, where the wheel puts it (the self-contained wheel of ``make
wheel``); else "libprocspy.so.0", its SONAME, through the dynamic loader
(its cache after ldconfig, or LD_LIBRARY_PATH), as a C program linked
against it would find it. ``python -m procspy`` is the procspy command.
"""

from __future__ import annotations

import ctypes
import enum
import ipaddress
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, TypeVar, Union, overload

__all__ = [
    "Walker", "StopToken", "Socket", "Connection", "Change", "ChangeKind", "Event", "EventKind", "Stats",
    "State", "Status",
    "ProcspyError",
    "TCP", "UDP", "STATES_ALL", "STATES_CONNECTED", "STATES_LISTEN", "states",
    "SOURCE_AUTO", "SOURCE_TEXT", "SOURCE_NETLINK", "OWNERS_AUTO", "OWNERS_PROC", "OWNERS_BPF",
    "QUERY_PIDS", "QUERY_NETNS", "QUERY_NO_OWNERS", "QUERY_EVERY_LINE",
    "QUERY_PROCESS_NAMESPACES_ONLY",
    "version", "status_str", "state_name", "SONAME", "LIBRARY_PATH",
]

#: The library's SONAME: what the loader is asked for unless PROCSPY_LIB is set.
SONAME = "libprocspy.so.0"


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


def _file_of(lib: ctypes.CDLL, name: str) -> str:
    """The file the loader mapped for `lib` (dladdr of one of its symbols)."""
    for libc in (None, "libdl.so.2"):  # dladdr is in libc since glibc 2.34
        try:
            dladdr = ctypes.CDLL(libc).dladdr
        except (OSError, AttributeError):
            continue
        dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        dladdr.restype = ctypes.c_int
        info = _DlInfo()
        addr = ctypes.cast(lib.procspy_version, ctypes.c_void_p)
        if dladdr(addr, ctypes.byref(info)) and info.dli_fname:
            return os.fsdecode(info.dli_fname)
    return name


def _load() -> tuple[ctypes.CDLL, str]:
    bundled = os.path.join(os.path.dirname(os.path.abspath(__file__)), SONAME)
    name = os.environ.get("PROCSPY_LIB") or (bundled if os.path.exists(bundled) else SONAME)
    try:
        lib = ctypes.CDLL(name)
    except OSError as e:
        raise ImportError(
            f"procspy: cannot load {name} ({e}). Install libprocspy (make install; ldconfig), "
            f"or point LD_LIBRARY_PATH at its directory, or PROCSPY_LIB at the file") from e
    return lib, _file_of(lib, name)


_lib, LIBRARY_PATH = _load()
"""The file the library was loaded from."""


# ---- the C types, field for field as in procspy.h ------------------------

class _CSocket(ctypes.Structure):
    _fields_ = [
        ("inode", ctypes.c_uint64),
        ("netns", ctypes.c_uint64),
        ("start_time", ctypes.c_uint64),
        ("pid", ctypes.c_int32),
        ("fd", ctypes.c_int32),
        ("name", ctypes.c_void_p),  # const char *, not NUL-scanned: name_len says
        ("name_len", ctypes.c_size_t),
    ]


class _CConnection(ctypes.Structure):
    _fields_ = [
        ("inode", ctypes.c_uint64),
        ("netns", ctypes.c_uint64),
        ("protocol", ctypes.c_uint8),
        ("family", ctypes.c_uint8),
        ("state", ctypes.c_uint8),
        ("local_addr", ctypes.c_uint8 * 16),
        ("remote_addr", ctypes.c_uint8 * 16),
        ("local_port", ctypes.c_uint16),
        ("remote_port", ctypes.c_uint16),
        ("uid", ctypes.c_uint32),
        ("owner", ctypes.POINTER(_CSocket)),
    ]


class _CChange(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),  # enum procspy_change_kind
        ("old_state", ctypes.c_uint8),
        ("connection", ctypes.POINTER(_CConnection)),
        ("old_owner", ctypes.POINTER(_CSocket)),
    ]


class _CEvent(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),  # enum procspy_event_kind
        ("old_state", ctypes.c_uint8),
        ("connection", ctypes.POINTER(_CConnection)),
        ("time_ns", ctypes.c_uint64),
        ("cookie", ctypes.c_uint64),
        ("lost", ctypes.c_uint64),
    ]


class _CWalkStats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "namespaces", "processes", "skipped", "fds", "sockets",
        "bytes_written", "bytes_needed", "ticks", "elapsed_ns")]


class _CWalkStatsExt(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "accounted", "dropped", "netns_mismatch", "snapshot_bytes", "closed_lost",
        "netns_found", "netns_unreachable", "netns_unreachable_fds", "closes_stalled",
        "files_truncated", "tables_unreadable", "events", "events_lost", "events_dropped")]


# C struct name -> ctypes type, for the layout test (tests/test_procspy.py).
C_STRUCTS: dict[str, type[ctypes.Structure]] = {
    "procspy_socket": _CSocket,
    "procspy_connection": _CConnection,
    "procspy_walk_stats": _CWalkStats,
    "procspy_walk_stats_ext": _CWalkStatsExt,
    "procspy_change": _CChange,
    "procspy_event": _CEvent,
}

_SOCKET_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_CSocket))
_CONNECTION_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_CConnection))
_CHANGE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_CChange))
_EVENT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_CEvent))
_status = ctypes.c_int  # enum procspy_status; any int comes back as is
_walker_p = ctypes.c_void_p


def _fn(name: str, restype: Any, *argtypes: Any) -> Any:
    f = getattr(_lib, name)
    f.restype, f.argtypes = restype, list(argtypes)
    return f


_version = _fn("procspy_version", ctypes.c_char_p)
_status_str = _fn("procspy_status_str", ctypes.c_char_p, ctypes.c_int)
_state_name = _fn("procspy_state_name", ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32)
_c_last_error = _fn("procspy_last_error", ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t)
_walker_new = _fn("procspy_walker_new", _status, ctypes.c_char_p, ctypes.POINTER(_walker_p))
_walker_free = _fn("procspy_walker_free", None, _walker_p)
_set_rate_limit = _fn("procspy_walker_set_rate_limit", _status, _walker_p,
                      ctypes.c_uint64, ctypes.c_uint64)
_set_source = _fn("procspy_walker_set_source", _status, _walker_p, ctypes.c_uint32)
_set_owner_scan = _fn("procspy_walker_set_owner_scan", _status, _walker_p, ctypes.c_uint32)
_walker_stop = _fn("procspy_walker_stop", None, _walker_p)
_stop_token = _fn("procspy_walker_stop_token", _status, _walker_p, ctypes.POINTER(ctypes.c_void_p))
_stop_token_stop = _fn("procspy_stop_token_stop", None, ctypes.c_void_p)
_stop_token_free = _fn("procspy_stop_token_free", None, ctypes.c_void_p)
_stats_ext = _fn("procspy_walker_stats_ext", _status, _walker_p, ctypes.POINTER(_CWalkStatsExt),
                 ctypes.c_size_t)
_walker_walk = _fn("procspy_walker_walk", _status, _walker_p, ctypes.c_void_p, ctypes.c_size_t,
                   _SOCKET_FN, ctypes.c_void_p, ctypes.POINTER(_CWalkStats))
_walker_connections = _fn("procspy_walker_connections", _status, _walker_p, ctypes.c_void_p,
                          ctypes.c_size_t, ctypes.c_uint32, ctypes.c_uint32, _CONNECTION_FN,
                          ctypes.c_void_p, ctypes.POINTER(_CWalkStats))
_walker_changes = _fn("procspy_walker_changes", _status, _walker_p, ctypes.c_void_p,
                      ctypes.c_size_t, ctypes.c_uint32, ctypes.c_uint32, _CHANGE_FN,
                      ctypes.c_void_p, ctypes.POINTER(_CWalkStats))
_walker_events = _fn("procspy_walker_events", _status, _walker_p, ctypes.c_uint32, ctypes.c_uint32,
                     _EVENT_FN, ctypes.c_void_p, ctypes.POINTER(_CWalkStats))
_events_fd = _fn("procspy_walker_events_fd", _status, _walker_p, ctypes.POINTER(ctypes.c_int))
_set_events_ring = _fn("procspy_walker_set_events_ring", _status, _walker_p, ctypes.c_size_t)
_netns_of = _fn("procspy_walker_netns_of", _status, _walker_p, ctypes.c_int32,
                ctypes.POINTER(ctypes.c_uint64))
_diagnose = _fn("procspy_walker_diagnose", _status, _walker_p, ctypes.c_char_p,
                ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t))
_walker_query = _fn("procspy_walker_query", _status, _walker_p, ctypes.POINTER(ctypes.c_int32),
                    ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t,
                    ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32,
                    ctypes.c_uint32, _CONNECTION_FN, ctypes.c_void_p, ctypes.POINTER(_CWalkStats))


# ---- Python types --------------------------------------------------------

class Status(enum.IntEnum):
    """procspy_status: values fixed by the ABI."""

    OK = 0
    STOPPED = 1
    CALLBACK_ABORTED = 2
    BUFFER_TOO_SMALL = 3
    NULL_ARGUMENT = 4
    INVALID_ARGUMENT = 5
    IO = 6
    BUSY = 7
    PANIC = 8
    UNSUPPORTED = 9


class State(enum.IntEnum):
    """Kernel socket states (include/net/tcp_states.h). Their names as the
    procspy command prints them come from the library: state_name()."""

    ESTABLISHED = 1  # UDP: a connected socket
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7  # UDP: an unconnected socket
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11
    NEW_SYN_RECV = 12

    def mask(self) -> int:
        return 1 << int(self)


TCP = 1
UDP = 2
STATES_ALL = 0xFFFFFFFF
# Where connections() reads the tables (Walker.set_source).
SOURCE_AUTO, SOURCE_TEXT, SOURCE_NETLINK = 0, 1, 2
#: procspy_walker_query's flags (Walker.query sets them from its arguments).
QUERY_PIDS, QUERY_NETNS, QUERY_NO_OWNERS, QUERY_EVERY_LINE = 1, 2, 4, 8
QUERY_PROCESS_NAMESPACES_ONLY = 16
# How connections() finds owners (Walker.set_owner_scan).
OWNERS_AUTO, OWNERS_PROC, OWNERS_BPF = 0, 1, 2
STATES_CONNECTED = (State.ESTABLISHED.mask() | State.FIN_WAIT1.mask()
                    | State.FIN_WAIT2.mask() | State.CLOSE_WAIT.mask())
STATES_LISTEN = State.LISTEN.mask()


def states(*which: State) -> int:
    """The state mask holding the given states."""
    m = 0
    for s in which:
        m |= 1 << int(s)
    return m


def version() -> str:
    """The library's "MAJOR.MINOR.PATCH"."""
    return _version().decode()


def status_str(status: int) -> str:
    """procspy_status_str: the name and meaning of any status value."""
    return _status_str(int(status)).decode()


def state_name(protocol: int, state: int) -> str:
    """procspy_state_name: the name of `state` in a table of `protocol`, as
    the procspy command prints it. TCP: the kernel's names ("LISTEN",
    "TIME_WAIT", ...); UDP: "UNCONN" (CLOSE) and "ESTAB" (ESTABLISHED);
    "UNKNOWN" for a state the kernel does not define, or another protocol."""
    if not (0 <= protocol <= 0xFFFFFFFF and 0 <= state <= 0xFFFFFFFF):
        return "UNKNOWN"
    return _state_name(protocol, state).decode()


class ProcspyError(Exception):
    """A call failed: .status (Status, or int for values this module does not
    know) and .message (procspy_last_error on the failing thread)."""

    def __init__(self, status: int, message: str = "") -> None:
        try:
            status = Status(status)
        except ValueError:
            pass
        self.status: Status | int = status
        self.message = message
        super().__init__(status, message)

    def __str__(self) -> str:
        name = self.status.name if isinstance(self.status, Status) else str(self.status)
        return f"{self.message or status_str(self.status)} (PROCSPY_{name})"


def _last_error() -> str:
    n = _c_last_error(None, 0)
    if n == 0:
        return ""
    buf = ctypes.create_string_buffer(n + 1)
    _c_last_error(buf, n + 1)
    return buf.raw[:n].decode("utf-8", "backslashreplace")


def _check(status: int) -> None:
    # Same Python thread = same OS thread as the call, so last_error is ours.
    if status != Status.OK:
        raise ProcspyError(status, _last_error())


@dataclass(frozen=True)
class Socket:
    """One socket file descriptor of one process."""

    inode: int
    netns: int
    start_time: int  # clock ticks after boot; (pid, start_time) names a process
    pid: int
    fd: int
    name: str  # comm, decoded with os.fsdecode (undecodable bytes round-trip)

    @property
    def name_bytes(self) -> bytes:
        """The name as the kernel holds it: any bytes but NUL."""
        return os.fsencode(self.name)

    @classmethod
    def _from_c(cls, s: _CSocket) -> Socket:
        name = ctypes.string_at(s.name, s.name_len) if s.name else b""
        return cls(s.inode, s.netns, s.start_time, s.pid, s.fd, os.fsdecode(name))


IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def _addr(family: int, raw: ctypes.Array[ctypes.c_uint8]) -> IPAddress:
    b = bytes(raw)
    return ipaddress.IPv4Address(b[:4]) if family == 4 else ipaddress.IPv6Address(b)


def _state(v: int) -> State | int:
    try:
        return State(v)
    except ValueError:
        return v


@dataclass(frozen=True)
class Connection:
    """One line of a kernel socket table, with the process holding it."""

    inode: int  # 0 for sockets no longer owned (TIME_WAIT)
    netns: int  # the namespace whose table listed it
    protocol: int  # TCP or UDP
    family: int  # 4 or 6 (a v4-mapped address in tcp6 stays 6)
    state: State | int  # an int if this module does not know the number
    local_addr: IPAddress
    local_port: int
    remote_addr: IPAddress
    remote_port: int
    uid: int
    owner: Socket | None  # None if no holder is visible

    @property
    def state_name(self) -> str:
        """The state's name as the procspy command prints it (UDP: UNCONN, ESTAB)."""
        return state_name(self.protocol, int(self.state))

    @classmethod
    def _from_c(cls, c: _CConnection) -> Connection:
        owner = Socket._from_c(c.owner.contents) if c.owner else None
        return cls(c.inode, c.netns, c.protocol, c.family, _state(c.state),
                   _addr(c.family, c.local_addr), c.local_port,
                   _addr(c.family, c.remote_addr), c.remote_port, c.uid, owner)


class ChangeKind(enum.IntEnum):
    """procspy_change_kind: values fixed by the ABI."""

    APPEARED = 1  # listed now, not by the previous call
    DISAPPEARED = 2  # listed by the previous call, not now
    STATE = 3  # listed by both, in another state
    OWNER = 4  # listed by both, with another owner
    SEEN_CLOSED = 5  # opened and closed between the two calls

    @property
    def event(self) -> str:
        """The name the procspy command prints: appeared, ..., closed."""
        return "closed" if self is ChangeKind.SEEN_CLOSED else self.name.lower()


@dataclass(frozen=True)
class Change:
    """One change between two changes() calls."""

    kind: ChangeKind | int  # an int if this module does not know the number
    # Now; DISAPPEARED: as the previous call saw it; SEEN_CLOSED: as the
    # kernel's destroy notification told it (inode 0, no owner).
    connection: Connection
    old_state: State | int  # at the previous call; 0 for APPEARED, SEEN_CLOSED
    old_owner: Socket | None  # at the previous call; None for those, or where it had none

    @classmethod
    def _from_c(cls, c: _CChange) -> Change:
        try:
            kind: ChangeKind | int = ChangeKind(c.kind)
        except ValueError:
            kind = c.kind
        old_owner = Socket._from_c(c.old_owner.contents) if c.old_owner else None
        return cls(kind, Connection._from_c(c.connection.contents), _state(c.old_state), old_owner)


class EventKind(enum.IntEnum):
    """procspy_event_kind: values fixed by the ABI. The procspy command
    prints each by its name in lower case."""

    CONNECT = 1  # TCP: CLOSE -> SYN_SENT, in the connecting process (local port 0); UDP: a connect
    ACCEPT = 2  # a TCP connection accepted, in the accepting process
    CLOSE = 3  # the process closed the socket (its last fd)
    SEND = 4  # a UDP socket's first send
    STATE = 5  # any other TCP state change: old_state -> connection.state
    LISTEN = 6  # TCP: CLOSE -> LISTEN, in the listening process
    LOST = 7  # `lost` events were lost before this one (the ring was full)


@dataclass(frozen=True)
class Event:
    """One live event (procspy_walker_events)."""

    kind: EventKind | int  # an int if this module does not know the number
    # The socket as the kernel held it then (inode 0 where it had no file),
    # its owner the process that acted, or the one seen acting on the
    # socket before, or None; the owner's fd is -1. LOST: all zeros.
    connection: Connection
    old_state: State | int  # STATE: the state it left; 0 otherwise
    time_ns: int  # when, CLOCK_BOOTTIME ns
    cookie: int  # the kernel's socket cookie: one socket's events share it
    lost: int  # LOST: how many were lost; 0 otherwise

    @classmethod
    def _from_c(cls, e: _CEvent) -> Event:
        try:
            kind: EventKind | int = EventKind(e.kind)
        except ValueError:
            kind = e.kind
        return cls(kind, Connection._from_c(e.connection.contents), _state(e.old_state), e.time_ns,
                   e.cookie, e.lost)


@dataclass(frozen=True)
class Stats:
    """What a walk saw: procspy_walk_stats, then procspy_walk_stats_ext
    (the counters the frozen C struct has no room for)."""

    namespaces: int
    processes: int
    skipped: int
    fds: int
    sockets: int
    bytes_written: int
    bytes_needed: int
    ticks: int
    elapsed_ns: int
    accounted: int = 0  # connections: namespaces listed from the BPF owner scan alone
    dropped: int = 0  # netlink messages not believed and dropped
    netns_mismatch: int = 0  # pids skipped: their namespace was not the one grouped by
    snapshot_bytes: int = 0  # changes: the snapshot kept for the next call
    closed_lost: int = 0  # changes: times destroy notifications were lost
    netns_found: int = 0  # namespaces found that no process is in
    netns_unreachable: int = 0  # of those, the ones whose tables could not be read
    netns_unreachable_fds: int = 0  # of those, the ones not entered for want of an fd
    closes_stalled: int = 0  # sockets not asked: copies' closes had not returned
    files_truncated: int = 0  # files not read whole (a mountinfo past its bound)
    tables_unreadable: int = 0  # tables of a namespace that could not be read
    events: int = 0  # events(): events delivered
    events_lost: int = 0  # events(): events the kernel could not write (ring full)
    events_dropped: int = 0  # events(): ring records that made no sense

    @classmethod
    def _from_c(cls, s: _CWalkStats, ext: _CWalkStatsExt) -> Stats:
        return cls(*(getattr(s, f) for f, _ in _CWalkStats._fields_),
                   *(getattr(ext, f) for f, _ in _CWalkStatsExt._fields_))


_Rec = TypeVar("_Rec", Socket, Connection, Change, Event)
_Callback = Callable[[_Rec], Union[bool, None]]
_Self = TypeVar("_Self", bound="_Closes")


class _Closes:
    """A context manager over close(), which garbage collection calls too."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # a failed __init__, or interpreter shutdown (module globals gone)
            pass


class Walker(_Closes):
    """A walker over one proc root (None: the host's /proc). A context
    manager. Thread-safe: one walk runs at a time (another one raises
    ProcspyError BUSY); stop() and close() may be called from any thread."""

    def __init__(self, proc_root: str | bytes | os.PathLike[str] | os.PathLike[bytes] | None = None,
                 ) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._closed = True
        self._p: ctypes.c_void_p | None = None
        self.last_stats: Stats | None = None
        root = None if proc_root is None else os.fsencode(proc_root)
        if root is not None and b"\0" in root:
            raise ProcspyError(Status.INVALID_ARGUMENT, "proc root contains a NUL byte")
        p = _walker_p()
        _check(_walker_new(root, ctypes.byref(p)))
        self._p, self._closed = p, False

    def close(self) -> None:
        """Stops any walk in progress and frees the walker, now or when the
        calls still running on it return."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _walker_stop(self._p)
            if self._active == 0:
                _walker_free(self._p)
                self._p = None

    def stop(self) -> None:
        """Ends the walk in progress soon, and every later one at once. Final.
        It takes the walker's lock: from a signal handler, use a stop_token()."""
        with self._lock:
            if not self._closed:
                _walker_stop(self._p)

    def stop_token(self) -> StopToken:
        """A StopToken for this walker: its stop() is this walker's, and it
        stays safe to call after the walker is closed (it then stops
        nothing). It takes no lock, so a signal handler may call it while
        the thread it interrupted is inside a call on the walker."""
        out = ctypes.c_void_p()
        p = self._enter()
        try:
            _check(_stop_token(p, ctypes.byref(out)))
        finally:
            self._exit()
        return StopToken(out)

    def _enter(self) -> ctypes.c_void_p | None:
        with self._lock:
            if self._closed:
                raise ValueError("procspy: walker is closed")
            self._active += 1
            return self._p

    def _exit(self) -> None:
        with self._lock:
            self._active -= 1
            if self._closed and self._active == 0 and self._p is not None:
                _walker_free(self._p)
                self._p = None

    def set_rate_limit(self, fd_block: int = 0, tick: float = 0.0) -> None:
        """A tick before each namespace and after every fd_block fd stats
        (0: none), tick seconds apart (0: never wait)."""
        if tick < 0 or fd_block < 0:
            raise ProcspyError(Status.INVALID_ARGUMENT, "negative rate limit")
        p = self._enter()
        try:
            _check(_set_rate_limit(p, fd_block, int(round(tick * 1e9))))
        finally:
            self._exit()

    def _set(self, fn: Callable[[Any, int], int], value: int) -> None:
        p = self._enter()
        try:
            _check(fn(p, value))
        finally:
            self._exit()

    def set_source(self, source: int) -> None:
        """SOURCE_AUTO (default), SOURCE_TEXT or SOURCE_NETLINK."""
        self._set(_set_source, source)

    def set_owner_scan(self, scan: int) -> None:
        """OWNERS_AUTO (default: the BPF iterator where it loads), OWNERS_PROC
        (PID/fd only) or OWNERS_BPF (the iterator or an error)."""
        self._set(_set_owner_scan, scan)

    def netns_of(self, pid: int) -> int:
        """The inode of pid's network namespace."""
        out = ctypes.c_uint64()
        p = self._enter()
        try:
            _check(_netns_of(p, pid, ctypes.byref(out)))
        finally:
            self._exit()
        return out.value

    def diagnose(self) -> str:
        """What the walker has learnt of the running kernel, a line each
        ("what: answer"): its probes and the BPF owner scan. For people:
        the wording may change."""
        size = ctypes.c_size_t()
        p = self._enter()
        try:
            while True:
                buf = ctypes.create_string_buffer(size.value + 1)
                status = _diagnose(p, buf, len(buf), ctypes.byref(size))
                if status != Status.BUFFER_TOO_SMALL:
                    _check(status)
                    return buf.value.decode()
        finally:
            self._exit()

    def _run(self, make_fn: Any, convert: Callable[[Any], _Rec],
             call: Callable[[Any, Any, Any], int],
             callback: _Callback[_Rec] | None, decline_is_ok: bool = True) -> list[_Rec] | Stats:
        records: list[_Rec] = []
        failure: list[BaseException] = []
        declined = False

        def tramp(_userdata: object, rec: Any) -> int:
            nonlocal declined
            try:
                r = convert(rec.contents)
                if callback is None:
                    records.append(r)
                elif callback(r) is False:
                    declined = True
                    return 1
                return 0
            except BaseException as e:  # never unwinds into C; re-raised below
                failure.append(e)
                return 1

        c_fn = make_fn(tramp)  # kept alive until the call returns
        stats, ext = _CWalkStats(), _CWalkStatsExt()
        p = self._enter()
        try:
            status = call(p, c_fn, ctypes.byref(stats))
            message = _last_error() if status != Status.OK else ""
            # A BUSY call ran no walk: the counters would be another call's.
            if status != Status.BUSY:
                _check(_stats_ext(p, ctypes.byref(ext), ctypes.sizeof(ext)))
        finally:
            self._exit()
        self.last_stats = Stats._from_c(stats, ext)
        if failure:
            raise failure[0]
        if status == Status.CALLBACK_ABORTED and declined and decline_is_ok:
            status = Status.OK
        if status != Status.OK:
            raise ProcspyError(status, message)
        return records if callback is None else self.last_stats

    @overload
    def walk(self, callback: None = None) -> list[Socket]: ...
    @overload
    def walk(self, callback: Callable[[Socket], bool | None]) -> Stats: ...

    def walk(self, callback: Callable[[Socket], bool | None] | None = None) -> list[Socket] | Stats:
        """Every socket fd of every process, namespace by namespace. Without
        a callback: a list of Socket. With one: calls it per Socket (return
        False to end the walk early) and returns the Stats. An exception in
        the callback ends the walk and is re-raised here. Stats of the last
        walk are in .last_stats."""
        return self._run(_SOCKET_FN, Socket._from_c,
                         lambda p, fn, st: _walker_walk(p, None, 0, fn, None, st), callback)

    @overload
    def connections(self, protocols: int = ..., states: int = ...,
                    callback: None = None) -> list[Connection]: ...
    @overload
    def connections(self, protocols: int = ..., states: int = ..., *,
                    callback: Callable[[Connection], bool | None]) -> Stats: ...

    def connections(self, protocols: int = TCP | UDP, states: int = STATES_ALL,
                    callback: Callable[[Connection], bool | None] | None = None,
                    ) -> list[Connection] | Stats:
        """Every line of the chosen tables (TCP, UDP or TCP|UDP) in every
        namespace whose state is in the mask, with its owner. List or
        callback, as for walk()."""
        return self._run(_CONNECTION_FN, Connection._from_c,
                         lambda p, fn, st: _walker_connections(p, None, 0, protocols, states,
                                                               fn, None, st), callback)

    @overload
    def query(self, protocols: int = ..., states: int = ..., *, pids: list[int] | None = ...,
              netns: list[int] | None = ..., no_owners: bool = ..., every_line: bool = ...,
              process_namespaces_only: bool = ..., callback: None = None) -> list[Connection]: ...
    @overload
    def query(self, protocols: int = ..., states: int = ..., *, pids: list[int] | None = ...,
              netns: list[int] | None = ..., no_owners: bool = ..., every_line: bool = ...,
              process_namespaces_only: bool = ...,
              callback: Callable[[Connection], bool | None]) -> Stats: ...

    def query(self, protocols: int = TCP | UDP, states: int = STATES_ALL, *,
              pids: list[int] | None = None, netns: list[int] | None = None,
              no_owners: bool = False, every_line: bool = False,
              process_namespaces_only: bool = False,
              callback: Callable[[Connection], bool | None] | None = None,
              ) -> list[Connection] | Stats:
        """connections() restricted (procspy_walker_query): pids, only the
        sockets these processes hold (only their fds and their namespaces
        are read; every_line: every line of those namespaces); netns, only
        the lines of these namespaces (inodes); no_owners, the tables
        without the owner lookup (every owner None). None is no restriction;
        an empty list, a pid that names no process or a namespace no one
        has raises ProcspyError INVALID_ARGUMENT naming it, never "all".
        List or callback, as for walk()."""
        flags = ((QUERY_PIDS if pids is not None else 0) | (QUERY_NETNS if netns is not None else 0)
                 | (QUERY_NO_OWNERS if no_owners else 0) | (QUERY_EVERY_LINE if every_line else 0)
                 | (QUERY_PROCESS_NAMESPACES_ONLY if process_namespaces_only else 0))
        c_pids = (ctypes.c_int32 * len(pids))(*pids) if pids else None
        c_netns = (ctypes.c_uint64 * len(netns))(*netns) if netns else None
        return self._run(_CONNECTION_FN, Connection._from_c,
                         lambda p, fn, st: _walker_query(p, c_pids, len(pids or ()), c_netns,
                                                         len(netns or ()), flags, None, 0,
                                                         protocols, states, fn, None, st),
                         callback)

    @overload
    def changes(self, protocols: int = ..., states: int = ...,
                callback: None = None) -> list[Change]: ...
    @overload
    def changes(self, protocols: int = ..., states: int = ..., *,
                callback: Callable[[Change], bool | None]) -> Stats: ...

    def changes(self, protocols: int = TCP | UDP, states: int = STATES_ALL,
                callback: Callable[[Change], bool | None] | None = None,
                ) -> list[Change] | Stats:
        """What changed since the previous changes() call on this walker that
        succeeded (at the first, every connection as APPEARED): connections
        of the chosen tables (as for connections()) that appeared,
        disappeared, changed state or owner (both: two changes, the state
        first), then those the kernel says opened and closed between the
        calls (SEEN_CLOSED, whatever the states). The whole pass runs before
        the first change is delivered. A call that fails keeps nothing, so
        the next one reports against the same previous snapshot; that
        includes a callback returning False, which raises ProcspyError
        CALLBACK_ABORTED (unlike walk() and connections()). List or
        callback, as for walk()."""
        return self._run(_CHANGE_FN, Change._from_c,
                         lambda p, fn, st: _walker_changes(p, None, 0, protocols, states,
                                                           fn, None, st), callback,
                         decline_is_ok=False)


    @overload
    def events(self, timeout: float = ..., protocols: int = ...,
               callback: None = None) -> list[Event]: ...
    @overload
    def events(self, timeout: float = ..., protocols: int = ..., *,
               callback: Callable[[Event], bool | None]) -> Stats: ...

    def events(self, timeout: float = 0.0, protocols: int = TCP | UDP,
               callback: Callable[[Event], bool | None] | None = None,
               ) -> list[Event] | Stats:
        """Live events (procspy_walker_events): each connect, accept, listen,
        close, TCP state change and first UDP send on the host, in every
        namespace, with the process that did it, from the library's BPF
        tracer. What waits, or the first of what comes within timeout
        seconds (0: no wait), a ring's worth at most; call it in a loop, or
        poll events_fd(). The first call starts the tracer (root, or
        CAP_BPF and CAP_PERFMON), which stays attached until the walker is
        closed; a kernel that refuses it raises ProcspyError UNSUPPORTED
        saying what, and diagnose() lists each hook. A LOST event comes
        first where the kernel lost events since the last call. stop()
        ends a waiting call (STOPPED). It runs beside a walk on the same
        walker; a second events call at once raises BUSY. Callback False
        ends the call early, the rest waiting for the next (not an error).
        List or callback, as for walk()."""
        if not 0 <= timeout <= 0xFFFFFFFF / 1000:
            raise ProcspyError(Status.INVALID_ARGUMENT, f"timeout {timeout} out of range")
        ms = int(round(timeout * 1000))
        return self._run(_EVENT_FN, Event._from_c,
                         lambda p, fn, st: _walker_events(p, ms, protocols, fn, None, st), callback)

    def events_fd(self) -> int:
        """A descriptor that is readable whenever an event waits, for the
        caller's own poll/select/selectors loop (then events(timeout=0));
        starts the tracer as events() does, failing as it does. It stays
        the walker's: never close it; valid until the walker is closed."""
        fd = ctypes.c_int(-1)
        p = self._enter()
        try:
            _check(_events_fd(p, ctypes.byref(fd)))
        finally:
            self._exit()
        return fd.value

    def set_events_ring(self, size: int) -> None:
        """The tracer's ring buffer in bytes: a power of two from 64 KiB to
        1 GiB (default 4 MiB). Only before the tracer starts (the first
        events() or events_fd()); after, INVALID_ARGUMENT."""
        if not 0 <= size < 1 << 64:
            raise ProcspyError(Status.INVALID_ARGUMENT, f"ring size {size} out of range")
        self._set(_set_events_ring, size)


class StopToken(_Closes):
    """procspy_walker_stop_token: stops its walker's walks, and outlives it.
    Walker.stop_token() makes one; close() frees it (also on garbage
    collection); it must not race stop() on the same token."""

    def __init__(self, p: ctypes.c_void_p) -> None:
        self._p: ctypes.c_void_p | None = p

    def stop(self) -> None:
        """Walker.stop() of its walker, or nothing once that walker is closed.
        Takes no lock and allocates nothing in C: safe in a signal handler."""
        if self._p is not None:
            _stop_token_stop(self._p)

    def close(self) -> None:
        """Frees the token; stop() does nothing after it."""
        p, self._p = self._p, None
        if p is not None:
            _stop_token_free(p)

