"""Small process utilities shared by every layer (no camfleet imports)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import threading

_PR_SET_PDEATHSIG = 1


def die_with_parent(supervisor_pid: int, sig: int = signal.SIGKILL) -> None:
    """End this process with ``sig`` when the supervisor ``supervisor_pid`` dies.

    A supervisor killed with ``kill -9`` cannot stop its children; this makes
    them go with it, so the next start finds no orphans. When the supervisor
    is the direct parent, the kernel does it (``PR_SET_PDEATHSIG``). A child
    forked by the supervisor's forkserver has the forkserver as parent, and
    the forkserver only exits once all its children have: there a daemon
    thread waits on a pidfd of the supervisor instead. If the supervisor is
    already gone, the signal is sent at once. Linux only; elsewhere a no-op.
    """
    if os.getppid() == supervisor_pid:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        except (OSError, AttributeError):
            return
    else:
        try:
            fd = os.pidfd_open(supervisor_pid)
        except ProcessLookupError:
            os.kill(os.getpid(), sig)
            return
        except (OSError, AttributeError):
            return
        threading.Thread(target=_wait_then_die, args=(fd, sig), name="supervisor-watch", daemon=True).start()
    with contextlib.suppress(PermissionError):
        try:
            os.kill(supervisor_pid, 0)
        except ProcessLookupError:  # the supervisor died before the watch was set up
            os.kill(os.getpid(), sig)


def _wait_then_die(fd: int, sig: int) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not poller.poll():
        pass
    os.kill(os.getpid(), sig)
