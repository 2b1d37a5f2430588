"""Small process utilities shared by every layer (no camfleet imports)."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(supervisor_pid: int, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies.

    A supervisor killed with ``kill -9`` cannot stop its children; this makes
    them go with it, so the next start finds no orphans (Linux only; elsewhere
    a no-op). The parent may be the supervisor itself or its forkserver,
    which exits with the supervisor. If ``supervisor_pid`` is already gone,
    the signal is sent at once.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        return
    try:
        os.kill(supervisor_pid, 0)
    except ProcessLookupError:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), sig)
    except PermissionError:
        pass
