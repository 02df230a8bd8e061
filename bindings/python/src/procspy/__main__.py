"""python -m procspy: the procspy command's listing, from Python.

Prints what the procspy command (cli/procspy.c) prints, byte for byte:
the same table (NETNS PROTO STATE LOCAL REMOTE PID FD NAME) or the same JSON
objects (--json), the same --sockets listing, and the same closing count on
stderr. Options as the command's; exit status 0 ok, 1 error, 2 bad usage,
130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from types import FrameType
from typing import BinaryIO, NoReturn

from . import (
    OWNERS_AUTO,
    OWNERS_BPF,
    OWNERS_PROC,
    SOURCE_AUTO,
    SOURCE_NETLINK,
    SOURCE_TEXT,
    STATES_ALL,
    STATES_CONNECTED,
    STATES_LISTEN,
    TCP,
    UDP,
    Connection,
    ProcspyError,
    Socket,
    State,
    Walker,
    version,
)

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
PROG = "python -m procspy"

HELP = f"""\
Usage: {PROG} [OPTION]...
List every TCP and UDP socket on this host, in every network namespace,
with the process that holds it, as the procspy command does (by walking
/proc; run as root to see all).

  -t, --tcp             TCP sockets (tcp, tcp6)
  -u, --udp             UDP sockets (udp, udp6); default: -t and -u
  -l, --listening       only listening sockets: TCP LISTEN, UDP UNCONN
  -a, --all             sockets in every state (the default)
  -c, --connected       only connections: TCP ESTABLISHED, FIN_WAIT1,
                        FIN_WAIT2, CLOSE_WAIT; UDP ESTAB (connected)
                        (of -l, -a and -c the last one given counts)
  -n, --netns INODE     only the network namespace with this inode; only its
                        tables are read
  -p, --pid PID         only sockets owned by this process; only its fds and
                        its namespaces are read
      --no-owners       the tables alone: no process's fds are read, PID, FD
                        and NAME are '-' (with -p, its sockets)
      --json            one JSON object per line instead of a table
      --sockets         one line per socket file descriptor instead:
                        PID FD NETNS INODE NAME (-n, -p, --json apply)
      --proc DIR        read DIR instead of the host's /proc
      --source SRC      where the tables come from: auto, netlink or text
      --owners HOW      how owners are found: auto, proc or bpf
  -h, --help            show this help and exit
  -V, --version         show the library version and exit

