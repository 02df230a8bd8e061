"""python -m procspy: the procspy command.

Hands over to the command itself (exec, same arguments), so there is one
implementation of its options and output: the command the wheel carries
beside this package (``make wheel``), else ``procspy`` on PATH (``make
install``, the .deb). See procspy(1) or ``python -m procspy --help``.
"""

from __future__ import annotations

import os
import shutil
import sys

BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "procspy")


def command() -> str | None:
    """The procspy command this hands over to, or None if there is none."""
    if os.access(BUNDLED, os.X_OK):
        return BUNDLED
    return shutil.which("procspy")


def main(argv: list[str] | None = None) -> int:
    cmd = command()
    if cmd is None:
        sys.stderr.write("procspy: no procspy command: install libprocspy (make install, or its .deb), "
                         "or the procspy wheel, which carries it\n")
        return 1
    sys.stdout.flush()
    os.execv(cmd, ["procspy", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
