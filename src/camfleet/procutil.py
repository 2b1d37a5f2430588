"""Small process utilities shared by every layer (no camfleet imports)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import threading
from collections.abc import Iterator


def die_with_parent(supervisor_pid: int, sig: int = signal.SIGKILL) -> None:
    """End this process with ``sig`` when the supervisor ``supervisor_pid`` dies.

    A supervisor killed with ``kill -9`` cannot stop its children; this makes
    them go with it, so the next start finds no orphans. A daemon thread
    waits on a pidfd of the supervisor, which becomes readable when the
    supervisor *process* ends. (``PR_SET_PDEATHSIG`` is not used: the kernel
    sends it when the *thread* that started the child exits, so a child
    started from a short-lived thread - a node applying a configuration from
    an API worker thread, a tool starting detectors side by side - was
    killed moments after it started.) If the supervisor is already gone, the
    signal is sent at once. Linux only; elsewhere a no-op.
    """
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


_PR_SET_PDEATHSIG = 1


def exec_dies_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """For ``preexec_fn``: the program about to be exec'd gets ``sig`` when its parent dies.

    :func:`die_with_parent`'s watch thread does not survive ``exec``, so a foreign binary
    (``nats-server``) needs the kernel's ``PR_SET_PDEATHSIG`` instead. It fires when the
    parent *thread* that started the child exits: start such children from a thread that
    lives as long as they should (``camfleet nats`` starts them from its main thread). If
    the parent is already gone, ``sig`` is sent at once. Linux only; elsewhere a no-op.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the prctl
        os.kill(os.getpid(), sig)


def _wait_then_die(fd: int, sig: int) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not poller.poll():
        pass
    os.kill(os.getpid(), sig)


@contextlib.contextmanager
def sigint_blocked(*, ignore: bool = False) -> Iterator[None]:
    """Keep SIGINT from the child processes the body starts.

    A terminal's Ctrl-C reaches every process of the foreground group at once.
    The children must leave the stop to their supervisor, but a freshly
    started child runs for a while (imports, a forkserver's preload) before it
    can install its own handler, and a SIGINT in that window ends it with a
    ``KeyboardInterrupt``.

    The calling thread blocks SIGINT: a forked child inherits the mask and
    never sees the signal, and the caller's own SIGINT stays pending until the
    block ends. An exec'd child (``spawn``, a forkserver) starts with a fresh
    mask but inherits an *ignored* signal (Python then installs no
    ``KeyboardInterrupt`` handler), so with ``ignore`` SIGINT is also ignored
    while the body runs, in the main thread only (elsewhere handlers cannot be
    set). Ignoring discards a Ctrl-C that arrives meanwhile: use it only
    around a start that returns at once (a pending one is passed on to the
    caller's handler afterwards).
    """
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    old_handler = None
    pending = False
    try:
        if ignore and threading.current_thread() is threading.main_thread():
            pending = signal.SIGINT in signal.sigpending()  # SIG_IGN would discard it
            old_handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        yield
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if pending and callable(old_handler):
            old_handler(signal.SIGINT, None)