The output is the procspy command's; see procspy(1) for its columns and
JSON keys. Exit status: 0 ok, 1 error, 2 bad usage, 130 interrupted.
"""

SOURCES = {"auto": SOURCE_AUTO, "netlink": SOURCE_NETLINK, "text": SOURCE_TEXT}
OWNERS = {"auto": OWNERS_AUTO, "proc": OWNERS_PROC, "bpf": OWNERS_BPF}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        bad_usage(message)


def bad_usage(message: str) -> NoReturn:
    sys.stderr.write(f"procspy: {message}\nTry '{PROG} --help' for more information.\n")
    sys.exit(EXIT_USAGE)


def _number(lo: int, hi: int, what: str) -> object:
    def parse(s: str) -> int:
        # Digits only, as the command takes them (no sign, no blanks).
        if not s.isascii() or not s.isdigit() or not lo <= int(s) <= hi:
            raise argparse.ArgumentTypeError(f"invalid {what} '{s}'")
        return int(s)

    return parse


def _choice(choices: dict[str, int], what: str) -> object:
    def parse(s: str) -> int:
        if s not in choices:
            raise argparse.ArgumentTypeError(f"invalid {what} '{s}' ({', '.join(choices)})")
        return choices[s]

    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = _Parser(prog=PROG, add_help=False, allow_abbrev=False)
    p.add_argument("-t", "--tcp", action="store_true")
    p.add_argument("-u", "--udp", action="store_true")
    p.add_argument("-l", "--listening", dest="states", action="store_const", const="listening")
    p.add_argument("-a", "--all", dest="states", action="store_const", const="all")
    p.add_argument("-c", "--connected", dest="states", action="store_const", const="connected")
    p.add_argument("-n", "--netns", type=_number(1, 2**64 - 1, "namespace inode"))
    p.add_argument("-p", "--pid", type=_number(1, 2**31 - 1, "pid"))
    p.add_argument("--no-owners", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--sockets", action="store_true")
    p.add_argument("--proc")
    p.add_argument("--source", type=_choice(SOURCES, "--source"))
    p.add_argument("--owners", type=_choice(OWNERS, "--owners"))
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("-V", "--version", action="store_true")
    o = p.parse_args(argv)
    if o.help:
        sys.stdout.write(HELP)
        sys.exit(0)
    if o.version:
        sys.stdout.write(f"procspy {version()}\n")
        sys.exit(0)
    conn_only = o.tcp or o.udp or o.states is not None or o.source is not None or o.owners is not None
    if o.sockets and conn_only:
        bad_usage("--sockets lists socket fds: -t, -u, -l, -a, -c, --source and --owners don't apply")
    if o.sockets and o.no_owners:
        bad_usage("--no-owners applies to a listing of connections, not to --sockets or --watch")
    return o


# ---- formatting: as cli/procspy.c writes it ---------------------------

_HEX = "0123456789abcdef"


def name_table(name: bytes) -> bytes:
    """A process name as plain printable ASCII, C-style escapes."""
    out = bytearray()
    for b in name:
        if b == 0x5C:
            out += b"\\\\"
        elif b == 0x0A:
            out += b"\\n"
        elif b == 0x09:
            out += b"\\t"
        elif b < 0x20 or b >= 0x7F:
            out += b"\\x" + (_HEX[b >> 4] + _HEX[b & 15]).encode()
        else:
            out.append(b)
    return bytes(out)


def _utf8_sequence(s: bytes, i: int) -> int:
    """Length of the valid UTF-8 sequence at s[i:], or 0 (RFC 3629, section 4)."""
    b = s[i]
    if b < 0x80:
        return 1
    if 0xC2 <= b <= 0xDF:
        n = 2
    elif 0xE0 <= b <= 0xEF:
        n = 3
    elif 0xF0 <= b <= 0xF4:
        n = 4
    else:
        return 0
    lo, hi = 0x80, 0xBF
    if b == 0xE0:
        lo = 0xA0  # no overlong 3-byte forms
    if b == 0xED:
        hi = 0x9F  # no surrogates
    if b == 0xF0:
        lo = 0x90  # no overlong 4-byte forms
    if b == 0xF4:
        hi = 0x8F  # nothing above U+10FFFF
    if len(s) - i < n or not lo <= s[i + 1] <= hi:
        return 0
    if any(not 0x80 <= c <= 0xBF for c in s[i + 2:i + n]):
        return 0
    return n


def json_string(name: bytes) -> bytes:
    """A name as a JSON string: valid UTF-8 kept, every other byte \\u00XX."""
    out = bytearray(b'"')
    i = 0
    while i < len(name):
        b = name[i]
        if b in (0x22, 0x5C):
            out += b"\\" + bytes([b])
            i += 1
        elif b == 0x0A:
            out += b"\\n"
            i += 1
        elif b == 0x09:
            out += b"\\t"
            i += 1
        elif b < 0x20 or b == 0x7F:
            out += b"\\u%04x" % b
            i += 1
        else:
            n = _utf8_sequence(name, i)
            if n:
                out += name[i:i + n]
                i += n
            else:
                out += b"\\u%04x" % b  # a byte of invalid UTF-8
                i += 1
    out += b'"'
    return bytes(out)


def _addr(c: Connection, local: bool) -> str:
    a = c.local_addr if local else c.remote_addr
    return socket.inet_ntop(socket.AF_INET6 if c.family == 6 else socket.AF_INET, a.packed)


def _endpoint(c: Connection, local: bool) -> str:
    port = c.local_port if local else c.remote_port
    return f"[{_addr(c, local)}]:{port}" if c.family == 6 else f"{_addr(c, local)}:{port}"


def _proto(c: Connection) -> str:
    base = "udp" if c.protocol == UDP else "tcp"
    return base + "6" if c.family == 6 else base


def connection_table(c: Connection) -> bytes:
    row = (f"{c.netns:<10} {_proto(c):<5} {c.state_name:<12} "
           f"{_endpoint(c, True):<23} {_endpoint(c, False):<23} ").encode()
    if c.owner is None:
        return row + b"      - -     -\n"
    return row + f"{c.owner.pid:>7} {c.owner.fd:<5} ".encode() + name_table(c.owner.name_bytes) + b"\n"


def connection_json(c: Connection) -> bytes:
    head = (f'{{"netns":{c.netns},"proto":"{"udp" if c.protocol == UDP else "tcp"}",'
            f'"family":{c.family},"state":{int(c.state)},"state_name":"{c.state_name}",'
            f'"local_addr":"{_addr(c, True)}","local_port":{c.local_port},'
            f'"remote_addr":"{_addr(c, False)}","remote_port":{c.remote_port},'
            f'"inode":{c.inode},"uid":{c.uid},').encode()
    o = c.owner
    if o is None:
        return head + b'"pid":null,"fd":null,"name":null,"start_time":null}\n'
    return (head + f'"pid":{o.pid},"fd":{o.fd},"name":'.encode() + json_string(o.name_bytes)
            + f',"start_time":{o.start_time}}}\n'.encode())


def socket_table(s: Socket) -> bytes:
    return f"{s.pid:>7} {s.fd:<5} {s.netns:<10} {s.inode:<10} ".encode() + name_table(s.name_bytes) + b"\n"


def socket_json(s: Socket) -> bytes:
    return (f'{{"pid":{s.pid},"fd":{s.fd},"netns":{s.netns},"inode":{s.inode},"name":'.encode()
            + json_string(s.name_bytes) + f',"start_time":{s.start_time}}}\n'.encode())


# ---- the walk ------------------------------------------------------------


class Listing:
    """Filters and prints records; counts them for the closing line."""

    def __init__(self, o: argparse.Namespace, out: BinaryIO) -> None:
        self.o, self.out = o, out
        self.rows = self.ownerless = 0
        self.namespaces: set[int] = set()
        protocols = (TCP if o.tcp else 0) | (UDP if o.udp else 0) or TCP | UDP
        tcp, udp = {
            None: (STATES_ALL, STATES_ALL),
            "all": (STATES_ALL, STATES_ALL),
            "listening": (STATES_LISTEN, State.CLOSE.mask()),
            "connected": (STATES_CONNECTED, State.ESTABLISHED.mask()),
        }[o.states]
        self.tcp_states = tcp if protocols & TCP else 0
        self.udp_states = udp if protocols & UDP else 0
        self.protocols = protocols

    def _emit(self, netns: int, line: bytes) -> None:
        self.namespaces.add(netns)
        self.rows += 1
        self.out.write(line)

    def on_connection(self, c: Connection) -> None:
        o = self.o
        mask = self.udp_states if c.protocol == UDP else self.tcp_states
        if c.state >= 32 or not mask & (1 << c.state):
            return
        # -n and -p were the library's to apply (Walker.query).
        if c.owner is None:
            self.ownerless += 1
        self._emit(c.netns, connection_json(c) if o.json else connection_table(c))

    def on_socket(self, s: Socket) -> None:
        o = self.o
        if o.netns is not None and s.netns != o.netns:
            return
        if o.pid is not None and s.pid != o.pid:
            return
        self._emit(s.netns, socket_json(s) if o.json else socket_table(s))


def main(argv: list[str] | None = None) -> int:
    o = parse_args(sys.argv[1:] if argv is None else argv)
    out = sys.stdout.buffer
    listing = Listing(o, out)
    try:
        w = Walker(o.proc)
        w.set_source(o.source or SOURCE_AUTO)
        w.set_owner_scan(o.owners or OWNERS_AUTO)
    except ProcspyError as e:
        sys.stderr.write(f"procspy: {e.message or e}\n")
        return EXIT_FAILURE

    interrupted = False

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True
        w.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    error: ProcspyError | None = None
    try:
        if o.sockets:
            if not o.json:
                out.write(f"{'PID':>7} {'FD':<5} {'NETNS':<10} {'INODE':<10} NAME\n".encode())
            w.walk(listing.on_socket)
        else:
            if not o.json:
                out.write(f"{'NETNS':<10} {'PROTO':<5} {'STATE':<12} {'LOCAL':<23} {'REMOTE':<23} "
                          f"{'PID':>7} {'FD':<5} NAME\n".encode())
            w.query(listing.protocols, listing.tcp_states | listing.udp_states,
                    pids=None if o.pid is None else [o.pid],
                    netns=None if o.netns is None else [o.netns], no_owners=o.no_owners,
                    callback=listing.on_connection)
    except ProcspyError as e:
        error = e
    except OSError:
        sys.stderr.write("procspy: error writing the output\n")
        return EXIT_FAILURE
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        w.close()
    try:
        out.flush()
    except OSError:
        sys.stderr.write("procspy: error writing the output\n")
        return EXIT_FAILURE
    if interrupted:
        sys.stderr.write("procspy: interrupted\n")
        return EXIT_INTERRUPTED
    if error is not None:
        sys.stderr.write(f"procspy: {error.message or error}\n")
        return EXIT_FAILURE
    n = len(listing.namespaces)
    if o.sockets:
        sys.stderr.write(f"{listing.rows} sockets in {n} namespaces\n")
    else:
        sys.stderr.write(f"{listing.rows} connections in {n} namespaces "
                         f"({listing.ownerless} without a visible owner)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
