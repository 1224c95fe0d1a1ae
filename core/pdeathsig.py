"""Run a command that gets SIGTERM when the process that started it dies, even by SIGKILL.

``python -m mle_tui.core.pdeathsig PARENT_PID -- CMD...`` sets Linux's ``PR_SET_PDEATHSIG``
(kept across ``exec``) and then execs CMD in place, so its pid and process group are the ones
the caller knows. Without it, a vLLM server outlives an mle-tui that was SIGKILLed (its own
process group keeps it from the terminal's signals). Where ``prctl`` is unavailable the command
simply runs. If the parent is already gone when this starts, it exits with status 1.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def wrap(cmd: list[str], python: str = sys.executable) -> list[str]:
    """``cmd`` prefixed so that it dies with this process (Linux); ``cmd`` as is elsewhere."""
    if not sys.platform.startswith("linux"):
        return list(cmd)
    return [python, "-m", "mle_tui.core.pdeathsig", str(os.getpid()), "--", *cmd]


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m mle_tui.core.pdeathsig PARENT_PID -- CMD...", file=sys.stderr)
        return 2
    parent, cmd = int(argv[0]), argv[2:]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        return 1
    os.execvp(cmd[0], cmd)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
